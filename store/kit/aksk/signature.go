package aksk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// hostHeader is the signed-header name whose value is the request's Host.
const hostHeader = "host"

// CanonicalRequest returns the canonical form of r that the signature
// covers: the lines
//
//	METHOD
//	canonical URI
//	canonical query
//	canonical headers (one "name:values" line each, then an empty line)
//	signed header names, lowercase, sorted, joined by ";"
//	bodySHA256Hex
//
// joined by "\n". The canonical URI is every non-empty path segment other
// than "." and "..", query-escaped, each followed by "/", after a leading "/"
// ("/mep/token" becomes "/mep/token/"). The canonical query is every
// key=value pair, both query-escaped, sorted and joined by "&". A header line
// is the lowercase name, ":", and the header's values sorted, then trimmed of
// spaces, and joined by ","; the lines are sorted. The "host" header is r.Host
// (r.URL.Host when r.Host is empty), because Go's server moves Host out of
// r.Header and Go's client ignores it there. A signed header the request
// lacks contributes "name:" with no value, as it does in EdgeGallery.
//
// signedHeaders may be in any order and case and may repeat a name.
func CanonicalRequest(r *http.Request, signedHeaders []string, bodySHA256Hex string) string {
	names := normalizeNames(signedHeaders)
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var path string
	var query url.Values
	if r.URL != nil {
		path = r.URL.Path
		query = r.URL.Query()
	}
	return strings.Join([]string{
		method,
		canonicalURI(path),
		canonicalQuery(query),
		canonicalHeaders(r, names),
		strings.Join(names, ";"),
		bodySHA256Hex,
	}, "\n")
}

// StringToSign returns Algorithm, the X-Sdk-Date value and the hex SHA-256
// of canonicalRequest, joined by "\n".
func StringToSign(date, canonicalRequest string) string {
	sum := sha256.Sum256([]byte(canonicalRequest))
	return Algorithm + "\n" + date + "\n" + hex.EncodeToString(sum[:])
}

// Signature returns the lowercase hex HMAC-SHA256 of stringToSign keyed
// with the secret key sk.
func Signature(sk []byte, stringToSign string) string {
	return hex.EncodeToString(mac(sk, stringToSign))
}

// Verify checks that a is a valid signature of r by the secret key sk. body
// is the request body, which the caller has already read from r.Body. The
// signature is compared in constant time. Verify requires x-sdk-date to be
// one of a's signed headers and r to carry exactly one well-formed X-Sdk-Date
// header; it does not compare that date with the clock (see CheckSkew).
//
// Errors that reject the request wrap ErrUnauthenticated (ErrDateNotSigned,
// ErrBadDate, ErrMalformedAuthorization, ErrBadSignature); an empty sk is a
// caller error and does not.
func Verify(r *http.Request, body []byte, sk []byte, a Authorization) error {
	if len(sk) == 0 {
		return errors.New("verify signature: empty secret key")
	}
	if !slices.ContainsFunc(a.SignedHeaders, func(n string) bool { return strings.EqualFold(n, dateHeaderLower) }) {
		return ErrDateNotSigned
	}
	dates := r.Header.Values(DateHeader)
	if len(dates) != 1 {
		return fmt.Errorf("%w: want exactly one, got %d", ErrBadDate, len(dates))
	}
	if _, err := ParseDate(dates[0]); err != nil {
		return err
	}
	want, err := hex.DecodeString(a.Signature)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%w: Signature is not %d hex digits", ErrMalformedAuthorization, signatureHexLen)
	}
	bodySum := sha256.Sum256(body)
	canonical := CanonicalRequest(r, a.SignedHeaders, hex.EncodeToString(bodySum[:]))
	if !hmac.Equal(mac(sk, StringToSign(dates[0], canonical)), want) {
		return ErrBadSignature
	}
	return nil
}

// Sign signs r for the access key ak and the secret key sk: it sets
// X-Sdk-Date to now (in UTC) and Authorization to the signature over the
// headers named in signed, which always include x-sdk-date. "host" is taken
// from r.Host, or r.URL.Host when r.Host is empty; every other signed header
// must be set on r. body must be the bytes r will send; Sign does not touch
// r.Body. On error r is left unchanged.
func Sign(r *http.Request, body []byte, ak string, sk []byte, signed []string, now time.Time) error {
	if err := validateAccessKey(ak); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	if len(sk) == 0 {
		return errors.New("sign request: empty secret key")
	}
	names := normalizeNames(append(slices.Clone(signed), dateHeaderLower))
	for _, n := range names {
		if err := validateHeaderName(n); err != nil {
			return fmt.Errorf("sign request: signed header %q: %w", n, err)
		}
		switch n {
		case dateHeaderLower:
		case "authorization":
			return errors.New("sign request: the Authorization header cannot sign itself")
		case hostHeader:
			if requestHost(r) == "" {
				return errors.New("sign request: request has no host to sign")
			}
		default:
			if len(r.Header.Values(n)) == 0 {
				return fmt.Errorf("sign request: signed header %q is not set", n)
			}
		}
	}

	if r.Header == nil {
		r.Header = make(http.Header)
	}
	date := now.UTC().Format(DateFormat)
	r.Header.Set(DateHeader, date)
	bodySum := sha256.Sum256(body)
	canonical := CanonicalRequest(r, names, hex.EncodeToString(bodySum[:]))
	a := Authorization{
		AccessKey:     ak,
		SignedHeaders: names,
		Signature:     Signature(sk, StringToSign(date, canonical)),
	}
	r.Header.Set("Authorization", a.String())
	return nil
}

func mac(sk []byte, stringToSign string) []byte {
	h := hmac.New(sha256.New, sk)
	h.Write([]byte(stringToSign)) // A hash.Hash never returns an error.
	return h.Sum(nil)
}

// normalizeNames returns the header names lowercased, sorted and without
// repeats, in a new slice.
func normalizeNames(in []string) []string {
	out := make([]string, len(in))
	for i, n := range in {
		out[i] = strings.ToLower(n)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func canonicalURI(path string) string {
	var b strings.Builder
	b.WriteByte('/')
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			continue
		}
		b.WriteString(url.QueryEscape(seg))
		b.WriteByte('/')
	}
	return b.String()
}

func canonicalQuery(query url.Values) string {
	var pairs []string
	for key, values := range query {
		for _, v := range values {
			pairs = append(pairs, url.QueryEscape(key)+"="+url.QueryEscape(v))
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "&")
}

// canonicalHeaders returns one line per name in names, sorted as lines (which
// is not always the order of the names: "x-a-b:" sorts before "x-a:"), joined
// and ended by "\n", as EdgeGallery does.
func canonicalHeaders(r *http.Request, names []string) string {
	lines := make([]string, 0, len(names))
	for _, n := range names {
		var values []string
		if n == hostHeader {
			values = []string{requestHost(r)}
		} else {
			values = slices.Clone(r.Header.Values(n))
		}
		// EdgeGallery sorts the values before it trims them.
		slices.Sort(values)
		for i, v := range values {
			values[i] = strings.TrimSpace(v)
		}
		lines = append(lines, n+":"+strings.Join(values, ","))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

// requestHost is the host a client addresses: r.Host, or r.URL.Host for an
// outgoing request whose Host was cleared.
func requestHost(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	if r.URL != nil {
		return r.URL.Host
	}
	return ""
}
