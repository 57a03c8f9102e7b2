// Package instantiate is the platform admin's app instance API
// (EdgeGallery's applcm instantiate/terminate, under /lcmcontroller/v1):
// it installs a distributed package's Helm chart on a MEC host with fresh
// AK/SK credentials and the APPD's traffic and DNS rules, reports the
// release's state, and terminates instances.
//
// The function is stateless: instantiate and terminate check the request
// (package distributed to the host, chart renders: 422 with Helm's message),
// record the instance INSTANTIATING or TERMINATING together with its change
// in the store's change stream (one atomic step), and answer 202 with the
// instance's URL. The install and the removal are driven by that change,
// through the outbox relay, the Broker and the installer trigger
// (triggers/installer), which records every outcome, so GET shows where it
// is. A failed install is uninstalled, its credentials and rules removed,
// and the instance left FAILED with the reason.
package instantiate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/kmep-io/kmep/store/mec"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/chart"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/lifecycle"
)

// Paths served.
const (
	BasePath      = mec.LCMControllerPath
	InstancePath  = BasePath + "/tenants/{tenantId}/app_instances/{appInstanceId}"
	InstantiateP  = InstancePath + "/instantiate"
	TerminatePath = InstancePath + "/terminate"
	maxBody       = 256 << 10
)

// Admin authenticates the platform admin.
type Admin interface {
	Check(r *http.Request) error
}

// Objects reads packages from the bucket (*blob.Store).
type Objects interface {
	ReaderAt(ctx context.Context, key string, size int64) io.ReaderAt
}

var _ Objects = (*blob.Store)(nil)

// Cluster renders charts and reads releases (*kube.Deployer); the
// installer trigger installs and removes them.
type Cluster interface {
	Reachable(ctx context.Context, kubeconfig []byte) error
	Render(ch *chart.Chart, name, namespace string, values map[string]any) error
	Status(ctx context.Context, kubeconfig []byte, namespace, name string) (kube.Status, error)
}

var _ Cluster = (*kube.Deployer)(nil)

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required, with an encryption key (credentials and
	// kubeconfigs are sealed).
	Store *store.Store
	// Objects and Cluster are required.
	Objects Objects
	Cluster Cluster
	// Admin is required.
	Admin Admin
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Namespace is where an instance is installed when the request names
	// none (KMEP_APP_NAMESPACE). Zero value: "mec-apps".
	Namespace string
	// AgentValues are the mep-agent settings put into every chart's values
	// under "mepagent" (the platform's URLs). Zero value: none but
	// "enabled: true".
	AgentValues map[string]any
	// InstallTimeout sets an instance's Deadline: when its install is
	// expected to be done by (the installer resumes it after). Zero value:
	// 5 min.
	InstallTimeout time.Duration
	// Graceful is the termination's graceful timeout (how long subscribers
	// may take to confirm). Zero value: 10 s.
	Graceful time.Duration
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
}

// Handler serves the API. It keeps no state between requests.
type Handler struct {
	http.Handler
	d Deps
}

// New returns the instantiate handler.
func New(d Deps) *Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Namespace == "" {
		d.Namespace = "mec-apps"
	}
	if d.InstallTimeout == 0 {
		d.InstallTimeout = 5 * time.Minute
	}
	if d.Graceful == 0 {
		d.Graceful = 10 * time.Second
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &Handler{d: d}
	rt := rest.NewRouter(d.Log, h.admit)
	rt.Handle(InstancePath, map[string]problem.HandlerFunc{"GET": h.get})
	rt.Handle(InstantiateP, map[string]problem.HandlerFunc{"POST": h.instantiate})
	rt.Handle(TerminatePath, map[string]problem.HandlerFunc{"POST": h.terminate})
	h.Handler = rt
	return h
}

func (h *Handler) admit(r *http.Request) (string, error) {
	if err := h.d.Admin.Check(r); err != nil {
		return "", err
	}
	if !rest.ValidID(r.PathValue("tenantId")) {
		return "", problem.BadRequest("tenantId", "tenantId must be 1-64 letters, digits, '.', '_' or '-'")
	}
	if !dnsLabel(r.PathValue("appInstanceId"), 53) {
		return "", problem.BadRequest("appInstanceId", "appInstanceId must be 1-53 lowercase letters, digits or '-' (it names the Helm release)")
	}
	return "", nil
}

