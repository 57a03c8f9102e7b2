package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/aksk"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// Paths served.
const (
	TokenPath = mec.TokenPath
	JWKSPath  = mec.TokenPath + "/jwks"
	ConfsPath = mec.AppMngPath + "/applications/{appInstanceId}/confs"
	// LockoutPath is the platform admin's view of an app instance's token
	// throttle: GET lists the sources failing or locked out, DELETE
	// unlocks them all.
	LockoutPath = mec.AppMngPath + "/applications/{appInstanceId}/lockout"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Deps are the token function's dependencies.
type Deps struct {
	// Store is required.
	Store *store.Store
	// Signer issues JWTs. Required.
	Signer *auth.Signer
	// Admin authenticates Mm5 calls. Required.
	Admin *auth.Admin
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// SkewWindow is how far x-sdk-date may be from now. Zero value: 15 min.
	SkewWindow time.Duration
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// that token requests are throttled as (see ParseTrustedProxies). Zero
	// value: none; the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// Metrics is the binary's registry. Zero value: nothing is registered.
	Metrics prometheus.Registerer
}

type handler struct {
	Deps
	m tokenMetrics
}

// New returns the token function's handler.
func New(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.SkewWindow == 0 {
		d.SkewWindow = 15 * time.Minute
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{Deps: d, m: newMetrics(d.Metrics)}
	// Anyone may ask for a token or the keys; the Mm5 calls check the admin.
	rt := rest.NewRouter(d.Log, rest.Unauthenticated)
	rt.Handle(TokenPath, map[string]problem.HandlerFunc{"POST": h.token})
	rt.Handle(JWKSPath, map[string]problem.HandlerFunc{"GET": h.jwks})
	rt.Handle(ConfsPath, map[string]problem.HandlerFunc{
		"PUT": h.admin(h.putConf), "GET": h.admin(h.getConf), "DELETE": h.admin(h.deleteConf)})
	rt.Handle(LockoutPath, map[string]problem.HandlerFunc{"GET": h.admin(h.getLockout), "DELETE": h.admin(h.deleteLockout)})
	return rt
}

func (h *handler) admin(fn problem.HandlerFunc) problem.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := h.Admin.Check(r); err != nil {
			return err
		}
		return fn(w, r)
	}
}

// Response is the token answer, as mepauth gives it.
type Response struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// locked is the answer to a source locked out of the AK it signs with.
func locked(d time.Duration) error {
	return &problem.Error{Status: http.StatusTooManyRequests,
		Detail:     "too many bad signatures for this access key from this address",
		RetryAfter: int((d + time.Second - 1) / time.Second)}
}

func unauthorized(detail string) error {
	return &problem.Error{Status: http.StatusUnauthorized, Detail: detail,
		Header: http.Header{"Www-Authenticate": {aksk.Algorithm}}}
}

// replayMargin is how much longer than the clock-skew window a used
// signature is remembered: room for the clocks of token function instances
// to differ.
const replayMargin = time.Minute

