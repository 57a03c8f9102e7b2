// Package rest is the request plumbing every kmep API handler shares:
// routing with per-method dispatch and authentication before it, the
// caller's app instance and the check that a path names it, bounded JSON
// request bodies (415 for another Content-Type, 408 for a body that does
// not arrive in time), JSON answers with ETags, conditional requests
// (If-Match), Location URLs and resource ids.
//
// Everything it refuses is an error for problem.Handler to answer as a
// ProblemDetails, so a handler built on it keeps the one error path.
// It serves the Mp1 APIs (services, appsupport, subscriptions) as well as
// the token and Mm5 (lcm) APIs, hence the name of none of them.
package rest
