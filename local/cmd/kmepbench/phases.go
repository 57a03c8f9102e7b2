package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kmep-io/kmep/store/mec"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kmep-io/kmep/store/kit/aksk"
)

// API paths the benchmark calls.
const (
	tokenPath    = mec.TokenPath
	confsPath    = mec.AppMngPath + "/applications/%s/confs"
	registerPath = mec.ServiceMgmtPath + "/applications/%s/services"
	discoverPath = mec.ServiceMgmtPath + "/services?ser_name=%s"
)

// Goals the figures are held against (the targets).
const (
	goalTokenRPS     = 3000
	goalHeartbeatRPS = 10000
	goalStartup      = 50 * time.Millisecond
)

// tokenSignedHeaders are the headers a token request signs; x-request-id
// makes each request's signature unique, since the token function accepts a
// signature once and the benchmark sends many per second per AK.
var tokenSignedHeaders = []string{"host", "x-request-id", "x-sdk-date"}

// app is an app instance the benchmark configured, with its Bearer token.
type app struct {
	ID, AK, SK, Token string
}

// heartbeatTarget is a registered service's liveness resource.
type heartbeatTarget struct {
	URL, Token string
}

// serviceName is the unique serName of the n-th seeded service.
func serviceName(n int64) string { return fmt.Sprintf("svc-%05d", n) }

// serviceBody is the ServiceInfo the n-th seeded service is registered
// with.
func serviceBody(n int64) []byte {
	return fmt.Appendf(nil, `{"serName":%q,"version":"1.0","state":"ACTIVE","serializer":"JSON","livenessInterval":10,`+
		`"transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"1.1",`+
		`"endpoint":{"addresses":[{"host":"10.0.0.5","port":%d}]},"security":{}}}`, serviceName(n), 8000+n%1000)
}

// runHTTPPhases runs every selected phase but startup against the platform
// at base.
func runHTTPPhases(ctx context.Context, cfg config, base string, sec secrets, rep *report) error {
	log := cfg.Log
	nApps := cfg.Apps
	if cfg.Phases[phaseToken] {
		nApps = max(nApps, cfg.Conns) // one AK per token connection
	}
	nApps = max(nApps, 1)
	log.Info("configuring app instances", "apps", nApps)
	apps, err := setupApps(ctx, base, sec.AdminToken, nApps)
	if err != nil {
		return err
	}
	owners := apps[:max(1, min(cfg.Apps, len(apps)))]

	var targets []heartbeatTarget
	seeded := -1 // index of a registered service, for discovery
	if cfg.Phases[phaseRegister] || cfg.Phases[phaseDiscovery] || cfg.Phases[phaseHeartbeat] {
		log.Info("registering services", "services", cfg.Services, "apps", len(owners), "conns", cfg.Conns)
		res, locs := seed(ctx, cfg, base, owners)
		if cfg.Phases[phaseRegister] {
			rep.Results = append(rep.Results, fromLoad(phaseRegister, "kmep", "POST .../applications/{app}/services", genGo, cfg.Conns, res))
		}
		for n, loc := range locs {
			if loc == "" {
				continue
			}
			targets = append(targets, heartbeatTarget{URL: loc + "/liveness", Token: owners[n%len(owners)].Token})
			if seeded < 0 || n <= len(locs)/2 {
				seeded = n
			}
		}
		if seeded < 0 {
			return fmt.Errorf("no service could be registered: %s", res.FirstError)
		}
		log.Info("registered", "ok", int64(len(targets)), "errors", res.Errors, "req/s", round(res.rps()))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.Phases[phaseDiscovery] {
		rs, ratio, err := discovery(ctx, cfg, base, apps[0].Token, serviceName(int64(seeded)))
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, rs...)
		rep.Discovery = ratio
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.Phases[phaseRegister] && cfg.Gen == genWrk {
		// The same registrations driven by wrk, out of process: the Go
		// generator above shares this process's CPU with the platform.
		r, err := registerWrk(ctx, cfg, base, owners[0])
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, r)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.Phases[phaseToken] {
		rep.Results = append(rep.Results, tokens(ctx, cfg, base, apps[:min(cfg.Conns, len(apps))]))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.Phases[phaseHeartbeat] {
		rep.Results = append(rep.Results, heartbeats(ctx, cfg, targets))
		if cfg.Gen == genWrk && len(targets) > 0 {
			r, err := heartbeatsWrk(ctx, cfg, base, targets)
			if err != nil {
				return err
			}
			rep.Results = append(rep.Results, r)
		}
	}
	return ctx.Err()
}

// setupClient makes the few one-off setup requests.
func setupClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
}

// do sends one setup request and returns the body of a 2xx answer.
func do(c *http.Client, req *http.Request) ([]byte, error) {
	if err := checkLoopback(req); err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, snippet(body))
	}
	return body, nil
}

