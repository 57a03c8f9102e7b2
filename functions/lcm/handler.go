package lcm

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/lifecycle"
	"github.com/kmep-io/kmep/store/mec"
)

// Paths served.
const (
	BasePath      = mec.LCMPath
	AppDPath      = BasePath + "/applications/{appInstanceId}/appd_configuration"
	TerminatePath = BasePath + "/applications/{appInstanceId}/terminate"
)

// MaxBody is the largest request body accepted.
const MaxBody = 256 << 10

// Admin authenticates the platform admin.
type Admin interface {
	Check(r *http.Request) error
}

// Deps are the handler's dependencies.
type Deps struct {
	// Store is required.
	Store *store.Store
	// Admin is required.
	Admin Admin
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// DefaultGraceful is the graceful timeout when a terminate call names
	// none. Zero value: 10 s.
	DefaultGraceful time.Duration
	// MaxGraceful caps a terminate call's graceful timeout. Zero value: 5 min.
	MaxGraceful time.Duration
}

type handler struct {
	Deps
}

// New returns the Mm5 lifecycle handler.
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.DefaultGraceful == 0 {
		d.DefaultGraceful = 10 * time.Second
	}
	if d.MaxGraceful == 0 {
		d.MaxGraceful = 5 * time.Minute
	}
	h := &handler{Deps: d}
	rt := rest.NewRouter(d.Log, h.admit)
	rt.Handle(AppDPath, map[string]problem.HandlerFunc{"POST": h.createAppD, "PUT": h.replaceAppD, "GET": h.getAppD, "DELETE": h.deleteAppD})
	rt.Handle(TerminatePath, map[string]problem.HandlerFunc{"POST": h.terminate})
	rt.NotFound(BasePath + "/")
	return rt
}

// admit lets the platform admin in, for a well-formed appInstanceId (every
// path served has one). The caller is the admin, who has no app instance:
// "".
func (h *handler) admit(r *http.Request) (string, error) {
	if err := h.Admin.Check(r); err != nil {
		return "", err
	}
	if !rest.ValidID(r.PathValue("appInstanceId")) {
		return "", problem.BadRequest("appInstanceId", "appInstanceId must be 1-64 letters, digits, '.', '_' or '-'")
	}
	return "", nil
}

// readAppD decodes and validates a configuration into the store's form.
func readAppD(w http.ResponseWriter, r *http.Request) (store.AppD, error) {
	raw, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return store.AppD{}, err
	}
	return lifecycle.ParseAppD(r.PathValue("appInstanceId"), raw)
}

func writeAppD(w http.ResponseWriter, status int, d store.AppD) error {
	out := lifecycle.AppDConfig{AppName: d.AppName, AppSupportMp1: d.AppSupportMp1, AppTrafficRule: []mec.TrafficRule{}, AppDNSRule: []mec.DNSRule{}}
	for _, r := range d.Traffic {
		var tr mec.TrafficRule
		if err := json.Unmarshal(r.Body, &tr); err != nil {
			return fmt.Errorf("stored traffic rule %s: %w", r.ID, err)
		}
		out.AppTrafficRule = append(out.AppTrafficRule, tr)
	}
	for _, r := range d.DNS {
		var dr mec.DNSRule
		if err := json.Unmarshal(r.Body, &dr); err != nil {
			return fmt.Errorf("stored DNS rule %s: %w", r.ID, err)
		}
		out.AppDNSRule = append(out.AppDNSRule, dr)
	}
	body, _ := json.Marshal(out)
	w.Header().Set("ETag", rest.ETag(d.Rev))
	return rest.WriteJSON(w, status, body)
}

func (h *handler) createAppD(w http.ResponseWriter, r *http.Request) error {
	d, err := readAppD(w, r)
	if err != nil {
		return err
	}
	if d, err = h.Store.CreateAppD(r.Context(), d); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem.New(http.StatusConflict, "this app instance has a configuration already; PUT replaces it")
		}
		return err
	}
	return writeAppD(w, http.StatusCreated, d)
}

func (h *handler) replaceAppD(w http.ResponseWriter, r *http.Request) error {
	d, err := readAppD(w, r)
	if err != nil {
		return err
	}
	if d, err = h.Store.ReplaceAppD(r.Context(), d); err != nil {
		return err
	}
	return writeAppD(w, http.StatusOK, d)
}

func (h *handler) getAppD(w http.ResponseWriter, r *http.Request) error {
	d, err := h.Store.GetAppD(r.Context(), r.PathValue("appInstanceId"))
	if err != nil {
		return err
	}
	return writeAppD(w, http.StatusOK, d)
}

func (h *handler) deleteAppD(w http.ResponseWriter, r *http.Request) error {
	if err := h.Store.DeleteAppD(r.Context(), r.PathValue("appInstanceId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// TerminateRequest is the optional body of POST .../terminate.
type TerminateRequest struct {
	// GracefulTimeout in seconds (MEC 011 maxGracefulTimeout).
	GracefulTimeout *int `json:"gracefulTimeout,omitempty"`
}

func (h *handler) terminate(w http.ResponseWriter, r *http.Request) error {
	app := r.PathValue("appInstanceId")
	graceful := h.DefaultGraceful
	raw, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	if len(raw) > 0 {
		var req TerminateRequest
		if err := mec.DecodeBytes(raw, "", &req); err != nil {
			return rest.BadField(err)
		}
		if req.GracefulTimeout != nil {
			// Compared in seconds: a huge value would overflow a Duration.
			maxSecs := int(h.MaxGraceful / time.Second)
			if *req.GracefulTimeout < 0 || *req.GracefulTimeout > maxSecs {
				return problem.BadRequest("gracefulTimeout", fmt.Sprintf("gracefulTimeout must be 0..%d seconds", maxSecs))
			}
			graceful = time.Duration(*req.GracefulTimeout) * time.Second
		}
	}
	res, err := lifecycle.Terminate(r.Context(), h.Store, app, graceful)
	if err != nil {
		return err
	}
	h.Log.Info("app instance terminated", "app", app, "confirmed", res.Confirmed, "subscriptions", res.Notified)
	body, _ := json.Marshal(res)
	return rest.WriteJSON(w, http.StatusOK, body)
}