// dnsLabel reports whether s is an RFC 1123 label of at most max bytes.
func dnsLabel(s string, max int) bool {
	if s == "" || len(s) > max || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Request is the body of POST .../instantiate.
type Request struct {
	HostIP    string `json:"hostIp"`
	AppName   string `json:"appName"`
	PackageID string `json:"packageId"`
	// Namespace overrides the platform's default namespace.
	Namespace string `json:"namespace,omitempty"`
	// Parameters are merged into the chart's values (the platform's ak,
	// sk, appInstanceId and mepagent keys win).
	Parameters map[string]any `json:"parameters,omitempty"`
	// AK and SK are the credentials to use; generated when absent.
	AK string `json:"ak,omitempty"`
	SK string `json:"sk,omitempty"`
}

// Accepted answers a 202.
type Accepted struct {
	AppInstanceID string `json:"appInstanceId"`
	State         string `json:"state"`
	// Status is the URL to poll.
	Status string `json:"status"`
}

// View is GET's answer: the record and, when there is a release, its state
// on the cluster.
type View struct {
	store.Instance
	Release *kube.Status `json:"release,omitempty"`
	// ClusterError says why the release could not be read.
	ClusterError string `json:"clusterError,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, status, b)
}

func (h *Handler) instancePath(r *http.Request) string {
	p := strings.Replace(InstancePath, "{tenantId}", r.PathValue("tenantId"), 1)
	return rest.Absolute(r, strings.Replace(p, "{appInstanceId}", r.PathValue("appInstanceId"), 1))
}

// job is what the install needs, all checked already.
type job struct {
	inst       store.Instance
	kubeconfig []byte
	chart      *chart.Chart
	values     map[string]any
	ak         string
	sk         []byte
	appd       store.AppD
}

func (h *Handler) instantiate(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, app := r.PathValue("tenantId"), r.PathValue("appInstanceId")
	raw, err := rest.ReadBody(w, r, maxBody)
	if err != nil {
		return err
	}
	var req Request
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return problem.BadRequest("body", "malformed JSON: "+err.Error())
	}
	ns := req.Namespace
	if ns == "" {
		ns = h.d.Namespace
	}
	switch {
	case net.ParseIP(req.HostIP) == nil:
		return problem.BadRequest("hostIp", "hostIp must be a MEC host's IP address")
	case !rest.ValidID(req.PackageID):
		return problem.BadRequest("packageId", "packageId must be 1-64 letters, digits, '.', '_' or '-'")
	case req.AppName == "" || len(req.AppName) > 128:
		return problem.BadRequest("appName", "appName must be 1-128 bytes")
	case !dnsLabel(ns, 63):
		return problem.BadRequest("namespace", "namespace must be an RFC 1123 label")
	case (req.AK == "") != (req.SK == ""):
		return problem.BadRequest("ak", "give both ak and sk, or neither")
	case req.AK != "" && (len(req.AK) > 128 || len(req.SK) < 16 || len(req.SK) > 256):
		return problem.BadRequest("sk", "ak must be at most 128 bytes and sk 16-256 bytes")
	}
	if _, err := h.d.Store.GetInstance(ctx, app); err == nil {
		return problem.New(http.StatusConflict, "app instance "+app+" exists")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	pkg, err := h.d.Store.GetPackage(ctx, tenant, req.PackageID)
	if err != nil {
		return notFound(err, "package "+req.PackageID)
	}
	host, err := h.d.Store.GetHostKubeconfig(ctx, req.HostIP)
	if err != nil {
		return notFound(err, "MEC host "+req.HostIP)
	}
	dist, err := h.d.Store.Distribution(ctx, tenant, pkg.ID)
	if err != nil {
		return err
	}
	if _, ok := dist[req.HostIP]; !ok {
		return problem.New(http.StatusConflict, "package "+pkg.ID+" is not distributed to "+req.HostIP)
	}
	j := job{kubeconfig: host.Kubeconfig}
	if j.appd, err = h.readPackage(ctx, pkg, app, req.AppName, &j); err != nil {
		return err
	}
	j.ak, j.sk = req.AK, []byte(req.SK)
	if j.ak == "" {
		j.ak, j.sk = randomHex(10), []byte(randomHex(32))
	}
	j.values = chartValues(req.Parameters, app, j.ak, string(j.sk), h.d.AgentValues)
	if err := h.d.Cluster.Render(j.chart, app, ns, j.values); err != nil {
		var re *kube.RenderError
		if errors.As(err, &re) {
			return &problem.Error{Status: http.StatusUnprocessableEntity, Field: "parameters", Detail: re.Message, Cause: err}
		}
		return err
	}
	if err := h.d.Cluster.Reachable(ctx, j.kubeconfig); err != nil {
		if errors.Is(err, kube.ErrBadKubeconfig) {
			return &problem.Error{Status: http.StatusConflict, Field: "hostIp", Detail: "the MEC host's kubeconfig cannot be used; update the host", Cause: err}
		}
		return problem.Unavailable("the MEC host's cluster", 5, err)
	}
	now := h.d.Now().UTC()
	j.inst = store.Instance{AppInstanceID: app, TenantID: tenant, HostAddress: req.HostIP, PackageID: pkg.ID,
		AppName: req.AppName, Namespace: ns, Release: app, State: store.InstanceInstantiating,
		Deadline: now.Add(h.d.InstallTimeout), CreatedAt: now, UpdatedAt: now}
	spec := store.InstallSpec{Object: pkg.Object, Size: pkg.Size, Values: j.values, AK: j.ak, SK: j.sk, AppD: j.appd}
	if _, err := h.d.Store.StartInstance(ctx, j.inst, spec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem.New(http.StatusConflict, "app instance "+app+" exists")
		}
		return err
	}
	h.d.Log.Info("instantiating", "app", app, "tenant", tenant, "package", pkg.ID, "host", req.HostIP, "namespace", ns)
	w.Header().Set("Location", h.instancePath(r))
	return writeJSON(w, http.StatusAccepted, Accepted{AppInstanceID: app, State: j.inst.State, Status: h.instancePath(r)})
}

// readPackage opens the CSAR in the bucket, loads its chart and reads the
// APPD's rules into the Mm5 appd configuration.
func (h *Handler) readPackage(ctx context.Context, pkg store.Package, app, appName string, j *job) (store.AppD, error) {
	p, err := csar.Open(h.d.Objects.ReaderAt(ctx, pkg.Object, pkg.Size), pkg.Size)
	if err != nil {
		return store.AppD{}, packageError(err)
	}
	tgz, err := p.Chart("")
	if err != nil {
		return store.AppD{}, packageError(err)
	}
	if j.chart, err = kube.LoadChart(tgz); err != nil {
		return store.AppD{}, &problem.Error{Status: http.StatusUnprocessableEntity, Field: "packageId", Detail: err.Error(), Cause: err}
	}
	rules, err := p.Rules()
	if err != nil {
		return store.AppD{}, packageError(err)
	}
	list := func(rs [][]byte) []json.RawMessage {
		out := make([]json.RawMessage, len(rs))
		for i, b := range rs {
			out[i] = b
		}
		return out
	}
	raw, _ := json.Marshal(map[string]any{"appName": appName, "appSupportMp1": true,
		"appTrafficRule": list(rules.Traffic), "appDNSRule": list(rules.DNS)})
	d, err := lifecycle.ParseAppD(app, raw)
	if err != nil {
		pe := problem.From(err)
		return d, &problem.Error{Status: http.StatusUnprocessableEntity, Field: pe.Field, Detail: "the package's APPD rules are invalid: " + pe.Detail, Cause: err}
	}
	return d, nil
}

func packageError(err error) error {
	var iv *csar.InvalidError
	if errors.As(err, &iv) {
		return &problem.Error{Status: http.StatusUnprocessableEntity, Field: "packageId", Detail: iv.Reason, Cause: err}
	}
	if errors.Is(err, blob.ErrNotFound) {
		return &problem.Error{Status: http.StatusConflict, Field: "packageId", Detail: "the package's object is missing from the bucket", Cause: err}
	}
	return problem.Unavailable("object storage", 2, err)
}

func notFound(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &problem.Error{Status: http.StatusNotFound, Detail: "unknown " + what, Cause: err}
	}
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// chartValues merges the caller's parameters with the platform's keys:
// ak, sk and appInstanceId at the top (and EdgeGallery's
// appconfig.aksk.{accesskey,secretkey,appInsId}), and the mep-agent's
// settings under mepagent.
func chartValues(params map[string]any, app, ak, sk string, agent map[string]any) map[string]any {
	v := make(map[string]any, len(params)+5)
	for k, x := range params {
		v[k] = x
	}
	v["ak"], v["sk"], v["appInstanceId"] = ak, sk, app
	appconfig, _ := v["appconfig"].(map[string]any)
	if appconfig == nil {
		appconfig = map[string]any{}
	}
	appconfig["aksk"] = map[string]any{"accesskey": ak, "secretkey": sk, "appInsId": app}
	v["appconfig"] = appconfig
	ma := map[string]any{"enabled": true}
	for k, x := range agent {
		ma[k] = x
	}
	v["mepagent"] = ma
	return v
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	in, err := h.d.Store.GetInstance(ctx, r.PathValue("appInstanceId"))
	if err != nil || in.TenantID != r.PathValue("tenantId") {
		return notFound(orNotFound(err), "app instance")
	}
	v := View{Instance: in}
	if in.State != store.InstanceInstantiating {
		host, err := h.d.Store.GetHostKubeconfig(ctx, in.HostAddress)
		switch {
		case errors.Is(err, store.ErrNotFound):
			v.ClusterError = "MEC host " + in.HostAddress + " is no longer registered"
		case err != nil:
			return err
		default:
			st, err := h.d.Cluster.Status(ctx, host.Kubeconfig, in.Namespace, in.Release)
			switch {
			case err == nil:
				v.Release = &st
				// A pod that the kubelet cannot start as specified (its
				// image cannot be pulled, ...): the instance has failed,
				// with the kubelet's reason. Not stored: it is read from
				// the cluster each time, and clears when the pods start.
				if st.Failure != "" && in.State == store.InstanceInstantiated {
					v.State, v.Reason = store.InstanceFailed, st.Failure
				}
			case errors.Is(err, kube.ErrNotFound):
				v.ClusterError = "no Helm release " + in.Release + " on the host"
			case errors.Is(err, kube.ErrUnreachable):
				return problem.Unavailable("the MEC host's cluster", 5, err)
			default:
				v.ClusterError = err.Error()
			}
		}
	}
	return writeJSON(w, http.StatusOK, v)
}

func orNotFound(err error) error {
	if err == nil {
		return store.ErrNotFound
	}
	return err
}

// TerminateRequest is the optional body of POST .../terminate.
type TerminateRequest struct {
	// GracefulTimeout overrides the platform's, in seconds.
	GracefulTimeout *int `json:"gracefulTimeout,omitempty"`
}

func (h *Handler) terminate(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	app := r.PathValue("appInstanceId")
	graceful := h.d.Graceful
	if raw, err := rest.ReadBody(w, r, maxBody); err != nil {
		return err
	} else if len(strings.TrimSpace(string(raw))) > 0 {
		var req TerminateRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			return problem.BadRequest("body", "malformed JSON: "+err.Error())
		}
		if req.GracefulTimeout != nil {
			if *req.GracefulTimeout < 0 || *req.GracefulTimeout > 300 {
				return problem.BadRequest("gracefulTimeout", "gracefulTimeout must be 0-300 seconds")
			}
			graceful = time.Duration(*req.GracefulTimeout) * time.Second
		}
	}
	in, err := h.d.Store.GetInstance(ctx, app)
	if err != nil || in.TenantID != r.PathValue("tenantId") {
		return notFound(orNotFound(err), "app instance")
	}
	// Also while INSTANTIATING: the installer finishes or abandons the
	// install first, then removes everything it made.
	in.State, in.Reason = store.InstanceTerminating, ""
	if _, err := h.d.Store.RequestTermination(ctx, in, graceful); err != nil {
		return notFound(err, "app instance")
	}
	h.d.Log.Info("terminating", "app", app)
	w.Header().Set("Location", h.instancePath(r))
	return writeJSON(w, http.StatusAccepted, Accepted{AppInstanceID: app, State: in.State, Status: h.instancePath(r)})
}
