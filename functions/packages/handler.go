// Package packages is the platform admin's app package and MEC host API
// (EdgeGallery's lcmcontroller, /lcmcontroller/v1): CSAR upload streamed to
// S3 and checked, package metadata, distribution to MEC hosts, and the MEC
// hosts with the kubeconfigs that reach their clusters.
package packages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kmep-io/kmep/store/mec"
	"hash"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
)

// Paths served.
const (
	BasePath        = mec.LCMControllerPath
	PackagesPath    = BasePath + "/tenants/{tenantId}/packages"
	PackagePath     = PackagesPath + "/{packageId}"
	DistributePath  = PackagePath + "/distribute"
	HostsPath       = BasePath + "/hosts"
	HostPath        = HostsPath + "/{hostIp}"
	maxJSONBody     = 1 << 20
	defaultMaxBytes = 1 << 30
)

// Admin authenticates the platform admin.
type Admin interface {
	Check(r *http.Request) error
}

// Objects is the bucket packages are kept in (*blob.Store).
type Objects interface {
	Put(ctx context.Context, key string, r io.Reader) error
	Delete(ctx context.Context, key string) error
	ReaderAt(ctx context.Context, key string, size int64) io.ReaderAt
}

var _ Objects = (*blob.Store)(nil)

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required (with an encryption key: kubeconfigs are sealed).
	Store *store.Store
	// Objects is required.
	Objects Objects
	// Admin is required.
	Admin Admin
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// MaxPackageBytes caps an upload (KMEP_PACKAGE_MAX_BYTES). Zero value:
	// 1 GiB.
	MaxPackageBytes int64
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
}

type handler struct{ Deps }

// New returns the packages and hosts handler.
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.MaxPackageBytes == 0 {
		d.MaxPackageBytes = defaultMaxBytes
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{Deps: d}
	rt := rest.NewRouter(d.Log, h.admit)
	rt.Handle(PackagesPath, map[string]problem.HandlerFunc{"POST": h.upload, "GET": h.list})
	rt.Handle(PackagePath, map[string]problem.HandlerFunc{"GET": h.get, "DELETE": h.delete})
	rt.Handle(DistributePath, map[string]problem.HandlerFunc{"POST": h.distribute, "GET": h.distribution})
	rt.Handle(HostsPath, map[string]problem.HandlerFunc{"POST": h.addHost, "GET": h.listHosts})
	rt.Handle(HostPath, map[string]problem.HandlerFunc{"PUT": h.updateHost, "GET": h.getHost, "DELETE": h.deleteHost})
	rt.NotFound(BasePath + "/")
	return rt
}

// admit lets the platform admin in, for well-formed ids in the path.
func (h *handler) admit(r *http.Request) (string, error) {
	if err := h.Admin.Check(r); err != nil {
		return "", err
	}
	for _, p := range []string{"tenantId", "packageId"} {
		if v := r.PathValue(p); v != "" && !rest.ValidID(v) {
			return "", problem.BadRequest(p, p+" must be 1-64 letters, digits, '.', '_' or '-'")
		}
	}
	if v := r.PathValue("hostIp"); v != "" && net.ParseIP(v) == nil {
		return "", problem.BadRequest("hostIp", "hostIp must be an IP address")
	}
	return "", nil
}

// PackageInfo is a package as the API shows it.
type PackageInfo struct {
	store.Package
	Distribution store.Distribution `json:"distribution,omitempty"`
}

// ObjectKey is where a tenant's package lives in the bucket.
func ObjectKey(tenant, id string) string { return "packages/" + tenant + "/" + id + ".csar" }

// tooLargeError is the upload limit being hit while the body streams.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string { return fmt.Sprintf("package exceeds %d bytes", e.limit) }

// bodyError is the client's body failing to arrive (not S3 failing).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read upload: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// meter counts and hashes what streams through it and stops at a limit.
type meter struct {
	r     io.Reader
	n     int64
	limit int64
	sum   hash.Hash
}

