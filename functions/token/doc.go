// Package token is kmep's token function, compatible with EdgeGallery's
// mepauth: POST /mep/token exchanges an AK/SK-signed request
// (SDK-HMAC-SHA256, see package aksk) for a JWT whose subject is the app
// instance; GET /mep/token/jwks publishes the verification keys; and the
// platform admin manages app instances' credentials through Mm5
// (/mep/appMng/v1/applications/{appInstanceId}/confs).
//
// A token carries the store's token generation, read with the credential
// that signed the request: deleting the credentials, giving the app another
// AK or terminating it revokes the tokens issued before (see package auth).
// Each signed request is accepted once: its signature is remembered while
// its x-sdk-date is within the clock-skew window, and a replay is a 401.
//
// Bad signatures are throttled per access key and source address (the TCP
// peer, or the client a trusted proxy names in X-Forwarded-For; IPv6 by
// /64): three within five minutes lock that source out of that AK for
// fifteen minutes (429 with Retry-After, whatever the signature). Each
// outcome is recorded in one atomic step with the check of the lock, so
// concurrent bad signatures get exactly three 401s. A correctly signed
// request from another source is never refused because of them, and a good
// signature clears its source's failures. Unknown AKs are answered like bad
// signatures and leave no state. The platform admin sees
// and clears an app's locks at /mep/appMng/v1/applications/{appInstanceId}/lockout.
// Secrets never leave the store in a response and are never logged.
package token
