package services_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/store/mec"
)

// A registration with an Idempotency-Key is created once: sending it again
// answers the first 201 (same id, Location and body, Idempotent-Replayed),
// another body under the same key is a 422 while the service is as its
// first request left it, and the key is the app's own.
func TestRegisterIdempotencyKey(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, envOptions{})
			post := func(app, body string, header ...string) *httptest.ResponseRecorder {
				return e.do(t, "POST", servicesPath(app), app, body, header...)
			}
			first := post("app-a", info("svc-a", liveness(10)), "Idempotency-Key", "reg-1")
			if first.Code != http.StatusCreated || first.Header().Get("Idempotent-Replayed") != "" {
				t.Fatalf("first: %d %v %s", first.Code, first.Header(), first.Body)
			}
			id := decode[mec.ServiceInfo](t, first).SerInstanceID

			again := post("app-a", info("svc-a", liveness(10)), "Idempotency-Key", `"reg-1"`)
			if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" {
				t.Fatalf("again: %d %v %s", again.Code, again.Header(), again.Body)
			}
			if got := decode[mec.ServiceInfo](t, again).SerInstanceID; got != id {
				t.Errorf("again: serInstanceId %s, first %s", got, id)
			}
			for _, h := range []string{"Location", "ETag"} {
				if again.Header().Get(h) != first.Header().Get(h) {
					t.Errorf("again: %s %q, first %q", h, again.Header().Get(h), first.Header().Get(h))
				}
			}
			if again.Body.String() != first.Body.String() {
				t.Errorf("again: body\n%s\nfirst\n%s", again.Body, first.Body)
			}

			problemtest.Want(t, post("app-a", info("svc-b"), "Idempotency-Key", "reg-1"), servicesPath("app-a"),
				http.StatusUnprocessableEntity, "Idempotency-Key")
			problemtest.Want(t, post("app-a", info("svc-c"), "Idempotency-Key", "bad\x01key"), servicesPath("app-a"),
				http.StatusBadRequest, "Idempotency-Key")

			other := post("app-b", info("svc-a", liveness(10)), "Idempotency-Key", "reg-1")
			if other.Code != http.StatusCreated || other.Header().Get("Idempotent-Replayed") != "" {
				t.Fatalf("another app, same key: %d %s", other.Code, other.Body)
			}
			if got := decode[mec.ServiceInfo](t, other).SerInstanceID; got == id {
				t.Errorf("another app's key named app-a's service %s", id)
			}

			// Changed since (Rev 2): the key finds the service, whatever is sent.
			if rec := e.do(t, "PUT", servicePath("app-a", id), "app-a", info("svc-a", liveness(20))); rec.Code != http.StatusOK {
				t.Fatalf("put: %d %s", rec.Code, rec.Body)
			}
			late := post("app-a", info("svc-a", liveness(10)), "Idempotency-Key", "reg-1")
			if late.Code != http.StatusCreated || late.Header().Get("ETag") != `"2"` || decode[mec.ServiceInfo](t, late).LivenessInterval != 20 {
				t.Fatalf("after an update: %d %v %s", late.Code, late.Header(), late.Body)
			}

			recs, err := e.st.AllServices(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 2 {
				t.Errorf("%d services stored, want 2 (one per app)", len(recs))
			}
		})
	}
}
