package aksk

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	testSig      = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	testSigUpper = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
)

var parseGood = []struct {
	name string
	in   string
	want Authorization
}{
	{
		name: "edgegallery format",
		in:   "SDK-HMAC-SHA256 Access=QVUJMSUMgS0VZLS0tLS0, SignedHeaders=content-type;host;x-sdk-date, Signature=" + testSig,
		want: Authorization{"QVUJMSUMgS0VZLS0tLS0", []string{"content-type", "host", "x-sdk-date"}, testSig},
	},
	{
		name: "no spaces after commas",
		in:   "SDK-HMAC-SHA256 Access=AK,SignedHeaders=host;x-sdk-date,Signature=" + testSig,
		want: Authorization{"AK", []string{"host", "x-sdk-date"}, testSig},
	},
	{
		name: "extra spaces and tabs",
		in:   "SDK-HMAC-SHA256 \t Access = AK ,\tSignedHeaders= host;x-sdk-date ,  Signature =" + testSig + "  ",
		want: Authorization{"AK", []string{"host", "x-sdk-date"}, testSig},
	},
	{
		name: "trailing comma",
		in:   "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig + ",",
		want: Authorization{"AK", []string{"x-sdk-date"}, testSig},
	},
	{
		name: "parts in another order",
		in:   "SDK-HMAC-SHA256 Signature=" + testSig + ", Access=AK, SignedHeaders=x-sdk-date;host",
		want: Authorization{"AK", []string{"x-sdk-date", "host"}, testSig},
	},
	{
		name: "uppercase names and signature are lowercased, order kept",
		in:   "SDK-HMAC-SHA256 Access=AK, SignedHeaders=X-Sdk-Date;Host;Content-Type, Signature=" + testSigUpper,
		want: Authorization{"AK", []string{"x-sdk-date", "host", "content-type"}, testSig},
	},
	{
		name: "access key with base64 characters",
		in:   "SDK-HMAC-SHA256 Access=ab+/cd=_-.9, SignedHeaders=x-sdk-date, Signature=" + testSig,
		want: Authorization{"ab+/cd=_-.9", []string{"x-sdk-date"}, testSig},
	},
}

var parseBad = []struct {
	name string
	in   string
}{
	{"empty", ""},
	{"algorithm only", "SDK-HMAC-SHA256"},
	{"algorithm and space", "SDK-HMAC-SHA256 "},
	{"other algorithm", "AWS4-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"lowercase algorithm", "sdk-hmac-sha256 Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"bearer", "Bearer eyJhbGciOiJSUzUxMiJ9.e30.sig"},
	{"no space after algorithm", "SDK-HMAC-SHA256Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"leading space", " SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"no access", "SDK-HMAC-SHA256 SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"no signed headers", "SDK-HMAC-SHA256 Access=AK, Signature=" + testSig},
	{"no signature", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date"},
	{"empty access", "SDK-HMAC-SHA256 Access=, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"access with space", "SDK-HMAC-SHA256 Access=A K, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"access with semicolon", "SDK-HMAC-SHA256 Access=A;K, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"access too long", "SDK-HMAC-SHA256 Access=" + strings.Repeat("A", 129) + ", SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"access twice", "SDK-HMAC-SHA256 Access=AK, Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"unknown part", "SDK-HMAC-SHA256 Access=AK, Credential=x, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"lowercase part name", "SDK-HMAC-SHA256 access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig},
	{"part without equals", "SDK-HMAC-SHA256 Access=AK, SignedHeaders, Signature=" + testSig},
	{"empty signed headers", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=, Signature=" + testSig},
	{"only semicolon", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=;, Signature=" + testSig},
	{"empty header name", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;;x-sdk-date, Signature=" + testSig},
	{"trailing semicolon", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date;, Signature=" + testSig},
	{"header name with space", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=ho st;x-sdk-date, Signature=" + testSig},
	{"header name with colon", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host:1;x-sdk-date, Signature=" + testSig},
	{"header name not ascii", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=hôst;x-sdk-date, Signature=" + testSig},
	{"signature short", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig[:63]},
	{"signature long", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=" + testSig + "0"},
	{"signature not hex", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=" + strings.Repeat("g", 64)},
	{"signature base64", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature=n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="},
	{"empty signature", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date, Signature="},
	{"over 4 KiB", "SDK-HMAC-SHA256 Access=AK, SignedHeaders=" + strings.Repeat("x-a;", 1100) + "x-sdk-date, Signature=" + testSig},
}

func TestParseAuthorization(t *testing.T) {
	for _, tc := range parseGood {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthorization(tc.in)
			if err != nil {
				t.Fatalf("ParseAuthorization(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseAuthorization(%q)\n got %#v\nwant %#v", tc.in, got, tc.want)
			}
		})
	}
	for _, tc := range parseBad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			got, err := ParseAuthorization(tc.in)
			if err == nil {
				t.Fatalf("ParseAuthorization(%q) = %#v, want an error", tc.in, got)
			}
			if !errors.Is(err, ErrMalformedAuthorization) || !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("error %v does not wrap ErrMalformedAuthorization and ErrUnauthenticated", err)
			}
		})
	}
}

func TestAuthorizationString(t *testing.T) {
	tests := []struct {
		name string
		in   Authorization
		want string
	}{
		{
			name: "edgegallery separators",
			in:   Authorization{"AK", []string{"content-type", "host", "x-sdk-date"}, testSig},
			want: "SDK-HMAC-SHA256 Access=AK, SignedHeaders=content-type;host;x-sdk-date, Signature=" + testSig,
		},
		{
			name: "single header",
			in:   Authorization{"QVUJMSUMgS0VZLS0tLS0", []string{"x-sdk-date"}, testSig},
			want: "SDK-HMAC-SHA256 Access=QVUJMSUMgS0VZLS0tLS0, SignedHeaders=x-sdk-date, Signature=" + testSig,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, tc := range parseGood {
		f.Add(tc.in)
	}
	for _, tc := range parseBad {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseAuthorization(in)
		if err != nil {
			if !errors.Is(err, ErrMalformedAuthorization) {
				t.Fatalf("error %v does not wrap ErrMalformedAuthorization", err)
			}
			return
		}
		again, err := ParseAuthorization(a.String())
		if err != nil {
			t.Fatalf("ParseAuthorization(%q) accepted, but its String() %q is refused: %v", in, a.String(), err)
		}
		if !reflect.DeepEqual(a, again) {
			t.Fatalf("round trip of %q changed it:\n got %#v\nwant %#v", in, again, a)
		}
	})
}
