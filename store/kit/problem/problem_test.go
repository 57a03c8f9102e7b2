package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
)

func TestWriteMapsErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		retryAfter string
		leak       string
	}{
		{"client error", problem.BadRequest("serName", "serName: is required"), 400, "", ""},
		{"not found", fmt.Errorf("get: %w", store.ErrNotFound), 404, "", ""},
		{"conflict", fmt.Errorf("x: %w", store.ErrConflict), 409, "", ""},
		{"forbidden", fmt.Errorf("x: %w", store.ErrForbidden), 403, "", ""},
		{"stale", fmt.Errorf("x: %w", store.ErrPrecondition), 412, "", ""},
		{"unavailable", fmt.Errorf("x: %w: dial tcp 10.1.2.3:6379", store.ErrUnavailable), 503, "1", "10.1.2.3"},
		{"too large", &http.MaxBytesError{Limit: 65536}, 413, "", ""},
		{"unexpected", errors.New("secret internal detail"), 500, "", "secret internal detail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			problem.Write(nil, w, httptest.NewRequest("GET", "/x", nil), tc.err)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Fatalf("content type %q", ct)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			var d problem.Details
			if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || d.Status != tc.status || d.Instance != "/x" || d.Detail == "" {
				t.Fatalf("body %s (%v)", w.Body, err)
			}
			if tc.leak != "" && strings.Contains(w.Body.String(), tc.leak) {
				t.Fatalf("internal detail leaked: %s", w.Body)
			}
		})
	}
}
