package auth

import (
	"fmt"
	"net/http"
)

// AdminReads is the platform admin's part of the configuration of a binary
// whose API the admin may read but not write (the services, subscriptions
// and appsupport functions, whose routers take it as rest.Router.AdminReads):
// embed it in the binary's config struct, which server.Main reads from the
// environment.
type AdminReads struct {
	// AdminToken is the platform admin's bearer token (NewAdmin). Zero
	// value: no admin reads; the admin token is refused like any token that
	// is not an app's.
	AdminToken string `envconfig:"KMEP_ADMIN_TOKEN" desc:"the platform admin's bearer token: it reads every app instance's resources and writes none (unset: no admin reads)"`
}

// AdminRead returns the check a function's Deps.AdminRead takes: Check of
// the Admin of AdminToken, or nil when AdminToken is unset. A token NewAdmin
// refuses is an error naming KMEP_ADMIN_TOKEN.
func (c AdminReads) AdminRead() (func(*http.Request) error, error) {
	if c.AdminToken == "" {
		return nil, nil
	}
	a, err := NewAdmin(c.AdminToken)
	if err != nil {
		return nil, fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	return a.Check, nil
}
