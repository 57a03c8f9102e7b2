package auth_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/auth"
)

// AdminReads.AdminRead: unset is no check (the admin reads nothing), a
// token is its Admin's Check, and a bad token is an error naming the
// variable, never the token.
func TestAdminReads(t *testing.T) {
	check, err := auth.AdminReads{}.AdminRead()
	if err != nil || check != nil {
		t.Fatalf("unset: %v, %v; want no check, no error", check != nil, err)
	}

	check, err = auth.AdminReads{AdminToken: testAdminToken}.AdminRead()
	if err != nil || check == nil {
		t.Fatalf("set: %v, %v; want a check", check != nil, err)
	}
	for _, tc := range []struct {
		name, auth string
		ok         bool
	}{
		{"the admin token", "Bearer " + testAdminToken, true},
		{"another token", "Bearer not-the-admin-token-0123", false},
		{"none", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if err := check(r); (err == nil) != tc.ok {
				t.Errorf("check = %v, want ok %v", err, tc.ok)
			}
		})
	}

	_, err = auth.AdminReads{AdminToken: "short-secret"}.AdminRead()
	if !errors.Is(err, auth.ErrInvalidAdminToken) || !strings.Contains(err.Error(), "KMEP_ADMIN_TOKEN") ||
		strings.Contains(err.Error(), "short-secret") {
		t.Errorf("short token: %v, want ErrInvalidAdminToken naming KMEP_ADMIN_TOKEN without the token", err)
	}
}
