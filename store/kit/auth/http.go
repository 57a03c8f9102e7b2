package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kmep-io/kmep/store/kit/problem"
)

// minAdminTokenLen is the shortest admin token NewAdmin accepts.
const minAdminTokenLen = 16

// ErrInvalidAdminToken reports a configured admin token that is unfit for use.
var ErrInvalidAdminToken = errors.New("invalid admin token")

// App authenticates the MEC application instance behind r from its
// "Authorization: Bearer <jwt>" header. Refusals are *problem.Error values: a
// 401 with a Bearer challenge naming the reason in general terms, or a 503
// with Retry-After when the keys cannot be loaded or the revocations were not
// followed lately.
func (v *Verifier) App(r *http.Request) (Claims, error) {
	token, ok := bearerToken(r)
	if !ok {
		return Claims{}, problem.Unauthorized("missing bearer token")
	}
	cl, err := v.Verify(r.Context(), token)
	if err != nil {
		return Claims{}, verifyProblem(err)
	}
	return cl, nil
}

// verifyProblem turns an error of Verify into the response the client sees.
func verifyProblem(err error) error {
	if errors.Is(err, ErrKeysUnavailable) {
		return &problem.Error{
			Status:     http.StatusServiceUnavailable,
			Detail:     "token verification keys are unavailable; retry later",
			RetryAfter: 1,
			Cause:      err,
		}
	}
	if errors.Is(err, ErrRevocationsUnavailable) {
		return &problem.Error{
			Status:     http.StatusServiceUnavailable,
			Detail:     "token revocations cannot be checked; retry later",
			RetryAfter: 1,
			Cause:      err,
		}
	}
	if !errors.Is(err, ErrInvalidToken) {
		return fmt.Errorf("verify token: %w", err) // answered 500
	}
	detail := "invalid token"
	switch {
	case errors.Is(err, ErrTokenExpired):
		detail = "token expired"
	case errors.Is(err, ErrTokenRevoked):
		detail = "token revoked"
	case errors.Is(err, ErrTokenNotYetValid):
		detail = "token not yet valid"
	case errors.Is(err, ErrInvalidSignature):
		detail = "invalid token signature"
	case errors.Is(err, ErrUnknownKey):
		detail = "token signed by an unknown key"
	case errors.Is(err, ErrWrongAudience):
		detail = "token has the wrong audience"
	case errors.Is(err, ErrWrongIssuer):
		detail = "token has the wrong issuer"
	case errors.Is(err, ErrMalformedToken):
		detail = "malformed token"
	}
	return invalidToken(detail, err)
}

// invalidToken is a 401 whose challenge carries the RFC 6750 invalid_token
// error code.
func invalidToken(detail string, cause error) *problem.Error {
	pe := problem.Unauthorized(detail)
	pe.Cause = cause
	pe.Header.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="kmep", error="invalid_token", error_description=%q`, detail))
	return pe
}

// bearerToken returns the credentials of r's "Authorization: Bearer" header;
// the scheme is case-insensitive.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// Admin checks the operator's admin token (KMEP_ADMIN_TOKEN). It is safe for
// concurrent use.
type Admin struct {
	// sum is the SHA-256 of the token: comparing fixed-size digests keeps
	// the token's length out of the comparison's timing.
	sum [sha256.Size]byte
}

// NewAdmin returns an Admin accepting token, which must be at least 16
// visible ASCII characters (it travels in an HTTP header).
func NewAdmin(token string) (*Admin, error) {
	if len(token) < minAdminTokenLen {
		return nil, fmt.Errorf("admin token: %w: shorter than %d characters", ErrInvalidAdminToken, minAdminTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return nil, fmt.Errorf("admin token: %w: byte %d is not visible ASCII", ErrInvalidAdminToken, i)
		}
	}
	return &Admin{sum: sha256.Sum256([]byte(token))}, nil
}

// Check accepts r if its "Authorization: Bearer" credentials are the admin
// token, and otherwise returns a 401 *problem.Error. App JWTs are never
// admin tokens.
func (a *Admin) Check(r *http.Request) error {
	token, ok := bearerToken(r)
	if !ok {
		return problem.Unauthorized("missing bearer token")
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], a.sum[:]) != 1 {
		return invalidToken("invalid admin token", nil)
	}
	return nil
}

// AppInstance is App reduced to the caller's appInstanceId (the token's
// subject): the shape the function handlers take as their authenticator.
func (v *Verifier) AppInstance(r *http.Request) (string, error) {
	c, err := v.App(r)
	return c.Subject, err
}
