// Package resttest holds the fakes handler tests share.
package resttest

import (
	"net/http"
	"strings"

	"github.com/kmep-io/kmep/store/kit/problem"
)

// Authenticate is a fake authenticator for handler tests: the Bearer
// credential is taken as the caller's appInstanceId ("Bearer app-1" is
// app-1); no credential is a 401 like the real verifier's.
func Authenticate(r *http.Request) (string, error) {
	app, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || app == "" {
		return "", problem.Unauthorized("missing bearer token")
	}
	return app, nil
}
