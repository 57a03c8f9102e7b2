package subscriptions_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
)

// post sends a create with an Idempotency-Key.
func (e *env) post(t *testing.T, k kind, app, body, key string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", k.list(app), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+app)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// A subscription created with an Idempotency-Key is created once, per kind
// and app: the same request again is the first 201 (Idempotent-Replayed),
// another body under the key is a 422, the other kind's key is its own.
func TestCreateIdempotencyKey(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			first := e.post(t, k, "app-a", k.body("http://10.0.0.5/cb"), "sub-1")
			if first.Code != http.StatusCreated {
				t.Fatalf("first: %d %s", first.Code, first.Body)
			}
			again := e.post(t, k, "app-a", k.body("http://10.0.0.5/cb"), "sub-1")
			if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" ||
				again.Header().Get("Location") != first.Header().Get("Location") || again.Body.String() != first.Body.String() {
				t.Fatalf("again: %d %v %s; first %v %s", again.Code, again.Header(), again.Body, first.Header(), first.Body)
			}
			problemtest.Want(t, e.post(t, k, "app-a", k.body("http://10.0.0.6/cb"), "sub-1"), k.list("app-a"),
				http.StatusUnprocessableEntity, "Idempotency-Key")
			problemtest.Want(t, e.post(t, k, "app-a", k.body("http://10.0.0.6/cb"), strings.Repeat("k", 256)), k.list("app-a"),
				http.StatusBadRequest, "Idempotency-Key")
			o := k.other()
			if rec := e.post(t, o, "app-a", o.body("http://10.0.0.5/cb"), "sub-1"); rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "" {
				t.Fatalf("the other kind, same key: %d %s", rec.Code, rec.Body)
			}
			subs, err := e.st.ListSubscriptions(context.Background(), "app-a", "")
			if err != nil {
				t.Fatal(err)
			}
			if len(subs) != 2 {
				t.Errorf("%d subscriptions stored, want 2 (one per kind)", len(subs))
			}
		})
	}
}
