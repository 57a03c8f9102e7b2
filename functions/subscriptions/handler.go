package subscriptions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// The two APIs whose subscriptions this function serves.
const (
	// ServiceMgmtPath is the MEC service management API's root
	// (SerAvailabilityNotificationSubscription).
	ServiceMgmtPath = mec.ServiceMgmtPath
	// AppSupportPath is the MEC application support API's root
	// (AppTerminationNotificationSubscription).
	AppSupportPath = mec.AppSupportPath
)

// MaxBody is the largest request body accepted (413 beyond).
const MaxBody = 64 << 10

// CallbackValidator checks a callbackReference before a subscription is
// stored. Validate returns a *callback.Error for a URL the client must
// change (400 naming callbackReference); any other error is a 500.
type CallbackValidator interface {
	Validate(ctx context.Context, rawURL string) error
}

var _ CallbackValidator = (*callback.Policy)(nil)

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required.
	Store *store.Store
	// Callbacks checks every callbackReference. Required.
	Callbacks CallbackValidator
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
}

// Routes returns the patterns New serves, for mounting the handler on a
// shared http.ServeMux (the all-in-one runner).
func Routes() []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.base+collection, k.base+collection+"/{subscriptionId}")
	}
	return out
}

const collection = "/applications/{appInstanceId}/subscriptions"

// kind is one of the two subscription types and the API it lives under.
type kind struct {
	base string
	typ  string
	// decode reads and validates a POST body for app.
	decode func(raw []byte, app string) (request, error)
}

var kinds = [...]kind{
	{base: ServiceMgmtPath, typ: store.SubServiceAvailability,
		decode: func(raw []byte, _ string) (request, error) { return decodeSerAvailability(raw) }},
	{base: AppSupportPath, typ: store.SubAppTermination, decode: decodeAppTermination},
}

type handler struct {
	Deps
}

// New returns the subscriptions handler, serving Routes().
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	h := &handler{Deps: d}
	rt := rest.NewRouter(d.Log, d.Authenticate)
	rt.AdminReads(d.AdminRead)
	for _, k := range kinds {
		rt.Handle(k.base+collection, map[string]problem.HandlerFunc{
			"GET":  mine(func(w http.ResponseWriter, r *http.Request) error { return h.list(w, r, k) }),
			"POST": mine(func(w http.ResponseWriter, r *http.Request) error { return h.create(w, r, k) }),
		})
		rt.Handle(k.base+collection+"/{subscriptionId}", map[string]problem.HandlerFunc{
			"GET":    mine(func(w http.ResponseWriter, r *http.Request) error { return h.get(w, r, k) }),
			"DELETE": mine(func(w http.ResponseWriter, r *http.Request) error { return h.remove(w, r, k) }),
		})
	}
	rt.NotFound("/")
	return rt
}

// mine runs fn only for the caller's own app instance: another
// appInstanceId in the path is a 403 before anything is read.
func mine(fn problem.HandlerFunc) problem.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := rest.Own(r); err != nil {
			return err
		}
		return fn(w, r)
	}
}

func collectionPath(k kind, app string) string {
	return k.base + "/applications/" + url.PathEscape(app) + "/subscriptions"
}

func subscriptionPath(k kind, app, id string) string {
	return collectionPath(k, app) + "/" + url.PathEscape(id)
}

// callbackRefused turns the callback policy's verdict into the answer: a
// refused URL is a 400 naming callbackReference with the policy's reason;
// a host whose lookup timed out or failed temporarily is a 503 (the client
// may retry the same request); anything else is unexpected (500).
func callbackRefused(err error) error {
	var ce *callback.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("validate callbackReference: %w", err)
	}
	var de *net.DNSError
	if errors.Is(err, callback.ErrUnresolvable) && errors.As(err, &de) && (de.IsTimeout || de.IsTemporary) {
		return &problem.Error{Status: http.StatusServiceUnavailable, RetryAfter: 1, Cause: err,
			Detail: "the callbackReference host could not be resolved right now; retry later"}
	}
	return &problem.Error{Status: http.StatusBadRequest, Field: "callbackReference",
		Detail: "callbackReference: " + ce.Reason, Cause: err}
}

// errNoSuch is the one answer for an unknown id and for a subscription of
// the other kind, so the wrong API reveals nothing.
func errNoSuch() error { return problem.NotFound("no such subscription") }

// errNotYours answers for another app's subscription id: the owner and the
// subscription stay undisclosed.
func errNotYours() error {
	return problem.Forbidden("the subscription belongs to another app instance")
}

