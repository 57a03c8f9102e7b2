package appsupport

import (
	"github.com/kmep-io/kmep/store/mec"
	"log/slog"
	"net/http"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
)

// BasePath is where the API is mounted.
const BasePath = mec.AppSupportPath

// MaxBody is the largest request body accepted (413 beyond).
const MaxBody = 64 << 10

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required.
	Store *store.Store
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
}

// New returns the application support handler, mounted at BasePath.
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{Deps: d}
	rt := rest.NewRouter(d.Log, d.Authenticate)
	rt.AdminReads(d.AdminRead)
	for _, k := range []*ruleKind{trafficRules, dnsRules} {
		rt.Handle(BasePath+"/applications/{appInstanceId}/"+k.collection, map[string]problem.HandlerFunc{"GET": h.listRules(k)})
		rt.Handle(BasePath+"/applications/{appInstanceId}/"+k.collection+"/{ruleId}", map[string]problem.HandlerFunc{"GET": h.getRule(k), "PUT": h.putRule(k)})
	}
	rt.Handle(BasePath+"/applications/{appInstanceId}/confirm_ready", map[string]problem.HandlerFunc{"POST": h.confirmReady})
	rt.Handle(BasePath+"/applications/{appInstanceId}/confirm_termination", map[string]problem.HandlerFunc{"POST": h.confirmTermination})
	rt.Handle(BasePath+"/registrations", map[string]problem.HandlerFunc{"POST": h.register})
	rt.Handle(BasePath+"/registrations/{appInstanceId}", map[string]problem.HandlerFunc{"GET": h.getRegistration, "PUT": h.updateRegistration, "DELETE": h.deregister})
	rt.Handle(BasePath+"/timing/current_time", map[string]problem.HandlerFunc{"GET": h.currentTime})
	rt.Handle(BasePath+"/timing/timing_caps", map[string]problem.HandlerFunc{"GET": h.timingCaps})
	rt.NotFound(BasePath + "/")
	return rt
}