func (h *handler) token(w http.ResponseWriter, r *http.Request) error {
	body, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	a, err := aksk.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return h.m.refuse(refusedMalformed, unauthorized("missing or malformed SDK-HMAC-SHA256 Authorization header"))
	}
	date, err := aksk.ParseDate(r.Header.Get(aksk.DateHeader))
	if err != nil {
		return h.m.refuse(refusedMalformed, unauthorized("missing or malformed x-sdk-date header"))
	}
	now := h.Now()
	if err := aksk.CheckSkew(date, now, h.SkewWindow); err != nil {
		return h.m.refuse(refusedSkew, unauthorized("x-sdk-date is outside the allowed clock skew"))
	}
	src := source(r, h.TrustedProxies)
	adm, err := h.Store.AdmitTokenRequest(r.Context(), a.AccessKey, src)
	if errors.Is(err, store.ErrNotFound) {
		// An unknown AK is answered as a bad signature, and leaves no state.
		return h.m.refuse(refusedUnknownKey, unauthorized("signature does not match"))
	}
	if err != nil {
		return fmt.Errorf("admit token request: %w", err)
	}
	if adm.LockedFor > 0 {
		return h.m.refuse(refusedLockedOut, locked(adm.LockedFor))
	}
	// The outcome is recorded in one atomic step with the check of the
	// lock, so that concurrent guesses cannot outrun it: once the lock is
	// set, the answer is 429 whatever the signature, a correct guess too.
	if aksk.Verify(r, body, adm.SecretKey, a) != nil {
		f, err := h.Store.RecordAuthFailure(r.Context(), a.AccessKey, src)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("record auth failure: %w", err)
		}
		if f.Refused {
			return h.m.refuse(refusedLockedOut, locked(f.LockedFor))
		}
		if f.Locks {
			h.m.lockouts.Inc()
			h.Log.Warn("token requests locked out after bad signatures", "ak", a.AccessKey, "app", adm.AppInstanceID,
				"source", src, "for", f.LockedFor)
		}
		return h.m.refuse(refusedBadSignature, unauthorized("signature does not match"))
	}
	// Each signature is accepted once, for as long as its date is in the window.
	ttl := date.Add(h.SkewWindow).Sub(now) + replayMargin
	lockedFor, err := h.Store.AcceptSignature(r.Context(), a.AccessKey, src, a.Signature, ttl)
	if errors.Is(err, store.ErrConflict) {
		return h.m.refuse(refusedReplay, unauthorized("this signed request was used before; sign each request afresh"))
	}
	if err != nil {
		return fmt.Errorf("accept signature: %w", err)
	}
	if lockedFor > 0 {
		return h.m.refuse(refusedLockedOut, locked(lockedFor))
	}
	tok, exp, err := h.Signer.IssueGeneration(adm.AppInstanceID, adm.Generation, now)
	if err != nil {
		return fmt.Errorf("issue token: %w", err)
	}
	h.m.issued.Inc()
	out, _ := json.Marshal(Response{AccessToken: tok, TokenType: "Bearer", ExpiresIn: exp})
	w.Header().Set("Cache-Control", "no-store")
	return rest.WriteJSON(w, http.StatusOK, out)
}

func (h *handler) jwks(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=60")
	_, err := w.Write(h.Signer.JWKS())
	return err
}

// AppConf is the Mm5 body.
type AppConf struct {
	AuthInfo struct {
		Credentials struct {
			AccessKeyID string `json:"accessKeyId"`
			SecretKey   string `json:"secretKey,omitempty"`
		} `json:"credentials"`
	} `json:"authInfo"`
	AppInfo struct {
		AppName          string   `json:"appName"`
		RequiredServices []string `json:"requiredServices"`
	} `json:"appInfo"`
}

func appID(r *http.Request) (string, error) {
	id := r.PathValue("appInstanceId")
	if !rest.ValidID(id) {
		return "", problem.BadRequest("appInstanceId", "appInstanceId must be 1-64 letters, digits, '.', '_' or '-'")
	}
	return id, nil
}