func (m *meter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n += int64(n)
	m.sum.Write(p[:n])
	if m.n > m.limit {
		return n, &tooLargeError{m.limit}
	}
	if err != nil && err != io.EOF {
		return n, &bodyError{err}
	}
	return n, err
}

func (h *handler) upload(w http.ResponseWriter, r *http.Request) error {
	tenant := r.PathValue("tenantId")
	if r.ContentLength > h.MaxPackageBytes+1<<20 {
		return problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("package exceeds %d bytes", h.MaxPackageBytes))
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return problem.BadRequest("Content-Type", "upload the CSAR as multipart/form-data with a file part named \"package\"")
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return problem.BadRequest("body", "not a multipart body: "+err.Error())
	}
	id := ""
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return problem.BadRequest("package", "no file part named \"package\"")
		}
		if err != nil {
			return problem.BadRequest("body", "malformed multipart body: "+err.Error())
		}
		switch part.FormName() {
		case "packageId":
			b, _ := io.ReadAll(io.LimitReader(part, 65))
			id = strings.TrimSpace(string(b))
			if !rest.ValidID(id) {
				return problem.BadRequest("packageId", "packageId must be 1-64 letters, digits, '.', '_' or '-'")
			}
			continue
		case "package", "file":
		default:
			continue
		}
		if id == "" {
			id = strings.ReplaceAll(rest.NewID(), "-", "")
		}
		return h.store(w, r, tenant, id, part)
	}
}

// store streams one CSAR to the bucket, checks it there and records it;
// whatever fails, the object is removed again, unless the record may have
// been written (the store unavailable while recording it).
func (h *handler) store(w http.ResponseWriter, r *http.Request, tenant, id string, body io.Reader) (err error) {
	ctx := r.Context()
	if _, err := h.Store.GetPackage(ctx, tenant, id); err == nil {
		return problem.New(http.StatusConflict, "package "+id+" exists")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	key := ObjectKey(tenant, id)
	m := &meter{r: body, limit: h.MaxPackageBytes, sum: sha256.New()}
	recorded := false // the record may exist: its object stays
	defer func() {
		if err != nil && !recorded {
			// A fresh context: the request's may be what failed.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if derr := h.Objects.Delete(dctx, key); derr != nil {
				h.Log.Error("package upload failed and its object could not be removed", "key", key, "err", derr)
			}
		}
	}()
	if err := h.Objects.Put(ctx, key, m); err != nil {
		var tl *tooLargeError
		var be *bodyError
		switch {
		case errors.As(err, &tl):
			return problem.New(http.StatusRequestEntityTooLarge, tl.Error())
		case errors.As(err, &be):
			return &problem.Error{Status: http.StatusBadRequest, Field: "package", Detail: "the upload was cut short", Cause: err}
		}
		return unavailable(err)
	}
	if m.n == 0 {
		return problem.BadRequest("package", "the package is empty")
	}
	pkg, err := csar.Open(h.Objects.ReaderAt(ctx, key, m.n), m.n)
	if err != nil {
		var iv *csar.InvalidError
		if errors.As(err, &iv) {
			return problem.BadRequest("package", iv.Reason)
		}
		return unavailable(err)
	}
	rec := store.Package{TenantID: tenant, ID: id, Object: key, Size: m.n, SHA256: hex.EncodeToString(m.sum.Sum(nil)),
		AppName: pkg.AppName, AppVersion: pkg.AppVersion, Provider: pkg.Provider, Charts: pkg.Charts, AppD: pkg.AppD,
		CreatedAt: h.Now().UTC()}
	if err := h.Store.CreatePackage(ctx, rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem.New(http.StatusConflict, "package "+id+" exists")
		}
		// Unavailable: the record may have been written all the same (a
		// stalled Redis applies it later), so the object it names stays; a
		// retry with the same packageId finds the package (409), and an
		// object left without a record is only unused space.
		recorded = errors.Is(err, store.ErrUnavailable)
		return err
	}
	h.Log.Info("package uploaded", "tenant", tenant, "package", id, "bytes", m.n, "sha256", rec.SHA256)
	w.Header().Set("Location", rest.Absolute(r, strings.Replace(strings.Replace(PackagePath, "{tenantId}", tenant, 1), "{packageId}", id, 1)))
	return writeJSON(w, http.StatusCreated, PackageInfo{Package: rec})
}

