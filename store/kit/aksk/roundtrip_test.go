package aksk_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/aksk"
)

const (
	rtAK = "QVUJMSUMgS0VZLS0tLS0"
	rtSK = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc"
)

// egAuthorization computes the Authorization value the way EdgeGallery's
// mep-agent does (src/util/sign.go), written out separately from package
// aksk: it signs every key present in req.Header, reads and restores
// req.Body, and joins the parts with EdgeGallery's separators.
func egAuthorization(t *testing.T, req *http.Request, ak, sk string) string {
	t.Helper()
	var uris []string
	for _, p := range strings.Split(req.URL.Path, "/") {
		if p == "" || p == "." || p == ".." {
			continue
		}
		uris = append(uris, url.QueryEscape(p))
	}
	uri := "/" + strings.Join(uris, "/")
	if !strings.HasSuffix(uri, "/") {
		uri += "/"
	}

	var params []string
	for k, vs := range req.URL.Query() {
		for _, v := range vs {
			params = append(params, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
	}
	sort.Strings(params)

	var headers, names []string
	for k, vs := range req.Header {
		vs = slices.Clone(vs)
		sort.Strings(vs)
		var val []string
		for _, v := range vs {
			val = append(val, strings.TrimSpace(v))
		}
		headers = append(headers, strings.ToLower(k)+":"+strings.Join(val, ","))
		names = append(names, strings.ToLower(k))
	}
	sort.Strings(headers)
	sort.Strings(names)

	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			t.Fatal(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	bodySum := sha256.Sum256(body)

	canonical := strings.Join([]string{
		req.Method, uri, strings.Join(params, "&"),
		strings.Join(headers, "\n") + "\n",
		strings.Join(names, ";"), hex.EncodeToString(bodySum[:]),
	}, "\n")
	crSum := sha256.Sum256([]byte(canonical))
	sts := strings.Join([]string{"SDK-HMAC-SHA256", req.Header.Get("x-sdk-date"), hex.EncodeToString(crSum[:])}, "\n")
	h := hmac.New(sha256.New, []byte(sk))
	h.Write([]byte(sts))
	sig := hex.EncodeToString(h.Sum(nil))

	return strings.Join([]string{"SDK-HMAC-SHA256", "Access=" + ak + ",", "SignedHeaders=" + strings.Join(names, ";") + ",", "Signature=" + sig}, " ")
}

// egTokenRequest builds the token request of mep-agent's PostTokenRequest:
// an empty POST body, Content-Type, x-sdk-date and Host set with Header.Set,
// then every header signed.
func egTokenRequest(t *testing.T, target, ak, sk string, now time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", target, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-sdk-date", now.UTC().Format("20060102T150405Z"))
	req.Header.Set("Host", req.Host)
	req.Header.Set("Authorization", egAuthorization(t, req, ak, sk))
	return req
}

// verifyingServer answers 204 to requests that verify with rtSK and 401 with
// the name of the sentinel otherwise.
func verifyingServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a, err := aksk.ParseAuthorization(r.Header.Get("Authorization"))
		if err == nil {
			err = aksk.Verify(r, body, []byte(rtSK), a)
		}
		if err == nil && a.AccessKey != rtAK {
			err = errors.New("unknown access key")
		}
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.Is(err, aksk.ErrUnauthenticated):
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, sentinelName(err))
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func sentinelName(err error) string {
	for name, s := range map[string]error{
		"malformed":       aksk.ErrMalformedAuthorization,
		"bad-date":        aksk.ErrBadDate,
		"date-not-signed": aksk.ErrDateNotSigned,
		"bad-signature":   aksk.ErrBadSignature,
	} {
		if errors.Is(err, s) {
			return name
		}
	}
	return "other"
}

func TestRoundTrip(t *testing.T) {
	srv := verifyingServer(t)
	target := srv.URL + "/mep/token"
	now := time.Now()

	tests := []struct {
		name     string
		req      func(t *testing.T) *http.Request
		wantCode int
		wantBody string
	}{
		{
			name:     "edgegallery mep-agent request",
			req:      func(t *testing.T) *http.Request { return egTokenRequest(t, target, rtAK, rtSK, now) },
			wantCode: http.StatusNoContent,
		},
		{
			name: "edgegallery request with a query",
			req: func(t *testing.T) *http.Request {
				return egTokenRequest(t, target+"?b=2&a=x%20y&a=1", rtAK, rtSK, now)
			},
			wantCode: http.StatusNoContent,
		},
		{
			name: "aksk.Sign request with a body",
			req: func(t *testing.T) *http.Request {
				body := []byte(`{"serName":"location"}`)
				req, err := http.NewRequest("POST", target, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				if err := aksk.Sign(req, body, rtAK, []byte(rtSK), []string{"content-type", "host"}, now); err != nil {
					t.Fatal(err)
				}
				return req
			},
			wantCode: http.StatusNoContent,
		},
		{
			name: "tampered body",
			req: func(t *testing.T) *http.Request {
				req := egTokenRequest(t, target, rtAK, rtSK, now)
				req.Body = io.NopCloser(strings.NewReader(`{"x":1}`))
				req.ContentLength = 7
				return req
			},
			wantCode: http.StatusUnauthorized,
			wantBody: "bad-signature",
		},
		{
			name: "tampered signed header",
			req: func(t *testing.T) *http.Request {
				req := egTokenRequest(t, target, rtAK, rtSK, now)
				req.Header.Set("Content-Type", "text/plain")
				return req
			},
			wantCode: http.StatusUnauthorized,
			wantBody: "bad-signature",
		},
		{
			name: "tampered date",
			req: func(t *testing.T) *http.Request {
				req := egTokenRequest(t, target, rtAK, rtSK, now)
				req.Header.Set("x-sdk-date", now.Add(time.Second).UTC().Format(aksk.DateFormat))
				return req
			},
			wantCode: http.StatusUnauthorized,
			wantBody: "bad-signature",
		},
		{
			name: "tampered host",
			req: func(t *testing.T) *http.Request {
				req := egTokenRequest(t, target, rtAK, rtSK, now)
				req.Host = strings.Replace(req.Host, "127.0.0.1", "localhost", 1)
				return req
			},
			wantCode: http.StatusUnauthorized,
			wantBody: "bad-signature",
		},
		{
			name:     "wrong secret key",
			req:      func(t *testing.T) *http.Request { return egTokenRequest(t, target, rtAK, rtSK+"x", now) },
			wantCode: http.StatusUnauthorized,
			wantBody: "bad-signature",
		},
		{
			name: "date not signed",
			req: func(t *testing.T) *http.Request {
				req, err := http.NewRequest("POST", target, strings.NewReader(""))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Host", req.Host)
				req.Header.Set("Authorization", egAuthorization(t, req, rtAK, rtSK))
				req.Header.Set("x-sdk-date", now.UTC().Format(aksk.DateFormat))
				return req
			},
			wantCode: http.StatusUnauthorized,
			wantBody: "date-not-signed",
		},
		{
			name: "no date header",
			req: func(t *testing.T) *http.Request {
				req := egTokenRequest(t, target, rtAK, rtSK, now)
				req.Header.Del("x-sdk-date")
				return req
			},
			wantCode: http.StatusUnauthorized,
			wantBody: "bad-date",
		},
		{
			name: "malformed authorization",
			req: func(t *testing.T) *http.Request {
				req := egTokenRequest(t, target, rtAK, rtSK, now)
				req.Header.Set("Authorization", "Bearer abc")
				return req
			},
			wantCode: http.StatusUnauthorized,
			wantBody: "malformed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := srv.Client().Do(tc.req(t))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantCode || string(body) != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

// TestEdgeGallerySignedHeaders pins the header list an EdgeGallery token
// request signs and the exact shape of its Authorization header.
func TestEdgeGallerySignedHeaders(t *testing.T) {
	req := egTokenRequest(t, "http://127.0.0.1:8080/mep/token", rtAK, rtSK, time.Now())
	got := req.Header.Get("Authorization")
	a, err := aksk.ParseAuthorization(got)
	if err != nil {
		t.Fatalf("ParseAuthorization(%q): %v", got, err)
	}
	if want := []string{"content-type", "host", "x-sdk-date"}; !slices.Equal(a.SignedHeaders, want) {
		t.Errorf("SignedHeaders = %v, want %v", a.SignedHeaders, want)
	}
	if a.String() != got {
		t.Errorf("String() = %q, EdgeGallery wrote %q", a.String(), got)
	}
}
