package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// A refusal (4xx) is logged at info with the reason the client got, and the
// cause when there is one; a 5xx stays an error line.
func TestWriteLogsRefusalsAtInfo(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		level     string
		msg       string
		reason    string
		wantCause bool
	}{
		{"forbidden", problem.Forbidden("appInstanceId \"a\" is not the caller's app instance"), "INFO", "request refused", "appInstanceId \"a\" is not the caller's app instance", false},
		{"with cause", &problem.Error{Status: http.StatusUnauthorized, Detail: "invalid token", Cause: errors.New("signature mismatch")}, "INFO", "request refused", "invalid token", true},
		{"unavailable", problem.Unavailable("the store", 1, errors.New("dial tcp")), "ERROR", "request failed", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			log := slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.LevelInfo}))
			problem.Write(log, httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil), tc.err)
			var m map[string]any
			if err := json.Unmarshal([]byte(b.String()), &m); err != nil {
				t.Fatalf("want one JSON log line, got %q", b.String())
			}
			if m["level"] != tc.level || m["msg"] != tc.msg || (tc.reason != "" && m["reason"] != tc.reason) || (m["err"] != nil) != tc.wantCause {
				t.Errorf("log line %v: want %s %q reason %q, cause logged %v", m, tc.level, tc.msg, tc.reason, tc.wantCause)
			}
		})
	}
}
