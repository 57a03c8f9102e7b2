package services

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
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
	// error (a *problem.Error: 401, or 503 when keys are unavailable).
	// Required: New panics without it.
	Authenticate func(*http.Request) (string, error)
	// AdminRead recognises the platform admin, who may read every app
	// instance's resources (GET) but write none (403): auth.Admin.Check.
	// Zero value: the admin token is refused like any invalid token.
	AdminRead func(*http.Request) error
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// MinLivenessInterval is the shortest heartbeat interval granted; a
	// smaller proposal is raised to it. Zero value: 1 s.
	MinLivenessInterval time.Duration
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
	// Metrics is the binary's registry. Zero value: nothing is registered.
	Metrics prometheus.Registerer
}

type handler struct {
	Deps
	m serviceMetrics
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
	h := &handler{Deps: d, m: newMetrics(d.Metrics, d.Cache, d.Now)}
	rt := rest.NewRouter(d.Log, d.Authenticate)
	rt.AdminReads(d.AdminRead)
	rt.Handle(BasePath+"/services", map[string]problem.HandlerFunc{"GET": h.discover})
	rt.Handle(BasePath+"/services/{serviceId}", map[string]problem.HandlerFunc{"GET": h.getAny})
	rt.Handle(BasePath+"/transports", map[string]problem.HandlerFunc{"GET": h.transports})
	rt.Handle(BasePath+"/applications/{appInstanceId}/services", map[string]problem.HandlerFunc{"GET": h.discover, "POST": h.create})
	rt.Handle(BasePath+"/applications/{appInstanceId}/services/{serviceId}", map[string]problem.HandlerFunc{"GET": h.getOwn, "PUT": h.update, "DELETE": h.remove})
	rt.Handle(BasePath+"/applications/{appInstanceId}/services/{serviceId}/liveness", map[string]problem.HandlerFunc{"GET": h.liveness, "PATCH": h.heartbeat, "PUT": h.heartbeat})
	rt.NotFound(BasePath + "/")
	return rt
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

// record is the store record of si as registered (create) or replaced
// (update) by app under id, with the liveness interval the platform grants.
func (h *handler) record(si mec.ServiceInfo, app, id string) store.ServiceRecord {
	si.LivenessInterval = h.grant(si.LivenessInterval)
	rec := store.ServiceRecord{ID: id, AppInstanceID: app, Name: si.SerName, State: si.State,
		LivenessInterval: si.LivenessInterval, Info: stored(si, app, id)}
	if si.SerCategory != nil {
		rec.CategoryID = si.SerCategory.ID
	}
	return rec
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	body, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	si, err := mec.DecodeServiceInfo(body, platformTransport)
	if err != nil {
		return rest.BadField(err)
	}
	key, err := rest.IdempotencyKey(r)
	if err != nil {
		return err
	}
	id := rest.NewID()
	if key != "" {
		id = rest.KeyedID("service\x00"+app, key)
	}
	rec := h.record(si, app, id)
	created, sid, err := h.Store.CreateService(r.Context(), rec)
	if key != "" && errors.Is(err, store.ErrConflict) {
		return h.replay(w, r, rec)
	}
	if err != nil {
		return fmt.Errorf("register service: %w", err)
	}
	h.m.registrations.Inc()
	h.wait(r.Context(), sid)
	w.Header().Set("Location", rest.Absolute(r, servicePath(app, id)))
	w.Header().Set("ETag", rest.ETag(created.Rev))
	return rest.WriteJSON(w, http.StatusCreated, render(created))
}

// replay answers a registration whose Idempotency-Key names a service that
// exists: a retry of the request that created it gets that request's 201
// with the service as it is now. A different request under the same key is
// a 422, as far as the service still shows what its first request created
// (Rev 1); once changed, any request with the key gets the service.
func (h *handler) replay(w http.ResponseWriter, r *http.Request, want store.ServiceRecord) error {
	cur, err := h.Store.GetService(r.Context(), want.ID)
	if errors.Is(err, store.ErrNotFound) {
		return problem.New(http.StatusConflict, "the service this Idempotency-Key registered was deregistered meanwhile")
	}
	if err != nil {
		return fmt.Errorf("register service: %w", err)
	}
	same := cur.Name == want.Name && cur.CategoryID == want.CategoryID && cur.State == want.State &&
		cur.LivenessInterval == want.LivenessInterval && bytes.Equal(cur.Info, want.Info)
	if cur.AppInstanceID != want.AppInstanceID || cur.Rev == 1 && !same {
		return rest.IdempotencyMismatch()
	}
	// What the first request stored may not have reached the replicas the
	// store requires yet (its answer may have been that 503): make sure
	// before answering it as stored.
	if err := h.Store.Sync(r.Context()); err != nil {
		return fmt.Errorf("register service: %w", err)
	}
	rest.MarkReplayed(w)
	w.Header().Set("Location", rest.Absolute(r, servicePath(want.AppInstanceID, want.ID)))
	w.Header().Set("ETag", rest.ETag(cur.Rev))
	return rest.WriteJSON(w, http.StatusCreated, render(cur))
}

func (h *handler) update(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	id := r.PathValue("serviceId")
	cond := rest.IfMatch(r)
	body, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	si, err := mec.DecodeServiceInfo(body, platformTransport)
	if err != nil {
		return rest.BadField(err)
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
	rec := h.record(si, app, id)
	if cur.State == store.StateSuspended && si.State == store.StateActive {
		// Only a heartbeat brings a suspended service back.
		rec.State = store.StateSuspended
	}
	rec, sid, err := h.Store.UpdateService(r.Context(), rec, cond)
	if err != nil {
		return fmt.Errorf("update service: %w", err)
	}
	h.wait(r.Context(), sid)
	w.Header().Set("ETag", rest.ETag(rec.Rev))
	return rest.WriteJSON(w, http.StatusOK, render(rec))
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
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
	h.m.deregistrations.Inc()
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
	w.Header().Set("ETag", rest.ETag(rec.Rev))
	return rest.WriteJSON(w, http.StatusOK, body)
}

func (h *handler) getOwn(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	rec, body, err := h.lookup(r.Context(), r.PathValue("serviceId"))
	if err != nil {
		return err
	}
	if rec.AppInstanceID != app {
		return problem.NotFound("no such service of this app instance")
	}
	w.Header().Set("ETag", rest.ETag(rec.Rev))
	return rest.WriteJSON(w, http.StatusOK, body)
}

func (h *handler) liveness(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
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
	return rest.WriteJSON(w, http.StatusOK, body)
}

func (h *handler) heartbeat(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	body, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	var u mec.ServiceLivenessUpdate
	if err := mec.DecodeBytes(body, "ServiceLivenessUpdate", &u); err != nil {
		return rest.BadField(err)
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
	h.m.heartbeats.Inc()
	h.wait(r.Context(), l.StreamID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
