package services

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kmep-io/kmep/functions/mec"
	"github.com/kmep-io/kmep/functions/problem"
	"github.com/kmep-io/kmep/store"
)

// MaxBody is the largest request body accepted (413 beyond).
const MaxBody = 64 << 10

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required.
	Store *store.Store
	// Cache serves discovery when fresh. Zero value: every read goes to Redis.
	Cache *store.ServiceCache
	// Authenticate returns the appInstanceId of the caller's Bearer JWT or an
	// error (a *problem.Error: 401, or 503 when keys are unavailable). Required.
	Authenticate func(*http.Request) (string, error)
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// MinLivenessInterval is the shortest heartbeat interval granted; a
	// smaller proposal is raised to it. Zero value: 1 s.
	MinLivenessInterval time.Duration
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
}

type handler struct {
	Deps
	mux *http.ServeMux
}

// New returns the service management handler, mounted at BasePath.
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.MinLivenessInterval == 0 {
		d.MinLivenessInterval = time.Second
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{Deps: d, mux: http.NewServeMux()}
	h.route("/services", map[string]problem.HandlerFunc{"GET": h.discover})
	h.route("/services/{serviceId}", map[string]problem.HandlerFunc{"GET": h.getAny})
	h.route("/transports", map[string]problem.HandlerFunc{"GET": h.transports})
	h.route("/applications/{appInstanceId}/services", map[string]problem.HandlerFunc{"GET": h.discover, "POST": h.create})
	h.route("/applications/{appInstanceId}/services/{serviceId}", map[string]problem.HandlerFunc{"GET": h.getOwn, "PUT": h.update, "DELETE": h.remove})
	h.route("/applications/{appInstanceId}/services/{serviceId}/liveness", map[string]problem.HandlerFunc{"GET": h.liveness, "PATCH": h.heartbeat, "PUT": h.heartbeat})
	h.mux.Handle(BasePath+"/", problem.Handler(d.Log, func(http.ResponseWriter, *http.Request) error {
		return problem.NotFound("no such resource")
	}))
	return h
}

// route registers path for the given methods; any other method is a 405
// ProblemDetails with Allow. Every method authenticates first.
func (h *handler) route(path string, methods map[string]problem.HandlerFunc) {
	var allow []string
	for m := range methods {
		allow = append(allow, m)
	}
	allowed := strings.Join(sortedStrings(allow), ", ")
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
		return fn(w, r.WithContext(withCaller(r.Context(), app)))
	}))
}

func sortedStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type callerKey struct{}

func withCaller(ctx context.Context, app string) context.Context {
	return context.WithValue(ctx, callerKey{}, app)
}

func caller(r *http.Request) string { s, _ := r.Context().Value(callerKey{}).(string); return s }

