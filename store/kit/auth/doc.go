// Package auth issues and verifies the JWTs that MEC application instances
// present on kmep's Mp1 API, and checks the operator's admin token.
//
// The token function holds the Ed25519 signing keys (PEM, the first key is
// the active signer) and publishes every public key as a JWKS; each other
// function builds a Verifier over a KeySource that returns that JWKS and
// verifies tokens locally, without a network call per request.
//
// Verification is cached: a token that verified once is remembered, keyed by
// its text, so later requests with the same token skip the parse and the
// Ed25519 check and only re-check expiry. Failed verifications are never
// cached.
//
// Keys rotate. A token whose kid is unknown makes the Verifier reload the JWKS
// from its KeySource, at most once per KeyRefreshMinInterval; the JWKS is also
// reloaded when it is older than KeyRefreshInterval. When a reload no longer
// contains a kid, the key is removed at once: cached tokens it signed are
// purged and refused from then on, even before their exp. If the KeySource
// fails while keys are needed, Verify returns an error wrapping
// ErrKeysUnavailable (HTTP 503), distinct from ErrInvalidToken (HTTP 401);
// keys already loaded stay in use while reloads fail, so tokens of known keys
// keep verifying through a store outage.
//
// Tokens are revoked per app instance. A token carries the store's token
// generation from when it was issued (the "gen" claim); deleting an app
// instance's credentials, giving it another AK or terminating it records a
// higher generation for it and announces that on the store's change stream.
// A Verifier with a RevocationSource follows those announcements (Run) and
// refuses the app's tokens of lower generations with ErrTokenRevoked (HTTP
// 401), cached or not. It never answers from an outdated view: when it has
// not followed the stream within RevocationMaxStaleness (1 s), Verify
// returns an error wrapping ErrRevocationsUnavailable (HTTP 503).
//
// Verifier.App and Admin.Check authenticate HTTP requests from their
// "Authorization: Bearer" header and refuse with *problem.Error values.
package auth
