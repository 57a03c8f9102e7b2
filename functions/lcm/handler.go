package lcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/kmep-io/kmep/functions/mec"
	"github.com/kmep-io/kmep/functions/problem"
	"github.com/kmep-io/kmep/functions/rest"
	"github.com/kmep-io/kmep/store"
)

// Paths served.
const (
	BasePath      = "/mepcfg/app_lcm/v1"
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

// AppDConfig is the Mm5 appd_configuration body. In a request both rule
// lists are required ([] for none): a PUT replaces both, so a body that
// names neither (null, {}) must not silently remove the app's rules.
type AppDConfig struct {
	AppTrafficRule []mec.TrafficRule `json:"appTrafficRule"`
	AppDNSRule     []mec.DNSRule     `json:"appDNSRule"`
	AppSupportMp1  bool              `json:"appSupportMp1"`
	AppName        string            `json:"appName"`
}

// readAppD decodes and validates a configuration into the store's form.
func readAppD(w http.ResponseWriter, r *http.Request) (store.AppD, error) {
	raw, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return store.AppD{}, err
	}
	return ParseAppD(r.PathValue("appInstanceId"), raw)
}

// ParseAppD decodes and validates an appd_configuration body (the Mm5
// request, or an APPD's rules) into app's configuration: appTrafficRule and
// appDNSRule are required (each [] for none), at most 256 rules each;
// appName is at most 256 bytes without control characters. Bad input is a
// 400 *problem.Error naming the field.
func ParseAppD(app string, raw []byte) (store.AppD, error) {
	var c AppDConfig
	if err := mec.DecodeBytes(raw, "", &c); err != nil {
		return store.AppD{}, rest.BadField(err)
	}
	var present struct {
		AppTrafficRule json.RawMessage `json:"appTrafficRule"`
		AppDNSRule     json.RawMessage `json:"appDNSRule"`
	}
	_ = json.Unmarshal(raw, &present) // decoded above
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{{"appTrafficRule", present.AppTrafficRule}, {"appDNSRule", present.AppDNSRule}} {
		if len(m.raw) == 0 || string(m.raw) == "null" {
			return store.AppD{}, problem.BadRequest(m.name, m.name+" is required ([] for no rules): the configuration replaces the app's rules")
		}
	}
	if err := mec.CheckName("appName", c.AppName, false); err != nil {
		return store.AppD{}, rest.BadField(err)
	}
	if len(c.AppTrafficRule) > 256 || len(c.AppDNSRule) > 256 {
		return store.AppD{}, problem.BadRequest("appTrafficRule", "at most 256 rules of each kind")
	}
	d := store.AppD{AppInstanceID: app, AppName: c.AppName, AppSupportMp1: c.AppSupportMp1}
	seen := map[string]bool{}
	for i := range c.AppTrafficRule {
		tr := &c.AppTrafficRule[i]
		field := fmt.Sprintf("appTrafficRule[%d]", i)
		if err := mec.ValidateTrafficRule(tr, field, true); err != nil {
			return store.AppD{}, rest.BadField(err)
		}
		if seen[tr.TrafficRuleID] {
			return store.AppD{}, problem.BadRequest(field+".trafficRuleId", "trafficRuleId "+strconv.Quote(tr.TrafficRuleID)+" is used twice")
		}
		seen[tr.TrafficRuleID] = true
		body, _ := json.Marshal(tr)
		d.Traffic = append(d.Traffic, store.Rule{Kind: store.RuleTraffic, AppInstanceID: app, ID: tr.TrafficRuleID, State: tr.State, Body: body})
	}
	seen = map[string]bool{}
	for i := range c.AppDNSRule {
		dr := &c.AppDNSRule[i]
		field := fmt.Sprintf("appDNSRule[%d]", i)
		if err := mec.ValidateDNSRule(dr, field, true); err != nil {
			return store.AppD{}, rest.BadField(err)
		}
		if seen[dr.DNSRuleID] {
			return store.AppD{}, problem.BadRequest(field+".dnsRuleId", "dnsRuleId "+strconv.Quote(dr.DNSRuleID)+" is used twice")
		}
		seen[dr.DNSRuleID] = true
		body, _ := json.Marshal(dr)
		d.DNS = append(d.DNS, store.Rule{Kind: store.RuleDNS, AppInstanceID: app, ID: dr.DNSRuleID, State: dr.State, Body: body})
	}
	return d, nil
}

func writeAppD(w http.ResponseWriter, status int, d store.AppD) error {
	out := AppDConfig{AppName: d.AppName, AppSupportMp1: d.AppSupportMp1, AppTrafficRule: []mec.TrafficRule{}, AppDNSRule: []mec.DNSRule{}}
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

// TerminateResult answers POST .../terminate.
type TerminateResult struct {
	AppInstanceID string `json:"appInstanceId"`
	// Notified is how many AppTermination subscriptions the app had.
	Notified int `json:"notified"`
	// Confirmed tells whether the app confirmed before the timeout.
	Confirmed bool `json:"confirmed"`
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
	res, err := Terminate(r.Context(), h.Store, app, graceful)
	if err != nil {
		return err
	}
	h.Log.Info("app instance terminated", "app", app, "confirmed", res.Confirmed, "subscriptions", res.Notified)
	body, _ := json.Marshal(res)
	return rest.WriteJSON(w, http.StatusOK, body)
}

// Terminate runs the termination flow of app: it starts the termination
// (the TERMINATING change becomes the AppTerminationNotification), waits for
// confirm_termination or the graceful timeout — not at all when the app has
// no AppTermination subscription, since nobody would confirm — then purges
// the instance. Calling it again for an instance whose termination is in
// progress resumes that termination. The instantiate function calls it too.
func Terminate(ctx context.Context, st *store.Store, app string, graceful time.Duration) (TerminateResult, error) {
	res := TerminateResult{AppInstanceID: app}
	subs, err := st.TerminationSubscriptions(ctx, app)
	if err != nil {
		return res, err
	}
	res.Notified = len(subs)
	after, err := st.LastChangeID(ctx)
	if err != nil {
		return res, err
	}
	term, _, err := st.StartTermination(ctx, app, graceful)
	if err != nil {
		return res, err
	}
	res.Confirmed = term.Confirmed
	for len(subs) > 0 && !res.Confirmed {
		left := time.Until(term.Deadline)
		if left <= 0 {
			break
		}
		chs, err := st.ReadChanges(ctx, after, 1000, min(left, time.Second))
		if err != nil {
			return res, err
		}
		for _, c := range chs {
			after = c.StreamID
			if c.Kind == store.KindApp && c.Type == store.ChangeConfirmed && c.AppInstanceID == app {
				res.Confirmed = true
			}
		}
		if len(chs) == 0 {
			// Confirmed before we started reading, or the stream was trimmed.
			if t, err := st.GetTermination(ctx, app); err == nil && t.Confirmed {
				res.Confirmed = true
			}
		}
	}
	if _, err := st.PurgeApp(ctx, app); err != nil {
		return res, err
	}
	return res, nil
}