func (h *handler) putConf(w http.ResponseWriter, r *http.Request) error {
	app, err := appID(r)
	if err != nil {
		return err
	}
	body, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	var c AppConf
	if err := mec.DecodeBytes(body, "", &c); err != nil {
		return rest.BadField(err)
	}
	cr := c.AuthInfo.Credentials
	switch {
	case !rest.ValidIDLen(cr.AccessKeyID, 128):
		return problem.BadRequest("authInfo.credentials.accessKeyId", "accessKeyId must be 1-128 letters, digits, '.', '_' or '-'")
	case len(cr.SecretKey) < 8 || len(cr.SecretKey) > 256:
		return problem.BadRequest("authInfo.credentials.secretKey", "secretKey must be 8 to 256 bytes")
	case mec.CheckName("appInfo.appName", c.AppInfo.AppName, false) != nil:
		return problem.BadRequest("appInfo.appName", "appName must be at most 256 bytes without control characters")
	case len(c.AppInfo.RequiredServices) > 100:
		return problem.BadRequest("appInfo.requiredServices", "at most 100 required services")
	}
	saved, err := h.Store.PutAppConf(r.Context(), store.AppConf{AppInstanceID: app, AccessKeyID: cr.AccessKeyID,
		SecretKey: []byte(cr.SecretKey), AppName: c.AppInfo.AppName, RequiredServices: c.AppInfo.RequiredServices})
	if errors.Is(err, store.ErrConflict) {
		return &problem.Error{Status: http.StatusConflict, Field: "authInfo.credentials.accessKeyId", Detail: "accessKeyId is in use by another app instance"}
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if saved.Rev == 1 {
		status = http.StatusCreated
	}
	return writeConf(w, status, saved)
}

func writeConf(w http.ResponseWriter, status int, c store.AppConf) error {
	var out AppConf
	out.AuthInfo.Credentials.AccessKeyID = c.AccessKeyID
	out.AppInfo.AppName = c.AppName
	out.AppInfo.RequiredServices = c.RequiredServices
	if out.AppInfo.RequiredServices == nil {
		out.AppInfo.RequiredServices = []string{}
	}
	body, _ := json.Marshal(out)
	w.Header().Set("ETag", rest.ETag(c.Rev))
	return rest.WriteJSON(w, status, body)
}

func (h *handler) getConf(w http.ResponseWriter, r *http.Request) error {
	app, err := appID(r)
	if err != nil {
		return err
	}
	c, err := h.Store.GetAppConf(r.Context(), app)
	if err != nil {
		return err
	}
	return writeConf(w, http.StatusOK, c)
}

func (h *handler) deleteConf(w http.ResponseWriter, r *http.Request) error {
	app, err := appID(r)
	if err != nil {
		return err
	}
	if err := h.Store.DeleteAppConf(r.Context(), app); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Lockout is the Mm5 view of an app instance's token throttle (GET
// LockoutPath).
type Lockout struct {
	AccessKeyID string `json:"accessKeyId"`
	// MaxFailures bad signatures from one source within FailureWindow
	// seconds lock that source out of the AK for LockDuration seconds.
	MaxFailures   int `json:"maxFailures"`
	FailureWindow int `json:"failureWindow"`
	LockDuration  int `json:"lockDuration"`
	// Sources with failures in their window, locked ones first.
	Sources []LockoutSource `json:"sources"`
}

// LockoutSource is one source's throttle state.
type LockoutSource struct {
	// Source is an IPv4 address or an IPv6 /64 prefix.
	Source      string    `json:"source"`
	Failures    int       `json:"failures"`
	WindowStart time.Time `json:"windowStart"`
	Locked      bool      `json:"locked"`
	// RetryAfter is how many seconds a locked source stays locked.
	RetryAfter int `json:"retryAfter,omitempty"`
}

func (h *handler) getLockout(w http.ResponseWriter, r *http.Request) error {
	app, err := appID(r)
	if err != nil {
		return err
	}
	l, err := h.Store.Lockout(r.Context(), app)
	if err != nil {
		return err
	}
	out := Lockout{AccessKeyID: l.AccessKeyID, MaxFailures: store.MaxFailures,
		FailureWindow: int(store.FailureWindow / time.Second), LockDuration: int(store.LockDuration / time.Second),
		Sources: make([]LockoutSource, 0, len(l.Sources))}
	for _, s := range l.Sources {
		out.Sources = append(out.Sources, LockoutSource{Source: s.Source, Failures: s.Failures, WindowStart: s.WindowStart.UTC(),
			Locked: s.LockedFor > 0, RetryAfter: int((s.LockedFor + time.Second - 1) / time.Second)})
	}
	body, _ := json.Marshal(out)
	w.Header().Set("Cache-Control", "no-store")
	return rest.WriteJSON(w, http.StatusOK, body)
}

func (h *handler) deleteLockout(w http.ResponseWriter, r *http.Request) error {
	app, err := appID(r)
	if err != nil {
		return err
	}
	l, err := h.Store.ClearLockout(r.Context(), app)
	if err != nil {
		return err
	}
	h.Log.Info("token lockout cleared by the platform admin", "app", app, "ak", l.AccessKeyID, "sources", len(l.Sources))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