// own checks that the path's appInstanceId is the caller's.
func own(r *http.Request) (string, error) {
	app := r.PathValue("appInstanceId")
	if app != caller(r) {
		return "", problem.Forbidden("appInstanceId " + strconv.Quote(app) + " is not the caller's app instance")
	}
	return app, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
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

func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
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

func badField(err error) error {
	var fe *mec.FieldError
	if errors.As(err, &fe) {
		return problem.BadRequest(fe.Field, fe.Error())
	}
	return err
}

// wait lets the local cache apply a write this instance just made.
func (h *handler) wait(ctx context.Context, sid string) {
	if h.Cache != nil && sid != "" {
		h.Cache.WaitFor(ctx, sid, 200*time.Millisecond)
	}
}

func (h *handler) grant(proposed int) int {
	if proposed <= 0 {
		return 0
	}
	min := int((h.MinLivenessInterval + time.Second - 1) / time.Second)
	return max(proposed, min)
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) error {
	app, err := own(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	si, err := mec.DecodeServiceInfo(body, platformTransport)
	if err != nil {
		return badField(err)
	}
	id := newID()
	si.LivenessInterval = h.grant(si.LivenessInterval)
	rec := store.ServiceRecord{ID: id, AppInstanceID: app, Name: si.SerName, State: si.State,
		LivenessInterval: si.LivenessInterval, Info: stored(si, app, id)}
	if si.SerCategory != nil {
		rec.CategoryID = si.SerCategory.ID
	}
	rec, sid, err := h.Store.CreateService(r.Context(), rec)
	if err != nil {
		return fmt.Errorf("register service: %w", err)
	}
	h.wait(r.Context(), sid)
	w.Header().Set("Location", absolute(r, servicePath(app, id)))
	w.Header().Set("ETag", etag(rec.Rev))
	return writeJSON(w, http.StatusCreated, render(rec))
}

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

func (h *handler) update(w http.ResponseWriter, r *http.Request) error {
	app, err := own(r)
	if err != nil {
		return err
	}
	id := r.PathValue("serviceId")
	cond := ifMatch(r)
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	si, err := mec.DecodeServiceInfo(body, platformTransport)
	if err != nil {
		return badField(err)
	}
	if si.SerInstanceID != "" && si.SerInstanceID != id {
		return problem.BadRequest("serInstanceId", "serInstanceId does not match the resource")
	}
	cur, err := h.Store.GetService(r.Context(), id)
	if err != nil {
		return err
	}
	if cur.AppInstanceID != app {
		return problem.NotFound("no such service of this app instance")
	}
	if cond < 0 {
		return store.ErrPrecondition
	}
	si.LivenessInterval = h.grant(si.LivenessInterval)
	rec := store.ServiceRecord{ID: id, AppInstanceID: app, Name: si.SerName, State: si.State,
		LivenessInterval: si.LivenessInterval, Info: stored(si, app, id)}
	if si.SerCategory != nil {
		rec.CategoryID = si.SerCategory.ID
	}
	if cur.State == store.StateSuspended && si.State == store.StateActive {
		// Only a heartbeat brings a suspended service back.
		rec.State = store.StateSuspended
	}
	rec, sid, err := h.Store.UpdateService(r.Context(), rec, cond)
	if err != nil {
		return fmt.Errorf("update service: %w", err)
	}
	h.wait(r.Context(), sid)
	w.Header().Set("ETag", etag(rec.Rev))
	return writeJSON(w, http.StatusOK, render(rec))
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) error {
	app, err := own(r)
	if err != nil {
		return err
	}
	sid, err := h.Store.DeleteService(r.Context(), app, r.PathValue("serviceId"))
	if errors.Is(err, store.ErrForbidden) {
		return problem.NotFound("no such service of this app instance")
	}
	if err != nil {
		return err
	}
	h.wait(r.Context(), sid)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// lookup returns one service from the cache when fresh, else from Redis.
func (h *handler) lookup(ctx context.Context, id string) (store.ServiceRecord, []byte, error) {
	if h.Cache != nil && h.Cache.Fresh() {
		cs, ok := h.Cache.Get(id)
		if !ok {
			return store.ServiceRecord{}, nil, store.ErrNotFound
		}
		return cs.ServiceRecord, cs.JSON, nil
	}
	rec, err := h.Store.GetService(ctx, id)
	if err != nil {
		return rec, nil, err
	}
	return rec, render(rec), nil
}

func (h *handler) getAny(w http.ResponseWriter, r *http.Request) error {
	rec, body, err := h.lookup(r.Context(), r.PathValue("serviceId"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(rec.Rev))
	return writeJSON(w, http.StatusOK, body)
}

func (h *handler) getOwn(w http.ResponseWriter, r *http.Request) error {
	rec, body, err := h.lookup(r.Context(), r.PathValue("serviceId"))
	if err != nil {
		return err
	}
	if rec.AppInstanceID != r.PathValue("appInstanceId") {
		return problem.NotFound("no such service of this app instance")
	}
	w.Header().Set("ETag", etag(rec.Rev))
	return writeJSON(w, http.StatusOK, body)
}

func (h *handler) liveness(w http.ResponseWriter, r *http.Request) error {
	app := r.PathValue("appInstanceId")
	rec, err := h.Store.GetService(r.Context(), r.PathValue("serviceId"))
	if err != nil {
		return err
	}
	if rec.AppInstanceID != app || rec.LivenessInterval == 0 {
		return problem.NotFound("no liveness resource for this service")
	}
	body, _ := json.Marshal(mec.ServiceLivenessInfo{
		State:     rec.State,
		TimeStamp: mec.TimeStamp{Seconds: rec.LastHeartbeat.Unix(), NanoSeconds: int64(rec.LastHeartbeat.Nanosecond())},
		Interval:  rec.LivenessInterval,
	})
	return writeJSON(w, http.StatusOK, body)
}

func (h *handler) heartbeat(w http.ResponseWriter, r *http.Request) error {
	app, err := own(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	var u mec.ServiceLivenessUpdate
	if err := mec.DecodeBytes(body, "ServiceLivenessUpdate", &u); err != nil {
		return badField(err)
	}
	if u.State != store.StateActive {
		return problem.BadRequest("state", `state must be "ACTIVE" in a heartbeat`)
	}
	l, err := h.Store.Heartbeat(r.Context(), app, r.PathValue("serviceId"))
	switch {
	case errors.Is(err, store.ErrInvalid):
		return problem.NotFound("this service was registered without liveness")
	case errors.Is(err, store.ErrForbidden):
		// Another app's service under the caller's own path: no such resource,
		// as for GET, PUT and DELETE.
		return problem.NotFound("no such service of this app instance")
	case err != nil:
		return err
	}
	h.wait(r.Context(), l.StreamID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
