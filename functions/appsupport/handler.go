package appsupport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmep-io/kmep/functions/mec"
	"github.com/kmep-io/kmep/functions/problem"
	"github.com/kmep-io/kmep/store"
)

// BasePath is where the API is mounted.
const BasePath = "/mep/mec_app_support/v1"

// MaxBody is the largest request body accepted (413 beyond).
const MaxBody = 64 << 10

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required.
	Store *store.Store
	// Authenticate returns the appInstanceId of the caller's Bearer JWT or an
	// error (a *problem.Error: 401, or 503 when keys are unavailable). Required.
	Authenticate func(*http.Request) (string, error)
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Now is the platform clock that current_time and timing_caps report.
	// Zero value: time.Now.
	Now func() time.Time
	// TimeTraceable says the clock is locked to a UTC time source:
	// current_time reports TRACEABLE. Zero value: NONTRACEABLE.
	TimeTraceable bool
	// NTPServers are listed by timing_caps. Zero value: the member is absent.
	NTPServers []NTPServer
	// PTPMasters are listed by timing_caps. Zero value: the member is absent.
	PTPMasters []PTPMaster
}

type handler struct {
	Deps
	mux *http.ServeMux
}

// New returns the application support handler, mounted at BasePath.
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{Deps: d, mux: http.NewServeMux()}
	for _, k := range []*ruleKind{trafficRules, dnsRules} {
		h.route("/applications/{appInstanceId}/"+k.collection, map[string]problem.HandlerFunc{"GET": h.listRules(k)})
		h.route("/applications/{appInstanceId}/"+k.collection+"/{ruleId}", map[string]problem.HandlerFunc{"GET": h.getRule(k), "PUT": h.putRule(k)})
	}
	h.route("/applications/{appInstanceId}/confirm_ready", map[string]problem.HandlerFunc{"POST": h.confirmReady})
	h.route("/applications/{appInstanceId}/confirm_termination", map[string]problem.HandlerFunc{"POST": h.confirmTermination})
	h.route("/registrations", map[string]problem.HandlerFunc{"POST": h.register})
	h.route("/registrations/{appInstanceId}", map[string]problem.HandlerFunc{"GET": h.getRegistration, "PUT": h.updateRegistration, "DELETE": h.deregister})
	h.route("/timing/current_time", map[string]problem.HandlerFunc{"GET": h.currentTime})
	h.route("/timing/timing_caps", map[string]problem.HandlerFunc{"GET": h.timingCaps})
	h.mux.Handle(BasePath+"/", problem.Handler(d.Log, func(http.ResponseWriter, *http.Request) error {
		return problem.NotFound("no such resource")
	}))
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// route registers path for the given methods; any other method is a 405
// ProblemDetails with Allow. Every method authenticates first.
func (h *handler) route(path string, methods map[string]problem.HandlerFunc) {
	allowed := strings.Join(slices.Sorted(maps.Keys(methods)), ", ")
	h.mux.Handle(BasePath+path, problem.Handler(h.Log, func(w http.ResponseWriter, r *http.Request) error {
		fn, ok := methods[r.Method]
		if !ok {
			w.Header().Set("Allow", allowed)
			return problem.New(http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here")
		}
		app, err := h.Authenticate(r)
		if err != nil {
			return err
		}
		return fn(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, app)))
	}))
}

type callerKey struct{}

func caller(r *http.Request) string { s, _ := r.Context().Value(callerKey{}).(string); return s }

// own checks that the path's appInstanceId is the caller's.
func own(r *http.Request) (string, error) {
	app := r.PathValue("appInstanceId")
	if app != caller(r) {
		return "", problem.Forbidden("appInstanceId " + strconv.Quote(app) + " is not the caller's app instance")
	}
	return app, nil
}

func writeJSON(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

func etag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// ifMatch returns the revision an If-Match header asks for (0: none). A
// header that names no revision of ours can never match: -1.
func ifMatch(r *http.Request) int64 {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return 0
	}
	v = strings.TrimPrefix(v, "W/")
	n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64)
	if err != nil || n <= 0 {
		return -1
	}
	return n
}

// readBody reads the request body up to MaxBody (a *http.MaxBytesError,
// answered 413, beyond).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, problem.BadRequest("body", "could not read the request body")
	}
	return b, nil
}

// badField turns a *mec.FieldError into a 400 naming the field.
func badField(err error) error {
	var fe *mec.FieldError
	if errors.As(err, &fe) {
		return problem.BadRequest(fe.Field, fe.Error())
	}
	return err
}

// absolute is path as an absolute URL of this request's origin (Location).
func absolute(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host + path
}
