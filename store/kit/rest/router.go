package rest

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/kmep-io/kmep/store/kit/problem"
)

// Router is an http.Handler serving an API's resources: each pattern answers
// the methods it was registered with and refuses any other with a 405.
// Register everything before serving; a Router is safe for concurrent use
// from then on.
type Router struct {
	mux          *http.ServeMux
	log          *slog.Logger
	authenticate func(*http.Request) (string, error)
	// admin, when set, recognises the platform admin (AdminReads).
	admin func(*http.Request) error
}

// NewRouter returns a Router that writes errors through problem.Handler
// with log (nil: nothing is logged).
//
// authenticate runs before every registered method's function: its error
// is the answer (a *problem.Error: 401, 403, or 503 when keys are
// unavailable), and the name it returns is the request's Caller. It is
// required; pass Unauthenticated for an API whose methods check callers
// themselves. NewRouter panics when it is nil, so that a missing
// authenticator is a startup failure, never an open API.
func NewRouter(log *slog.Logger, authenticate func(*http.Request) (string, error)) *Router {
	if authenticate == nil {
		panic("rest: NewRouter without an authenticate function (Unauthenticated if none is wanted)")
	}
	return &Router{mux: http.NewServeMux(), log: log, authenticate: authenticate}
}

// Unauthenticated is the authenticate function of an API whose router lets
// every request through to its methods, which check what they need (the
// token API: anyone may ask for a token, the admin's calls check the admin).
// The Caller of its requests is "".
func Unauthenticated(*http.Request) (string, error) { return "", nil }

// Handle serves pattern (an http.ServeMux pattern without a method) with
// methods, keyed by method name. A request with any other method is a 405
// ProblemDetails with an Allow header listing the methods in sorted order,
// answered before authentication. A request with a listed method is
// authenticated, then given to its function with the caller in its context.
func (rt *Router) Handle(pattern string, methods map[string]problem.HandlerFunc) {
	methods = maps.Clone(methods)
	allowed := strings.Join(slices.Sorted(maps.Keys(methods)), ", ")
	rt.mux.Handle(pattern, problem.Handler(rt.log, func(w http.ResponseWriter, r *http.Request) error {
		fn, ok := methods[r.Method]
		if !ok {
			w.Header().Set("Allow", allowed)
			return problem.New(http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here")
		}
		if rt.admin != nil && rt.admin(r) == nil {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				return problem.Forbidden("the platform admin reads this API; writes are the owning app instance's")
			}
			return fn(w, r.WithContext(context.WithValue(r.Context(), adminKey{}, true)))
		}
		app, err := rt.authenticate(r)
		if err != nil {
			return err
		}
		return fn(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, app)))
	}))
}

// AdminReads lets the platform admin read every resource the Router serves:
// a request that check accepts (nil: its bearer credentials are the admin
// token, see auth.Admin.Check) is, for GET and HEAD, given to its function
// as the admin's (IsAdmin; CheckCaller and Own let it read any app
// instance's resources), and for any other method refused with a 403:
// writes stay the owning app instance's. A request check refuses is
// authenticated as before. Call it before serving; a nil check turns it
// off. check runs first on every request, so it must be cheap (Admin.Check
// hashes the token once).
func (rt *Router) AdminReads(check func(*http.Request) error) { rt.admin = check }

// NotFound answers every request under pattern that no other pattern
// serves with a 404 ProblemDetails, without authentication: an unknown
// path of the API is a ProblemDetails like every other refusal.
func (rt *Router) NotFound(pattern string) {
	rt.mux.Handle(pattern, problem.Handler(rt.log, func(http.ResponseWriter, *http.Request) error {
		return problem.NotFound("no such resource")
	}))
}

// ServeHTTP dispatches r to the pattern that matches it.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

type callerKey struct{}

type adminKey struct{}

// IsAdmin reports whether r is the platform admin's read (AdminReads).
func IsAdmin(r *http.Request) bool { ok, _ := r.Context().Value(adminKey{}).(bool); return ok }

// Caller returns the name the Router's authenticate gave r's caller: the
// appInstanceId of an Mp1 caller ("" outside a Router, or when none).
func Caller(r *http.Request) string { s, _ := r.Context().Value(callerKey{}).(string); return s }

// CheckCaller returns nil when app is r's caller, else a 403: an app
// instance acts for itself only. The platform admin's read (IsAdmin) may
// read any app instance's resources.
func CheckCaller(r *http.Request, app string) error {
	if IsAdmin(r) {
		return nil
	}
	if app != Caller(r) {
		return problem.Forbidden("appInstanceId " + strconv.Quote(app) + " is not the caller's app instance")
	}
	return nil
}

// Own returns the path's appInstanceId when it is r's caller, else a 403.
func Own(r *http.Request) (string, error) {
	app := r.PathValue("appInstanceId")
	if err := CheckCaller(r, app); err != nil {
		return "", err
	}
	return app, nil
}
