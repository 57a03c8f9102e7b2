package aksk

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCanonicalURI(t *testing.T) {
	tests := []struct {
		name, path, want string
	}{
		{"empty", "", "/"},
		{"root", "/", "/"},
		{"token path gets a trailing slash", "/mep/token", "/mep/token/"},
		{"trailing slash kept once", "/mep/token/", "/mep/token/"},
		{"empty segments dropped", "//mep///token//", "/mep/token/"},
		{"dot segments dropped, not resolved", "/a/./b/../c", "/a/b/c/"},
		{"only dots", "/./../", "/"},
		{"space is plus", "/a b", "/a+b/"},
		{"plus is escaped", "/a+b", "/a%2Bb/"},
		{"reserved characters escaped", "/x=y&z?#", "/x%3Dy%26z%3F%23/"},
		{"unreserved kept", "/A-z_0.9~", "/A-z_0.9~/"},
		{"utf-8 escaped", "/café", "/caf%C3%A9/"},
		{"no leading slash", "mep/token", "/mep/token/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := canonicalURI(tc.path); got != tc.want {
				t.Errorf("canonicalURI(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestCanonicalQuery(t *testing.T) {
	tests := []struct {
		name, rawQuery, want string
	}{
		{"none", "", ""},
		{"sorted", "b=2&a=1", "a=1&b=2"},
		{"repeated key sorted by value", "k=b&k=a&k=c", "k=a&k=b&k=c"},
		{"key without value", "flag", "flag="},
		{"empty value", "a=", "a="},
		{"plus and space both become plus", "q=a+b&r=a%20b", "q=a+b&r=a+b"},
		{"escaped plus stays escaped", "q=1%2B1", "q=1%2B1"},
		{"key escaped", "x%2Fy=1", "x%2Fy=1"},
		{"reserved in value", "u=%26%3D%3F", "u=%26%3D%3F"},
		{"pair sort, not key sort", "a-b=1&a=2", "a-b=1&a=2"},
		{"semicolon pair dropped like url.Query", "a=1;b=2&c=3", "c=3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := &url.URL{RawQuery: tc.rawQuery}
			if got := canonicalQuery(u.Query()); got != tc.want {
				t.Errorf("canonicalQuery(%q) = %q, want %q", tc.rawQuery, got, tc.want)
			}
		})
	}
}

func TestCanonicalHeaders(t *testing.T) {
	tests := []struct {
		name    string
		headers [][2]string
		host    string
		names   []string
		want    string
	}{
		{
			name:  "host from r.Host",
			host:  "127.0.0.1:8080",
			names: []string{"host"},
			want:  "host:127.0.0.1:8080\n",
		},
		{
			name:    "host from r.Host, not Header",
			headers: [][2]string{{"Host", "evil.example"}},
			host:    "mep:8080",
			names:   []string{"host"},
			want:    "host:mep:8080\n",
		},
		{
			name:    "values sorted before they are trimmed",
			headers: [][2]string{{"X-V", "b"}, {"X-V", " c"}, {"X-V", "a "}},
			names:   []string{"x-v"},
			want:    "x-v:c,a,b\n",
		},
		{
			name:    "lines sorted, not names",
			headers: [][2]string{{"X-A", "1"}, {"X-A-B", "2"}},
			names:   []string{"x-a", "x-a-b"},
			want:    "x-a-b:2\nx-a:1\n",
		},
		{
			name:  "absent header has no value",
			names: []string{"x-absent"},
			want:  "x-absent:\n",
		},
		{
			name:  "no names is a lone newline",
			names: nil,
			want:  "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{Host: tc.host, URL: &url.URL{Host: "url-host"}, Header: http.Header{}}
			for _, h := range tc.headers {
				r.Header.Add(h[0], h[1])
			}
			before := strings.Join(r.Header.Values("X-V"), "|")
			if got := canonicalHeaders(r, tc.names); got != tc.want {
				t.Errorf("canonicalHeaders = %q, want %q", got, tc.want)
			}
			if after := strings.Join(r.Header.Values("X-V"), "|"); after != before {
				t.Errorf("canonicalHeaders reordered the request's values: %q, was %q", after, before)
			}
		})
	}
}

func TestCanonicalRequestHostFallback(t *testing.T) {
	r := &http.Request{Method: http.MethodPost, URL: &url.URL{Host: "mep:8443", Path: "/mep/token"}}
	got := CanonicalRequest(r, []string{"Host"}, "e3b0")
	want := "POST\n/mep/token/\n\nhost:mep:8443\n\nhost\ne3b0"
	if got != want {
		t.Errorf("CanonicalRequest = %q, want %q", got, want)
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "20260623T101500Z", want: time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)},
		{in: "19991231T235959Z", want: time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{in: "", wantErr: true},
		{in: "20260623T101500", wantErr: true},
		{in: "20260623T101500+0000", wantErr: true},
		{in: "2026-06-23T10:15:00Z", wantErr: true},
		{in: "20261323T101500Z", wantErr: true},
		{in: " 20260623T101500Z", wantErr: true},
		{in: "20260623T101500Zjunk", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDate(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrBadDate) {
					t.Fatalf("ParseDate(%q) = %v, %v; want ErrBadDate", tc.in, got, err)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("ParseDate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCheckSkew(t *testing.T) {
	now := time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)
	tests := []struct {
		name    string
		date    time.Time
		window  time.Duration
		wantErr bool
	}{
		{"same instant", now, 5 * time.Minute, false},
		{"past, inside", now.Add(-4 * time.Minute), 5 * time.Minute, false},
		{"future, inside", now.Add(4 * time.Minute), 5 * time.Minute, false},
		{"past, at the edge", now.Add(-5 * time.Minute), 5 * time.Minute, false},
		{"future, at the edge", now.Add(5 * time.Minute), 5 * time.Minute, false},
		{"past, just outside", now.Add(-5*time.Minute - time.Second), 5 * time.Minute, true},
		{"future, just outside", now.Add(5*time.Minute + time.Second), 5 * time.Minute, true},
		{"a day old", now.Add(-24 * time.Hour), 15 * time.Minute, true},
		{"zero window, same instant", now, 0, false},
		{"zero window, one second", now.Add(time.Second), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSkew(tc.date, now, tc.window)
			if tc.wantErr {
				if !errors.Is(err, ErrClockSkew) || !errors.Is(err, ErrUnauthenticated) {
					t.Errorf("CheckSkew = %v, want ErrClockSkew", err)
				}
			} else if err != nil {
				t.Errorf("CheckSkew = %v, want nil", err)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	now := time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)
	tests := []struct {
		name   string
		req    func() *http.Request
		ak     string
		sk     string
		signed []string
	}{
		{"empty access key", newReq, "", "sk", []string{"host"}},
		{"access key with comma", newReq, "A,K", "sk", []string{"host"}},
		{"empty secret key", newReq, "AK", "", []string{"host"}},
		{"signed header not set", newReq, "AK", "sk", []string{"host", "content-type"}},
		{"invalid header name", newReq, "AK", "sk", []string{"bad name"}},
		{"empty header name", newReq, "AK", "sk", []string{""}},
		{"authorization signed", newReq, "AK", "sk", []string{"Authorization"}},
		{"no host", func() *http.Request {
			return &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/mep/token"}, Header: http.Header{}}
		}, "AK", "sk", []string{"host"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			if err := Sign(r, nil, tc.ak, []byte(tc.sk), tc.signed, now); err == nil {
				t.Fatalf("Sign succeeded, Authorization %q", r.Header.Get("Authorization"))
			}
			if got := r.Header.Get("Authorization"); got != "" {
				t.Errorf("failed Sign left Authorization %q", got)
			}
		})
	}
}

func newReq() *http.Request {
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/mep/token", nil)
	if err != nil {
		panic(err)
	}
	return r
}

func TestVerifyErrors(t *testing.T) {
	const ak, sk = "AK", "secret"
	now := time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)
	body := []byte(`{"a":1}`)
	signed := func(t *testing.T) (*http.Request, Authorization) {
		t.Helper()
		r := newReq()
		r.Header.Set("Content-Type", "application/json")
		if err := Sign(r, body, ak, []byte(sk), []string{"host", "content-type"}, now); err != nil {
			t.Fatal(err)
		}
		a, err := ParseAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			t.Fatal(err)
		}
		return r, a
	}

	tests := []struct {
		name   string
		tamper func(r *http.Request, a *Authorization, body *[]byte, sk *string)
		want   error // nil means success
	}{
		{"untouched", func(*http.Request, *Authorization, *[]byte, *string) {}, nil},
		{"body changed", func(_ *http.Request, _ *Authorization, b *[]byte, _ *string) { *b = []byte(`{"a":2}`) }, ErrBadSignature},
		{"signed header changed", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) {
			r.Header.Set("Content-Type", "text/plain")
		}, ErrBadSignature},
		{"unsigned header changed", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) {
			r.Header.Set("User-Agent", "other")
		}, nil},
		{"host changed", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) { r.Host = "127.0.0.1:9090" }, ErrBadSignature},
		{"method changed", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) { r.Method = http.MethodPut }, ErrBadSignature},
		{"path changed", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) { r.URL.Path = "/mep/tokens" }, ErrBadSignature},
		{"query added", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) { r.URL.RawQuery = "a=1" }, ErrBadSignature},
		{"date changed", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) {
			r.Header.Set(DateHeader, "20260623T101501Z")
		}, ErrBadSignature},
		{"date missing", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) { r.Header.Del(DateHeader) }, ErrBadDate},
		{"date repeated", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) {
			r.Header.Add(DateHeader, "20260623T101500Z")
		}, ErrBadDate},
		{"date malformed", func(r *http.Request, _ *Authorization, _ *[]byte, _ *string) {
			r.Header.Set(DateHeader, "2026-06-23T10:15:00Z")
		}, ErrBadDate},
		{"date not signed", func(_ *http.Request, a *Authorization, _ *[]byte, _ *string) {
			a.SignedHeaders = []string{"content-type", "host"}
		}, ErrDateNotSigned},
		{"header dropped from signed list", func(_ *http.Request, a *Authorization, _ *[]byte, _ *string) {
			a.SignedHeaders = []string{"host", "x-sdk-date"}
		}, ErrBadSignature},
		{"signed list reordered and recased", func(_ *http.Request, a *Authorization, _ *[]byte, _ *string) {
			a.SignedHeaders = []string{"X-Sdk-Date", "Host", "content-type"}
		}, nil},
		{"wrong secret key", func(_ *http.Request, _ *Authorization, _ *[]byte, s *string) { *s = "secreT" }, ErrBadSignature},
		{"signature flipped", func(_ *http.Request, a *Authorization, _ *[]byte, _ *string) {
			a.Signature = flipHex(a.Signature)
		}, ErrBadSignature},
		{"signature not hex", func(_ *http.Request, a *Authorization, _ *[]byte, _ *string) {
			a.Signature = strings.Repeat("z", 64)
		}, ErrMalformedAuthorization},
		{"signature short", func(_ *http.Request, a *Authorization, _ *[]byte, _ *string) {
			a.Signature = a.Signature[:62]
		}, ErrMalformedAuthorization},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, a := signed(t)
			b, s := body, sk
			tc.tamper(r, &a, &b, &s)
			err := Verify(r, b, []byte(s), a)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("empty secret key is not an authentication failure", func(t *testing.T) {
		r, a := signed(t)
		err := Verify(r, body, nil, a)
		if err == nil || errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("Verify with empty sk = %v, want a non-authentication error", err)
		}
	})
}

func flipHex(s string) string {
	b := []byte(s)
	if b[0] == '0' {
		b[0] = '1'
	} else {
		b[0] = '0'
	}
	return string(b)
}

func BenchmarkVerify(b *testing.B) {
	now := time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)
	sk := []byte("DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc")
	r := newReq()
	r.Header.Set("Content-Type", "application/json")
	if err := Sign(r, nil, "QVUJMSUMgS0VZLS0tLS0", sk, []string{"content-type", "host"}, now); err != nil {
		b.Fatal(err)
	}
	header := r.Header.Get("Authorization")
	b.ReportAllocs()
	for b.Loop() {
		a, err := ParseAuthorization(header)
		if err != nil {
			b.Fatal(err)
		}
		if err := Verify(r, nil, sk, a); err != nil {
			b.Fatal(err)
		}
	}
}
