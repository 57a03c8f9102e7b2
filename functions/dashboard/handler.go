package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
)

// BasePath is the root of the admin API.
const BasePath = "/kmep/admin/v1"

// UIPath is where the UI's static files are served (the page itself at /).
const UIPath = "/dashboard/"

// Store is what the admin API reads. *store.Store implements it.
type Store interface {
	ListAppConfs(ctx context.Context) ([]store.AppConf, error)
	ListInstances(ctx context.Context) ([]store.Instance, error)
	AllRuleStatuses(ctx context.Context, upf string) ([]store.RuleStatus, error)
	MeshPeers(ctx context.Context) ([]store.MeshPeer, error)
	ListDeadLetters(ctx context.Context, count int64) ([]store.DeadLetter, error)
	GetDeadLetter(ctx context.Context, streamID string) (store.DeadLetter, error)
	DeleteDeadLetter(ctx context.Context, streamID string) error
	ReadChanges(ctx context.Context, after string, count int64, block time.Duration) ([]store.Change, error)
	LastChangeID(ctx context.Context) (string, error)
}

var _ Store = (*store.Store)(nil)

// Sender delivers a redelivered event to the broker; the result is ACK
// (protocol.IsACK) when the broker took it. cloudevents.Client and the
// all-in-one's embedded broker implement it.
type Sender interface {
	Send(ctx context.Context, e cloudevents.Event) protocol.Result
}

// Admin authenticates the platform admin. *auth.Admin implements it.
type Admin interface {
	Check(r *http.Request) error
}

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required.
	Store Store
	// Admin is required: every admin API request must carry its token.
	Admin Admin
	// App, when set, tells an app instance's valid token from garbage, so
	// that an app is refused with a 403 (not the platform admin) rather
	// than a 401. Zero value: every token but the admin's is a 401.
	App func(*http.Request) (string, error)
	// Sender redelivers dead letters to the broker. Zero value: redelivery
	// answers 501.
	Sender Sender
	// UPF names the data plane whose rule statuses are shown. Zero value:
	// "upf" (the UPF agent's default).
	UPF string
	// Stop, when closed, ends every open change stream (the process is
	// draining). Zero value: streams end with their request only.
	Stop <-chan struct{}
	// KeepAlive is the interval of the change stream's comments when
	// nothing changes. Zero value: 15 s.
	KeepAlive time.Duration
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
}

//go:embed ui
var uiFiles embed.FS

type handler struct {
	Deps
}

// New returns the dashboard: the UI at / and UIPath, the admin API at
// BasePath. Anything else is a 404 ProblemDetails.
func New(d Deps) http.Handler {
	if d.Store == nil || d.Admin == nil {
		panic("dashboard: New without Store or Admin")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.UPF == "" {
		d.UPF = "upf"
	}
	if d.KeepAlive == 0 {
		d.KeepAlive = 15 * time.Second
	}
	h := &handler{Deps: d}
	rt := rest.NewRouter(d.Log, h.authenticate)
	rt.Handle(BasePath+"/apps", map[string]problem.HandlerFunc{"GET": h.apps})
	rt.Handle(BasePath+"/instances", map[string]problem.HandlerFunc{"GET": h.instances})
	rt.Handle(BasePath+"/rule_statuses", map[string]problem.HandlerFunc{"GET": h.ruleStatuses})
	rt.Handle(BasePath+"/mesh_peers", map[string]problem.HandlerFunc{"GET": h.meshPeers})
	rt.Handle(BasePath+"/dead_letters", map[string]problem.HandlerFunc{"GET": h.deadLetters})
	rt.Handle(BasePath+"/dead_letters/{id}", map[string]problem.HandlerFunc{"GET": h.deadLetter})
	rt.Handle(BasePath+"/dead_letters/{id}/redeliver", map[string]problem.HandlerFunc{"POST": h.redeliver})
	rt.Handle(BasePath+"/events", map[string]problem.HandlerFunc{"GET": h.events})
	rt.NotFound(BasePath + "/")

	ui, _ := fs.Sub(uiFiles, "ui")
	mux := http.NewServeMux()
	mux.Handle(BasePath+"/", rt)
	mux.Handle("GET "+UIPath, http.StripPrefix(UIPath, noStore(http.FileServerFS(ui))))
	mux.Handle("GET /{$}", noStore(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, ui, "index.html")
	})))
	mux.Handle("/", problem.Handler(d.Log, func(http.ResponseWriter, *http.Request) error {
		return problem.NotFound("no such resource")
	}))
	return mux
}

// noStore keeps the UI's files out of caches, so a new platform version's
// page never runs an old script.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// authenticate admits the platform admin only: no token is a 401, an app
// instance's token a 403, anything else a 401.
func (h *handler) authenticate(r *http.Request) (string, error) {
	err := h.Admin.Check(r)
	if err == nil {
		return "", nil
	}
	if h.App != nil {
		if _, aerr := h.App(r); aerr == nil {
			return "", problem.Forbidden("this API is the platform admin's; app instance tokens are refused")
		}
	}
	return "", err
}

// appView is an app instance as the admin API shows it: its AK, never its SK.
type appView struct {
	AppInstanceID    string   `json:"appInstanceId"`
	AccessKeyID      string   `json:"accessKeyId"`
	AppName          string   `json:"appName,omitempty"`
	RequiredServices []string `json:"requiredServices,omitempty"`
	Rev              int64    `json:"rev"`
}

func (h *handler) apps(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.Store.ListAppConfs(r.Context())
	if err != nil {
		return err
	}
	out := make([]appView, len(cs))
	for i, c := range cs {
		out[i] = appView{AppInstanceID: c.AppInstanceID, AccessKeyID: c.AccessKeyID, AppName: c.AppName,
			RequiredServices: c.RequiredServices, Rev: c.Rev}
	}
	return writeJSON(w, out)
}

func (h *handler) instances(w http.ResponseWriter, r *http.Request) error {
	in, err := h.Store.ListInstances(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, orEmpty(in))
}

func (h *handler) ruleStatuses(w http.ResponseWriter, r *http.Request) error {
	sts, err := h.Store.AllRuleStatuses(r.Context(), h.UPF)
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]any{"upf": h.UPF, "statuses": orEmpty(sts)})
}

func (h *handler) meshPeers(w http.ResponseWriter, r *http.Request) error {
	ps, err := h.Store.MeshPeers(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, orEmpty(ps))
}

// orEmpty makes a nil slice an empty JSON array.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, b)
}

// intQuery parses the query parameter name as an integer in [lo, hi];
// absent is def, anything else a 400 naming it.
func intQuery(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query()[name]
	if len(v) == 0 {
		return def, nil
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if len(v) > 1 || err != nil || n < lo || n > hi {
		return 0, problem.BadRequest(name, name+" must be one integer from "+strconv.FormatInt(lo, 10)+" to "+strconv.FormatInt(hi, 10))
	}
	return n, nil
}