func (h *handler) create(w http.ResponseWriter, r *http.Request, k kind) error {
	app := r.PathValue("appInstanceId")
	body, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	req, err := k.decode(body, app)
	if err != nil {
		return rest.BadField(err)
	}
	key, err := rest.IdempotencyKey(r)
	if err != nil {
		return err
	}
	if err := h.Callbacks.Validate(r.Context(), req.callbackReference); err != nil {
		return callbackRefused(err)
	}
	id := rest.NewID()
	if key != "" {
		id = rest.KeyedID("subscription\x00"+k.typ+"\x00"+app, key)
	}
	self := subscriptionPath(k, app, id)
	out, err := json.Marshal(req.render(self))
	if err != nil {
		return fmt.Errorf("render subscription: %w", err)
	}
	sub := store.Subscription{ID: id, AppInstanceID: app, Type: k.typ,
		CallbackReference: req.callbackReference, Filter: req.filter, Body: out}
	_, _, err = h.Store.CreateSubscription(r.Context(), sub)
	if key != "" && errors.Is(err, store.ErrConflict) {
		return h.replay(w, r, k, sub)
	}
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	w.Header().Set("Location", rest.Absolute(r, self))
	return rest.WriteJSON(w, http.StatusCreated, out)
}

// replay answers a create whose Idempotency-Key names a subscription that
// exists: the 201 its first request got when this is that request again
// (subscriptions do not change), else a 422.
func (h *handler) replay(w http.ResponseWriter, r *http.Request, k kind, want store.Subscription) error {
	cur, err := h.Store.GetSubscription(r.Context(), want.ID)
	if errors.Is(err, store.ErrNotFound) {
		return problem.New(http.StatusConflict, "the subscription this Idempotency-Key created was deleted meanwhile")
	}
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	if cur.AppInstanceID != want.AppInstanceID || cur.Type != want.Type || !bytes.Equal(cur.Body, want.Body) {
		return rest.IdempotencyMismatch()
	}
	// The first request's write may not have reached the replicas the
	// store requires (its answer may have been a 503): make sure first.
	if err := h.Store.Sync(r.Context()); err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	rest.MarkReplayed(w)
	w.Header().Set("Location", rest.Absolute(r, subscriptionPath(k, want.AppInstanceID, want.ID)))
	return rest.WriteJSON(w, http.StatusCreated, cur.Body)
}

// subscriptionLinkList is MecServiceMgmtApiSubscriptionLinkList and
// MecAppSuptApiSubscriptionLinkList.
type subscriptionLinkList struct {
	Links struct {
		Self          mec.Link      `json:"self"`
		Subscriptions []relatedLink `json:"subscriptions"`
	} `json:"_links"`
}

type relatedLink struct {
	Href string `json:"href"`
	Rel  string `json:"rel"`
}

func (h *handler) list(w http.ResponseWriter, r *http.Request, k kind) error {
	app := r.PathValue("appInstanceId")
	subs, err := h.Store.ListSubscriptions(r.Context(), app, k.typ)
	if err != nil {
		return fmt.Errorf("list subscriptions: %w", err)
	}
	var out subscriptionLinkList
	out.Links.Self.Href = collectionPath(k, app)
	out.Links.Subscriptions = make([]relatedLink, 0, len(subs))
	for _, s := range subs {
		out.Links.Subscriptions = append(out.Links.Subscriptions, relatedLink{Href: subscriptionPath(k, app, s.ID), Rel: k.typ})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("render subscription list: %w", err)
	}
	return rest.WriteJSON(w, http.StatusOK, b)
}

// lookup returns the caller's subscription of kind k named in the path.
func (h *handler) lookup(r *http.Request, k kind) (store.Subscription, error) {
	sub, err := h.Store.GetSubscription(r.Context(), r.PathValue("subscriptionId"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return sub, errNoSuch()
	case err != nil:
		return sub, err
	case sub.AppInstanceID != r.PathValue("appInstanceId"):
		// Checked before the type: another app's subscription of either kind
		// gets the same answer.
		return sub, errNotYours()
	case sub.Type != k.typ:
		return sub, errNoSuch()
	}
	return sub, nil
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, k kind) error {
	sub, err := h.lookup(r, k)
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, sub.Body)
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request, k kind) error {
	sub, err := h.lookup(r, k)
	if err != nil {
		return err
	}
	_, err = h.Store.DeleteSubscription(r.Context(), r.PathValue("appInstanceId"), sub.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNoSuch() // deleted meanwhile
	case errors.Is(err, store.ErrForbidden):
		return errNotYours()
	case err != nil:
		return fmt.Errorf("delete subscription: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
