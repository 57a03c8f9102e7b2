// Package token is kmep's token function, compatible with EdgeGallery's
// mepauth: POST /mep/token exchanges an AK/SK-signed request
// (SDK-HMAC-SHA256, see package aksk) for a JWT whose subject is the app
// instance; GET /mep/token/jwks publishes the verification keys; and the
// platform admin manages app instances' credentials through Mm5
// (/mep/appMng/v1/applications/{appInstanceId}/confs).
//
// Three bad signatures for one AK within five minutes lock that AK for
// fifteen minutes (429 with Retry-After). Secrets never leave the store in
// a response and are never logged.
package token
