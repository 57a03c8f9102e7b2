package aksk

import (
	"errors"
	"fmt"
	"strings"
)

// Algorithm is the scheme name that starts the Authorization header and the
// string to sign.
const Algorithm = "SDK-HMAC-SHA256"

// MaxAuthorizationLen bounds the Authorization header value that
// ParseAuthorization accepts, in bytes.
const MaxAuthorizationLen = 4 << 10

// maxAccessKeyLen bounds the access key; EdgeGallery's keys are 20 characters.
const maxAccessKeyLen = 128

// signatureHexLen is the length of a hex-encoded HMAC-SHA256.
const signatureHexLen = 64

// Errors that mean the request is not authentic all wrap ErrUnauthenticated,
// so a handler can answer 401 with errors.Is(err, ErrUnauthenticated) and
// still tell the cases apart.
var (
	// ErrUnauthenticated is wrapped by every error that rejects a request's
	// credentials.
	ErrUnauthenticated = errors.New("request not authenticated")
	// ErrMalformedAuthorization means the Authorization header is not a
	// well-formed SDK-HMAC-SHA256 value.
	ErrMalformedAuthorization = fmt.Errorf("%w: malformed Authorization header", ErrUnauthenticated)
	// ErrBadDate means the X-Sdk-Date header is missing, repeated or not in
	// DateFormat.
	ErrBadDate = fmt.Errorf("%w: missing or malformed %s header", ErrUnauthenticated, DateHeader)
	// ErrDateNotSigned means x-sdk-date is not among the signed headers, so
	// the signature would not bind the request to a time.
	ErrDateNotSigned = fmt.Errorf("%w: x-sdk-date is not a signed header", ErrUnauthenticated)
	// ErrBadSignature means the signature does not match the request.
	ErrBadSignature = fmt.Errorf("%w: signature mismatch", ErrUnauthenticated)
	// ErrClockSkew means the request's date is too far from the server's
	// clock.
	ErrClockSkew = fmt.Errorf("%w: request date outside the allowed window", ErrUnauthenticated)
)

// Authorization is a parsed SDK-HMAC-SHA256 Authorization header.
type Authorization struct {
	// AccessKey identifies the secret key that signed the request.
	AccessKey string
	// SignedHeaders are the names of the signed headers, lowercase, in the
	// order the header listed them.
	SignedHeaders []string
	// Signature is the hex HMAC-SHA256 of the string to sign, lowercase.
	Signature string
}

// String returns the Authorization header value in EdgeGallery's exact
// format: "SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex".
func (a Authorization) String() string {
	return Algorithm + " Access=" + a.AccessKey +
		", SignedHeaders=" + strings.Join(a.SignedHeaders, ";") +
		", Signature=" + a.Signature
}

// ParseAuthorization parses an Authorization header value. It is strict about
// the algorithm and requires each of Access, SignedHeaders and Signature
// exactly once (in any order); it tolerates spaces and tabs around parts and
// a trailing comma. Header names are lowercased and the signature is
// lowercased. Every error wraps ErrMalformedAuthorization.
func ParseAuthorization(v string) (Authorization, error) {
	if len(v) > MaxAuthorizationLen {
		return Authorization{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformedAuthorization, MaxAuthorizationLen)
	}
	rest, ok := strings.CutPrefix(v, Algorithm)
	if !ok {
		return Authorization{}, fmt.Errorf("%w: algorithm is not %s", ErrMalformedAuthorization, Algorithm)
	}
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return Authorization{}, fmt.Errorf("%w: no space after %s", ErrMalformedAuthorization, Algorithm)
	}

	var (
		a                         Authorization
		seenAK, seenSH, seenSig   bool
		accessKey, signed, sigHex string
	)
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.Trim(part, " \t")
		if part == "" {
			continue // a trailing (or doubled) comma
		}
		key, value, ok := strings.Cut(part, "=")
		if !ok {
			return Authorization{}, fmt.Errorf("%w: part without '='", ErrMalformedAuthorization)
		}
		key, value = strings.Trim(key, " \t"), strings.Trim(value, " \t")
		var seen *bool
		switch key {
		case "Access":
			seen, accessKey = &seenAK, value
		case "SignedHeaders":
			seen, signed = &seenSH, value
		case "Signature":
			seen, sigHex = &seenSig, value
		default:
			return Authorization{}, fmt.Errorf("%w: unknown part", ErrMalformedAuthorization)
		}
		if *seen {
			return Authorization{}, fmt.Errorf("%w: %s given twice", ErrMalformedAuthorization, key)
		}
		*seen = true
	}
	switch {
	case !seenAK:
		return Authorization{}, fmt.Errorf("%w: no Access", ErrMalformedAuthorization)
	case !seenSH:
		return Authorization{}, fmt.Errorf("%w: no SignedHeaders", ErrMalformedAuthorization)
	case !seenSig:
		return Authorization{}, fmt.Errorf("%w: no Signature", ErrMalformedAuthorization)
	}

	if err := validateAccessKey(accessKey); err != nil {
		return Authorization{}, fmt.Errorf("%w: %w", ErrMalformedAuthorization, err)
	}
	a.AccessKey = accessKey

	names, err := parseSignedHeaders(signed)
	if err != nil {
		return Authorization{}, fmt.Errorf("%w: %w", ErrMalformedAuthorization, err)
	}
	a.SignedHeaders = names

	if len(sigHex) != signatureHexLen || !isHex(sigHex) {
		return Authorization{}, fmt.Errorf("%w: Signature is not %d hex digits", ErrMalformedAuthorization, signatureHexLen)
	}
	a.Signature = strings.ToLower(sigHex)
	return a, nil
}

// validateAccessKey accepts 1 to maxAccessKeyLen characters of
// [A-Za-z0-9_.+/=-]: EdgeGallery's alphabet ([\w=+/]) plus '-' and '.'.
func validateAccessKey(ak string) error {
	if ak == "" {
		return errors.New("empty access key")
	}
	if len(ak) > maxAccessKeyLen {
		return fmt.Errorf("access key longer than %d characters", maxAccessKeyLen)
	}
	for i := 0; i < len(ak); i++ {
		if c := ak[i]; !isAlnum(c) && strings.IndexByte("_.+/=-", c) < 0 {
			return errors.New("invalid character in access key")
		}
	}
	return nil
}

// parseSignedHeaders splits a SignedHeaders value on ";" and lowercases each
// name. Empty names and names that are not HTTP tokens are refused.
func parseSignedHeaders(v string) ([]string, error) {
	if v == "" {
		return nil, errors.New("empty SignedHeaders")
	}
	names := strings.Split(v, ";")
	for i, n := range names {
		if err := validateHeaderName(n); err != nil {
			return nil, err
		}
		names[i] = strings.ToLower(n)
	}
	return names, nil
}

// validateHeaderName reports whether n is a non-empty RFC 9110 token.
func validateHeaderName(n string) error {
	if n == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(n); i++ {
		if !isTokenChar(n[i]) {
			return errors.New("invalid character in header name")
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