// setupApps configures n app instances through Mm5 (each with its own
// AK/SK) and fetches a token for each.
func setupApps(ctx context.Context, base, adminToken string, n int) ([]app, error) {
	c := setupClient()
	defer c.CloseIdleConnections()
	apps := make([]app, n)
	for i := range apps {
		sk := make([]byte, 16)
		if _, err := rand.Read(sk); err != nil {
			return nil, err
		}
		a := app{ID: fmt.Sprintf("bench-app-%03d", i), AK: fmt.Sprintf("bench-ak-%03d", i), SK: hex.EncodeToString(sk)}
		var conf struct {
			AuthInfo struct {
				Credentials struct {
					AccessKeyID string `json:"accessKeyId"`
					SecretKey   string `json:"secretKey"`
				} `json:"credentials"`
			} `json:"authInfo"`
			AppInfo struct {
				AppName          string   `json:"appName"`
				RequiredServices []string `json:"requiredServices"`
			} `json:"appInfo"`
		}
		conf.AuthInfo.Credentials.AccessKeyID = a.AK
		conf.AuthInfo.Credentials.SecretKey = a.SK
		conf.AppInfo.AppName = a.ID
		conf.AppInfo.RequiredServices = []string{}
		body, _ := json.Marshal(conf)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+fmt.Sprintf(confsPath, url.PathEscape(a.ID)), bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminToken)
		if _, err := do(c, req); err != nil {
			return nil, fmt.Errorf("configure app %s: %w", a.ID, err)
		}
		req, err = signedTokenRequest(base, a.AK, a.SK)
		if err != nil {
			return nil, err
		}
		out, err := do(c, req.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("token of app %s: %w", a.ID, err)
		}
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(out, &tr); err != nil || tr.AccessToken == "" {
			return nil, fmt.Errorf("token of app %s: no access_token in %s", a.ID, snippet(out))
		}
		a.Token = tr.AccessToken
		apps[i] = a
	}
	return apps, nil
}

// signedTokenRequest is a token request signed now with ak and sk.
func signedTokenRequest(base, ak, sk string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, base+tokenPath, http.NoBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Request-Id", rand.Text())
	if err := aksk.Sign(req, nil, ak, []byte(sk), tokenSignedHeaders, time.Now()); err != nil {
		return nil, err
	}
	return req, nil
}

func bearer(method, u, token string, body []byte) (*http.Request, error) {
	var r io.Reader = http.NoBody
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// seed registers cfg.Services services round robin over owners and returns
// the Location of each (indexed by service number; "" where it failed).
func seed(ctx context.Context, cfg config, base string, owners []app) (loadResult, []string) {
	locs := make([]string, cfg.Services)
	res := runLoad(ctx, loadOptions{Conns: cfg.Conns, Duration: seedTimeout, MaxRequests: int64(cfg.Services),
		Build: func(_ int, n int64) (*http.Request, error) {
			a := owners[n%int64(len(owners))]
			return bearer(http.MethodPost, base+fmt.Sprintf(registerPath, url.PathEscape(a.ID)), a.Token, serviceBody(n))
		},
		Check: func(n int64, resp *http.Response, _ []byte) error {
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("status %d, want 201", resp.StatusCode)
			}
			loc := resp.Header.Get("Location")
			if err := checkLoopbackURL(loc); err != nil {
				return fmt.Errorf("Location %q: %w", loc, err)
			}
			locs[n] = loc
			return nil
		}})
	if res.Requests < int64(cfg.Services) {
		cfg.Log.Warn("registration stopped early", "registered", res.Requests, "wanted", cfg.Services)
	}
	return res, locs
}

