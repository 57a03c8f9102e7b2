package aksk_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/kmep-io/kmep/store/kit/aksk"
)

// vector is one case of testdata/vectors.json, written by
// testdata/gen_vectors.py, an independent Python implementation.
type vector struct {
	Name          string      `json:"name"`
	Method        string      `json:"method"`
	Host          string      `json:"host"`
	Target        string      `json:"target"`
	Headers       [][2]string `json:"headers"`
	SignedHeaders []string    `json:"signed_headers"`
	Body          string      `json:"body"`
	AK            string      `json:"ak"`
	SK            string      `json:"sk"`
	Date          string      `json:"date"`

	BodySHA256       string `json:"body_sha256"`
	CanonicalRequest string `json:"canonical_request"`
	StringToSign     string `json:"string_to_sign"`
	Signature        string `json:"signature"`
	Authorization    string `json:"authorization"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []vector `json:"cases"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("decode vectors.json: %v", err)
	}
	if len(file.Cases) < 5 {
		t.Fatalf("vectors.json has %d cases, want at least 5", len(file.Cases))
	}
	return file.Cases
}

// request builds the vector's request the way a Go client would.
func (v vector) request(t testing.TB) *http.Request {
	t.Helper()
	r, err := http.NewRequest(v.Method, "http://"+v.Host+v.Target, bytes.NewReader([]byte(v.Body)))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for _, h := range v.Headers {
		r.Header.Add(h[0], h[1])
	}
	return r
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			sum := sha256.Sum256([]byte(v.Body))
			if got := hex.EncodeToString(sum[:]); got != v.BodySHA256 {
				t.Fatalf("body sha256 = %s, want %s", got, v.BodySHA256)
			}
			r := v.request(t)

			canonical := aksk.CanonicalRequest(r, v.SignedHeaders, v.BodySHA256)
			if canonical != v.CanonicalRequest {
				t.Errorf("canonical request:\n got %q\nwant %q", canonical, v.CanonicalRequest)
			}
			sts := aksk.StringToSign(v.Date, canonical)
			if sts != v.StringToSign {
				t.Errorf("string to sign:\n got %q\nwant %q", sts, v.StringToSign)
			}
			if got := aksk.Signature([]byte(v.SK), sts); got != v.Signature {
				t.Errorf("signature = %s, want %s", got, v.Signature)
			}

			a, err := aksk.ParseAuthorization(v.Authorization)
			if err != nil {
				t.Fatalf("ParseAuthorization(%q): %v", v.Authorization, err)
			}
			if got := a.String(); got != v.Authorization {
				t.Errorf("Authorization.String() = %q, want %q", got, v.Authorization)
			}
			if err := aksk.Verify(r, []byte(v.Body), []byte(v.SK), a); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// TestVectorsSign checks that Sign, given the vector's date as now, writes
// the vector's exact Authorization header.
func TestVectorsSign(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			r := v.request(t)
			r.Header.Del(aksk.DateHeader)
			now, err := aksk.ParseDate(v.Date)
			if err != nil {
				t.Fatal(err)
			}
			err = aksk.Sign(r, []byte(v.Body), v.AK, []byte(v.SK), v.SignedHeaders, now)
			if missing := v.missingHeader(); missing != "" {
				// Sign refuses to sign a header the request lacks.
				if err == nil {
					t.Fatalf("Sign signed absent header %q", missing)
				}
				return
			}
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if got := r.Header.Get(aksk.DateHeader); got != v.Date {
				t.Errorf("%s = %q, want %q", aksk.DateHeader, got, v.Date)
			}
			if got := r.Header.Get("Authorization"); got != v.Authorization {
				t.Errorf("Authorization:\n got %q\nwant %q", got, v.Authorization)
			}
		})
	}
}

// missingHeader returns a signed header, other than host, that the vector's
// request does not carry.
func (v vector) missingHeader() string {
	have := http.Header{}
	for _, h := range v.Headers {
		have.Add(h[0], h[1])
	}
	for _, n := range v.SignedHeaders {
		if n != "host" && have.Get(n) == "" {
			return n
		}
	}
	return ""
}
