package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kmep-io/kmep/functions/auth"
	"github.com/kmep-io/kmep/functions/mec"
	"github.com/kmep-io/kmep/functions/problem"
	"github.com/kmep-io/kmep/functions/rest"
	"github.com/kmep-io/kmep/functions/token/aksk"
	"github.com/kmep-io/kmep/store"
)

// Paths served.
const (
	TokenPath = "/mep/token"
	JWKSPath  = "/mep/token/jwks"
	ConfsPath = "/mep/appMng/v1/applications/{appInstanceId}/confs"
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
}

type handler struct {
	Deps
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
	h := &handler{Deps: d}
	// Anyone may ask for a token or the keys; the Mm5 calls check the admin.
	rt := rest.NewRouter(d.Log, rest.Unauthenticated)
	rt.Handle(TokenPath, map[string]problem.HandlerFunc{"POST": h.token})
	rt.Handle(JWKSPath, map[string]problem.HandlerFunc{"GET": h.jwks})
	rt.Handle(ConfsPath, map[string]problem.HandlerFunc{
		"PUT": h.admin(h.putConf), "GET": h.admin(h.getConf), "DELETE": h.admin(h.deleteConf)})
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

func unauthorized(detail string) error {
	return &problem.Error{Status: http.StatusUnauthorized, Detail: detail,
		Header: http.Header{"Www-Authenticate": {aksk.Algorithm}}}
}

func (h *handler) token(w http.ResponseWriter, r *http.Request) error {
	body, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	a, err := aksk.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return unauthorized("missing or malformed SDK-HMAC-SHA256 Authorization header")
	}
	date, err := aksk.ParseDate(r.Header.Get(aksk.DateHeader))
	if err != nil {
		return unauthorized("missing or malformed x-sdk-date header")
	}
	if err := aksk.CheckSkew(date, h.Now(), h.SkewWindow); err != nil {
		return unauthorized("x-sdk-date is outside the allowed clock skew")
	}
	cred, err := h.Store.CredentialByAK(r.Context(), a.AccessKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("look up access key: %w", err)
	}
	if cred.LockedFor > 0 {
		return &problem.Error{Status: http.StatusTooManyRequests, Detail: "access key locked after repeated bad signatures",
			RetryAfter: int((cred.LockedFor + time.Second - 1) / time.Second)}
	}
	// An unknown AK counts as a bad signature: no oracle of which AKs exist.
	if cred.SecretKey == nil || aksk.Verify(r, body, cred.SecretKey, a) != nil {
		locked, err := h.Store.RecordAuthFailure(r.Context(), a.AccessKey)
		if err != nil {
			return fmt.Errorf("record auth failure: %w", err)
		}
		if locked > 0 {
			h.Log.Warn("access key locked", "ak", a.AccessKey, "for", locked)
		}
		return unauthorized("signature does not match")
	}
	tok, exp, err := h.Signer.Issue(cred.AppInstanceID, h.Now())
	if err != nil {
		return fmt.Errorf("issue token: %w", err)
	}
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
	var c AppConf
	if err := mec.Decode(http.MaxBytesReader(w, r.Body, MaxBody), "", &c); err != nil {
		return rest.BadField(err)
	}
	cr := c.AuthInfo.Credentials
	switch {
	case !rest.ValidIDLen(cr.AccessKeyID, 128):
		return problem.BadRequest("authInfo.credentials.accessKeyId", "accessKeyId must be 1-128 letters, digits, '.', '_' or '-'")
	case len(cr.SecretKey) < 8 || len(cr.SecretKey) > 256:
		return problem.BadRequest("authInfo.credentials.secretKey", "secretKey must be 8 to 256 bytes")
	case len(c.AppInfo.AppName) > 256:
		return problem.BadRequest("appInfo.appName", "appName is longer than 256 bytes")
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