// timed runs a warm-up and then the measured run of the same load.
func timed(ctx context.Context, cfg config, phase string, o loadOptions) loadResult {
	if cfg.Warmup > 0 {
		o.Duration = cfg.Warmup
		if w := runLoad(ctx, o); w.Errors > 0 {
			cfg.Log.Warn("errors during warm-up", "phase", phase, "errors", w.Errors, "first", w.FirstError)
		}
	}
	o.Duration = cfg.Duration
	return runLoad(ctx, o)
}

// discovery measures GET /services?ser_name=name against a baseline
// server answering kmep's own response bytes, then against kmep, with the
// same generator and settings.
func discovery(ctx context.Context, cfg config, base, token, name string) ([]result, *discoveryRatio, error) {
	kmepURL := base + fmt.Sprintf(discoverPath, url.QueryEscape(name))
	req, err := bearer(http.MethodGet, kmepURL, token, nil)
	if err != nil {
		return nil, nil, err
	}
	c := setupClient()
	body, err := do(c, req.WithContext(ctx))
	c.CloseIdleConnections()
	if err != nil {
		return nil, nil, fmt.Errorf("discovery check: %w", err)
	}
	var found []json.RawMessage
	if err := json.Unmarshal(body, &found); err != nil || len(found) != 1 {
		return nil, nil, fmt.Errorf("discovery check: GET %s found %d services, want 1: %s", kmepURL, len(found), snippet(body))
	}
	cfg.Log.Info("discovery response", "bytes", len(body))

	bl, err := startBaseline(ctx, cfg, body)
	if err != nil {
		return nil, nil, err
	}
	baseReq := fmt.Sprintf("GET / (net/http, constant %d B JSON)", len(body))
	base1, err := measureGET(ctx, cfg, bl.url+"/", token, "baseline", baseReq)
	if serr := bl.stop(); serr != nil {
		cfg.Log.Warn("baseline stop", "err", serr)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return []result{base1}, nil, err
	}
	k, err := measureGET(ctx, cfg, kmepURL, token, "kmep", "GET .../services?ser_name="+name)
	if err != nil {
		return []result{base1}, nil, err
	}
	ratio := &discoveryRatio{BaselineRPS: base1.RPS, KmepRPS: k.RPS, BaselineP99Ms: base1.P99Ms, KmepP99Ms: k.P99Ms, BodyBytes: len(body)}
	if base1.RPS > 0 {
		ratio.Ratio = k.RPS / base1.RPS
	}
	return []result{base1, k}, ratio, nil
}

// measureGET loads u with GETs carrying the Bearer token, with wrk or the
// Go generator as cfg.Gen says, after a warm-up.
func measureGET(ctx context.Context, cfg config, u, token, target, what string) (result, error) {
	cfg.Log.Info("measuring", "phase", phaseDiscovery, "target", target, "gen", cfg.Gen, "duration", cfg.Duration)
	if cfg.Gen == genWrk {
		o := wrkOptions{Path: cfg.WrkPath, URL: u, Headers: []string{"Authorization: Bearer " + token}, Conns: cfg.Conns}
		if cfg.Warmup > 0 {
			o.Duration = cfg.Warmup
			w, err := runWrk(ctx, o)
			if err != nil {
				return result{}, fmt.Errorf("warm-up: %w", err)
			}
			if w.failures() > 0 {
				cfg.Log.Warn("errors during warm-up", "phase", phaseDiscovery, "target", target, "errors", w.failures())
			}
		}
		o.Duration = cfg.Duration
		w, err := runWrk(ctx, o)
		if err != nil {
			return result{}, err
		}
		return fromWrk(phaseDiscovery, target, what, cfg.Conns, w), nil
	}
	lr := timed(ctx, cfg, phaseDiscovery, loadOptions{Conns: cfg.Conns,
		Build: func(int, int64) (*http.Request, error) { return bearer(http.MethodGet, u, token, nil) }})
	return fromLoad(phaseDiscovery, target, what, genGo, cfg.Conns, lr), nil
}

