package callback

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MaxURLLength is the longest callback URL Validate accepts, in bytes.
const MaxURLLength = 2048

// Sentinels wrapped by every *Error, and by the Client's dial errors.
var (
	// ErrInvalidURL: the callback is not an acceptable absolute http(s) URL.
	ErrInvalidURL = errors.New("invalid callback URL")
	// ErrForbiddenAddress: the host is, or resolves to, an address (or is a
	// name) the policy refuses.
	ErrForbiddenAddress = errors.New("callback address not permitted")
	// ErrUnresolvable: the host name could not be resolved, or resolved to no
	// address. The caller decides whether that is the client's fault.
	ErrUnresolvable = errors.New("callback host not resolvable")
)

// errNoAddress is the cause when a name resolves to no address at all.
var errNoAddress = errors.New("no addresses")

// Error is a refused callback URL. Reason is meant for the client (a handler
// turns it into a 400 naming callbackReference); Err wraps one of the
// sentinels and the cause, for errors.Is and the log.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "callback URL " + e.Reason
	}
	return "callback URL " + e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func invalid(reason string, cause error) *Error {
	if cause == nil {
		return &Error{Reason: reason, Err: ErrInvalidURL}
	}
	return &Error{Reason: reason, Err: fmt.Errorf("%w: %w", ErrInvalidURL, cause)}
}

// Validate checks a callbackReference at subscription time. The URL must be
// an absolute http or https URL of at most MaxURLLength bytes, with a host,
// without user information, and with a port in 1..65535 if one is given. An
// IP literal must be permitted (see Permitted) and carry no IPv6 zone. A
// host name must be a valid DNS name; unless the allow list names it, it
// must not be refused by name and every address it resolves to must be
// permitted. Names allowed by the allow list are accepted without a lookup,
// unless a deny list is set: then their addresses must not be denied.
//
// Every error is an *Error. Its Err wraps ErrInvalidURL, ErrForbiddenAddress
// or ErrUnresolvable (a failed lookup, or one that found no address; the
// lookup is bounded by DialTimeout as well as ctx).
func (p *Policy) Validate(ctx context.Context, rawURL string) error {
	if len(rawURL) > MaxURLLength {
		return invalid(fmt.Sprintf("must not be longer than %d bytes", MaxURLLength), nil)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return invalid("is not a valid URL", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return invalid("must be an absolute http or https URL", nil)
	}
	if u.User != nil {
		return invalid("must not contain user information", nil)
	}
	host := u.Hostname()
	if host == "" {
		return invalid("must have a host", nil)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return invalid("must have a port between 1 and 65535", err)
		}
	}

	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return invalid("must not carry an IPv6 zone", nil)
		}
		if !p.Permitted(ip, "") {
			return &Error{
				Reason: fmt.Sprintf("host %s is not a permitted address", ip),
				Err:    fmt.Errorf("%w: %s", ErrForbiddenAddress, ip),
			}
		}
		return nil
	}
	if strings.HasPrefix(u.Host, "[") {
		return invalid("has an invalid IPv6 address", nil)
	}
	name, ok := normalizeHostName(host)
	if !ok || looksLikeIPv4(name) {
		return invalid("has an invalid host name", nil)
	}
	allowedName := p.allow.allowsHost(name)
	if allowedName && len(p.deny) == 0 {
		return nil
	}
	if !allowedName && refusedName(name) {
		return &Error{
			Reason: fmt.Sprintf("host %q is not permitted", name),
			Err:    fmt.Errorf("%w: name %s", ErrForbiddenAddress, name),
		}
	}

	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(ctx, "ip", name)
	if err == nil && len(addrs) == 0 {
		err = errNoAddress
	}
	if err != nil {
		return &Error{
			Reason: fmt.Sprintf("host %q could not be resolved", name),
			Err:    fmt.Errorf("%w: lookup %s: %w", ErrUnresolvable, name, err),
		}
	}
	for _, ip := range addrs {
		if !p.Permitted(ip, name) {
			// The address stays out of Reason: the client need not learn how
			// the platform's DNS answers.
			return &Error{
				Reason: fmt.Sprintf("host %q resolves to an address that is not permitted", name),
				Err:    fmt.Errorf("%w: %s resolves to %s", ErrForbiddenAddress, name, ip),
			}
		}
	}
	return nil
}

// normalizeHostName lower-cases s, drops one trailing dot and reports whether
// the result is a syntactically valid DNS name: 1..253 bytes, labels of 1..63
// letters, digits, hyphens or underscores, not starting or ending with a
// hyphen. Internationalized names must be given in their ASCII (punycode)
// form.
func normalizeHostName(s string) (string, bool) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return s, true
}

// looksLikeIPv4 reports whether a normalized host name is one of the
// numeric forms inet_aton accepts ("127.1", "2130706433", "0x7f.0.0.1",
// "0177.0.0.1") but netip.ParseAddr does not. Such names are refused rather
// than handed to a resolver that might read them as an address.
func looksLikeIPv4(name string) bool {
	parts := strings.Split(name, ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		digits := p
		isHex := strings.HasPrefix(p, "0x")
		if isHex {
			digits = p[2:]
		}
		for i := 0; i < len(digits); i++ {
			c := digits[i]
			if !('0' <= c && c <= '9' || isHex && 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}
