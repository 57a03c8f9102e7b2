// Package aksk signs and verifies HTTP requests with an access key and a
// secret key, using the SDK-HMAC-SHA256 scheme that EdgeGallery's mep-agent
// uses to ask mepauth for a token.
//
// A signed request carries two headers:
//
//	X-Sdk-Date: 20260623T101500Z
//	Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=host;x-sdk-date, Signature=<hex>
//
// The signature is hex(HMAC-SHA256(SK, StringToSign)), where StringToSign is
// the algorithm name, the X-Sdk-Date value and the hex SHA-256 of the
// canonical request, joined by newlines. The canonical request is the method,
// the canonical URI, the canonical query, the canonical headers, the signed
// header names and the hex SHA-256 of the body, joined by newlines; see
// CanonicalRequest for each part.
//
// The package is byte-for-byte compatible with EdgeGallery's signer
// (mep-agent src/util/sign.go), including its quirks: every path segment is
// query-escaped, the canonical URI always ends in "/", each header's values
// are sorted before they are trimmed, and the canonical header block ends in
// a newline of its own.
//
// Verify checks a signature in constant time but does not look at the clock:
// the caller compares the date with CheckSkew, so that it controls the
// window. Every error that means "this request is not authentic" wraps
// ErrUnauthenticated; a handler answers 401 for those.
package aksk