// heartbeatsWrk measures heartbeats with wrk, out of process: PATCH on the
// liveness resources of one app's services (one token), round robin.
func heartbeatsWrk(ctx context.Context, cfg config, base string, targets []heartbeatTarget) (result, error) {
	token := targets[0].Token
	var paths []string
	for _, t := range targets {
		if t.Token == token && len(paths) < 2000 {
			paths = append(paths, strings.TrimPrefix(t.URL, base))
		}
	}
	cfg.Log.Info("measuring", "phase", phaseHeartbeat, "target", "kmep", "gen", genWrk, "services", len(paths), "duration", cfg.Duration)
	w, err := runWrk(ctx, wrkOptions{Path: cfg.WrkPath, URL: base + paths[0], Headers: []string{"Authorization: Bearer " + token},
		Conns: cfg.Conns, Duration: cfg.Duration, Method: http.MethodPatch, Body: heartbeatBody, Paths: paths})
	if err != nil {
		return result{}, err
	}
	r := fromWrk(phaseHeartbeat, "kmep", fmt.Sprintf("PATCH .../liveness (%d services, round robin)", len(paths)), cfg.Conns, w)
	r.goalRPS(goalHeartbeatRPS)
	return r, nil
}

// registerWrk measures POST .../services with wrk: every request registers
// one more service named "bulk" (names need not be unique).
func registerWrk(ctx context.Context, cfg config, base string, owner app) (result, error) {
	cfg.Log.Info("measuring", "phase", phaseRegister, "target", "kmep", "gen", genWrk, "duration", cfg.Duration)
	o := wrkOptions{Path: cfg.WrkPath, URL: base + fmt.Sprintf(registerPath, url.PathEscape(owner.ID)),
		Headers: []string{"Authorization: Bearer " + owner.Token}, Conns: cfg.Conns,
		Duration: cfg.Duration, Method: http.MethodPost, Body: []byte(strings.Replace(string(serviceBody(0)), serviceName(0), "bulk", 1))}
	w, err := runWrk(ctx, o)
	if err != nil {
		return result{}, err
	}
	return fromWrk(phaseRegister, "kmep", "POST .../applications/{app}/services", cfg.Conns, w), nil
}

var accessTokenMember = []byte(`"access_token":"`)

// tokens measures POST /mep/token, every request freshly signed, each
// connection with the AK of its own app instance.
func tokens(ctx context.Context, cfg config, base string, apps []app) result {
	cfg.Log.Info("measuring", "phase", phaseToken, "aks", len(apps), "duration", cfg.Duration)
	lr := timed(ctx, cfg, phaseToken, loadOptions{Conns: cfg.Conns,
		Build: func(w int, _ int64) (*http.Request, error) {
			a := apps[w%len(apps)]
			return signedTokenRequest(base, a.AK, a.SK)
		},
		Check: func(_ int64, _ *http.Response, body []byte) error {
			if !bytes.Contains(body, accessTokenMember) {
				return errors.New("answer has no access_token")
			}
			return nil
		}})
	r := fromLoad(phaseToken, "kmep", fmt.Sprintf("POST /mep/token (signed, %d AKs)", len(apps)), genGo, cfg.Conns, lr)
	r.goalRPS(goalTokenRPS)
	return r
}

var heartbeatBody = []byte(`{"state":"ACTIVE"}`)

// heartbeats measures PATCH .../liveness over the registered services,
// round robin.
func heartbeats(ctx context.Context, cfg config, targets []heartbeatTarget) result {
	what := fmt.Sprintf("PATCH .../liveness (%d services, round robin)", len(targets))
	if len(targets) == 0 {
		return result{Phase: phaseHeartbeat, Target: "kmep", Request: what, Generator: genGo, Conns: cfg.Conns,
			FirstError: "no registered services to send heartbeats for"}
	}
	cfg.Log.Info("measuring", "phase", phaseHeartbeat, "services", len(targets), "duration", cfg.Duration)
	lr := timed(ctx, cfg, phaseHeartbeat, loadOptions{Conns: cfg.Conns,
		Build: func(_ int, n int64) (*http.Request, error) {
			t := targets[n%int64(len(targets))]
			return bearer(http.MethodPatch, t.URL, t.Token, heartbeatBody)
		},
		Check: func(_ int64, resp *http.Response, _ []byte) error {
			if resp.StatusCode != http.StatusNoContent {
				return fmt.Errorf("status %d, want 204", resp.StatusCode)
			}
			return nil
		}})
	r := fromLoad(phaseHeartbeat, "kmep", what, genGo, cfg.Conns, lr)
	r.goalRPS(goalHeartbeatRPS)
	return r
}
