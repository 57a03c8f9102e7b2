package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kmep-io/kmep/store/kit/aksk"
)

// curlSignedHeaders are the headers curl sends without being asked and that
// the signature covers; x-sdk-date is added by aksk.Sign.
var curlSignedHeaders = []string{"host"}

// signForCurl signs a request to rawURL that curl will send with the given
// method and body, and returns the X-Sdk-Date and Authorization values to
// pass with -H. The signed host is the one curl puts in its Host header.
func signForCurl(method, rawURL string, body []byte, ak string, sk []byte, now time.Time) (date, authorization string, err error) {
	u, err := parseEndpoint(rawURL)
	if err != nil {
		return "", "", err
	}
	r, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
	if err != nil {
		return "", "", fmt.Errorf("build request: %w", err)
	}
	r.Host = curlHost(u)
	if err := aksk.Sign(r, body, ak, sk, curlSignedHeaders, now); err != nil {
		return "", "", err
	}
	return r.Header.Get(aksk.DateHeader), r.Header.Get("Authorization"), nil
}

// parseEndpoint parses an absolute http or https URL.
func parseEndpoint(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse --url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--url %q: scheme must be http or https", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("--url %q: no host", rawURL)
	}
	return u, nil
}

// curlHost is the Host header curl sends for u: the host and port as
// written, except that curl leaves out the scheme's default port (and an
// empty one).
func curlHost(u *url.URL) string {
	host := strings.TrimSuffix(u.Host, ":")
	switch port := u.Port(); {
	case u.Scheme == "http" && port == "80", u.Scheme == "https" && port == "443":
		return strings.TrimSuffix(host, ":"+port)
	}
	return host
}

// shellQuote quotes s for a POSIX shell: it wraps s in single quotes and
// writes each single quote inside s as quote, backslash, quote, quote.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