// unavailable answers a failure of S3 (or of reading the object back).
func unavailable(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return problem.Unavailable("object storage", 2, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, status, b)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) error {
	pkgs, err := h.Store.ListPackages(r.Context(), r.PathValue("tenantId"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pkgs)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.Store.GetPackage(ctx, r.PathValue("tenantId"), r.PathValue("packageId"))
	if err != nil {
		return notFound(err, "package")
	}
	d, err := h.Store.Distribution(ctx, p.TenantID, p.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, PackageInfo{Package: p, Distribution: d})
}

func notFound(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &problem.Error{Status: http.StatusNotFound, Detail: "unknown " + what, Cause: err}
	}
	return err
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, id := r.PathValue("tenantId"), r.PathValue("packageId")
	p, err := h.Store.GetPackage(ctx, tenant, id)
	if err != nil {
		return notFound(err, "package")
	}
	insts, err := h.Store.ListInstances(ctx)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if in.TenantID == tenant && in.PackageID == id {
			return problem.New(http.StatusConflict, "app instance "+in.AppInstanceID+" uses this package; terminate it first")
		}
	}
	// The object first: a record without its object would be instantiable
	// and fail; an object without a record is only garbage.
	if err := h.Objects.Delete(ctx, p.Object); err != nil {
		return unavailable(err)
	}
	if err := h.Store.DeletePackage(ctx, tenant, id); err != nil {
		return notFound(err, "package")
	}
	h.Log.Info("package deleted", "tenant", tenant, "package", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DistributeRequest names the MEC hosts a package may be instantiated on.
type DistributeRequest struct {
	HostIP []string `json:"hostIp"`
}

func (h *handler) distribute(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	raw, err := rest.ReadBody(w, r, maxJSONBody)
	if err != nil {
		return err
	}
	var req DistributeRequest
	if err := strictJSON(raw, &req); err != nil {
		return problem.BadRequest("body", err.Error())
	}
	if len(req.HostIP) == 0 {
		return problem.BadRequest("hostIp", "hostIp must list at least one MEC host")
	}
	tenant, id := r.PathValue("tenantId"), r.PathValue("packageId")
	if _, err := h.Store.GetPackage(ctx, tenant, id); err != nil {
		return notFound(err, "package")
	}
	for _, ip := range req.HostIP {
		if net.ParseIP(ip) == nil {
			return problem.BadRequest("hostIp", fmt.Sprintf("%q is not an IP address", ip))
		}
		if _, err := h.Store.GetHost(ctx, ip); err != nil {
			return notFound(err, "MEC host "+ip)
		}
	}
	d, err := h.Store.Distribute(ctx, tenant, id, req.HostIP)
	if err != nil {
		return notFound(err, "package")
	}
	h.Log.Info("package distributed", "tenant", tenant, "package", id, "hosts", req.HostIP)
	return writeJSON(w, http.StatusOK, d)
}

func (h *handler) distribution(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, id := r.PathValue("tenantId"), r.PathValue("packageId")
	if _, err := h.Store.GetPackage(ctx, tenant, id); err != nil {
		return notFound(err, "package")
	}
	d, err := h.Store.Distribution(ctx, tenant, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

// HostRequest adds or updates a MEC host.
type HostRequest struct {
	MechostIP   string `json:"mechostIp"`
	MechostName string `json:"mechostName"`
	City        string `json:"city"`
	// Kubeconfig is the kubeconfig YAML that reaches the host's cluster.
	Kubeconfig string `json:"kubeconfig"`
}

func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	return nil
}

func (h *handler) readHost(w http.ResponseWriter, r *http.Request, pathIP string) (store.Host, error) {
	raw, err := rest.ReadBody(w, r, maxJSONBody)
	if err != nil {
		return store.Host{}, err
	}
	var req HostRequest
	if err := strictJSON(raw, &req); err != nil {
		return store.Host{}, problem.BadRequest("body", err.Error())
	}
	if pathIP != "" && req.MechostIP == "" {
		req.MechostIP = pathIP
	}
	switch {
	case net.ParseIP(req.MechostIP) == nil:
		return store.Host{}, problem.BadRequest("mechostIp", "mechostIp must be an IP address")
	case pathIP != "" && req.MechostIP != pathIP:
		return store.Host{}, problem.BadRequest("mechostIp", "mechostIp differs from the path")
	case len(req.MechostName) > 128 || len(req.City) > 128:
		return store.Host{}, problem.BadRequest("mechostName", "mechostName and city are at most 128 bytes")
	}
	if err := checkKubeconfig(req.Kubeconfig); err != nil {
		return store.Host{}, problem.BadRequest("kubeconfig", err.Error())
	}
	return store.Host{Address: req.MechostIP, Name: req.MechostName, City: req.City,
		Kubeconfig: []byte(req.Kubeconfig), UpdatedAt: h.Now().UTC()}, nil
}

// checkKubeconfig makes sure the text is a kubeconfig with a cluster and a
// current context, without pulling client-go into this function.
func checkKubeconfig(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("kubeconfig is required")
	}
	var kc struct {
		Kind           string           `yaml:"kind"`
		Clusters       []map[string]any `yaml:"clusters"`
		Contexts       []map[string]any `yaml:"contexts"`
		CurrentContext string           `yaml:"current-context"`
	}
	if err := yaml.Unmarshal([]byte(s), &kc); err != nil {
		return fmt.Errorf("kubeconfig is not YAML: %v", err)
	}
	if kc.Kind != "" && kc.Kind != "Config" || len(kc.Clusters) == 0 || len(kc.Contexts) == 0 || kc.CurrentContext == "" {
		return errors.New("kubeconfig needs clusters, contexts and a current-context")
	}
	return nil
}

func (h *handler) addHost(w http.ResponseWriter, r *http.Request) error {
	host, err := h.readHost(w, r, "")
	if err != nil {
		return err
	}
	if _, err := h.Store.GetHost(r.Context(), host.Address); err == nil {
		return problem.New(http.StatusConflict, "MEC host "+host.Address+" exists; PUT "+HostsPath+"/"+host.Address+" updates it")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if _, err := h.Store.PutHost(r.Context(), host); err != nil {
		return err
	}
	h.Log.Info("MEC host added", "host", host.Address)
	w.Header().Set("Location", rest.Absolute(r, HostsPath+"/"+host.Address))
	return writeJSON(w, http.StatusCreated, host)
}

func (h *handler) updateHost(w http.ResponseWriter, r *http.Request) error {
	ip := r.PathValue("hostIp")
	host, err := h.readHost(w, r, ip)
	if err != nil {
		return err
	}
	if _, err := h.Store.GetHost(r.Context(), ip); err != nil {
		return notFound(err, "MEC host")
	}
	if _, err := h.Store.PutHost(r.Context(), host); err != nil {
		return err
	}
	h.Log.Info("MEC host updated", "host", ip)
	return writeJSON(w, http.StatusOK, host)
}

func (h *handler) listHosts(w http.ResponseWriter, r *http.Request) error {
	hosts, err := h.Store.ListHosts(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, hosts)
}

func (h *handler) getHost(w http.ResponseWriter, r *http.Request) error {
	host, err := h.Store.GetHost(r.Context(), r.PathValue("hostIp"))
	if err != nil {
		return notFound(err, "MEC host")
	}
	return writeJSON(w, http.StatusOK, host)
}

func (h *handler) deleteHost(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ip := r.PathValue("hostIp")
	insts, err := h.Store.ListInstances(ctx)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if in.HostAddress == ip {
			return problem.New(http.StatusConflict, "app instance "+in.AppInstanceID+" runs on this host; terminate it first")
		}
	}
	if err := h.Store.DeleteHost(ctx, ip); err != nil {
		return notFound(err, "MEC host")
	}
	h.Log.Info("MEC host deleted", "host", ip)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
