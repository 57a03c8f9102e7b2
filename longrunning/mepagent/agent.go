package mepagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store/kit/server"
	"github.com/kmep-io/kmep/store/kit/trace"
	"github.com/kmep-io/kmep/store/mec"
)

// Paths of the platform's Mp1 API, relative to Config.BaseURL.
const (
	tokenPath     = mec.TokenPath
	serviceMgmt   = mec.ServiceMgmtPath
	discoveryPath = serviceMgmt + "/services"
)

// Config configures an Agent.
type Config struct {
	// BaseURL is the platform's address: scheme, host and port, e.g.
	// "https://192.168.1.10:8443" (EdgeGallery's MEP_IP and MEP_APIGW_PORT)
	// or "http://127.0.0.1:8080" (KMEP_URL). Links the platform answers with
	// are resolved against it. Required.
	BaseURL string
	// AppInstanceID is the app instance whose services are registered.
	// Required.
	AppInstanceID string
	// AccessKey signs token requests. Required.
	AccessKey string
	// SecretKey signs token requests. Required. New keeps a copy only in
	// memory, and Run wipes it when it returns; the caller may wipe its own.
	SecretKey []byte
	// Info holds the services to register and the subscriptions to create.
	// Zero value: nothing to register; the agent still keeps a token and
	// answers its API.
	Info AppInstanceInfo
	// Addr is the listen address of the agent's API. Zero value: "127.0.0.1:8090"
	// (loopback: the app shares the pod's network; other pods must not read its token).
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// DeregisterOnStop deletes every registered service when Run's context
	// ends, so that consumers see it REMOVED at once rather than when its
	// heartbeats stop. Zero value: services are left registered (the
	// binary's default, MEP_AGENT_DEREGISTER, is true).
	DeregisterOnStop bool
	// StopTimeout bounds deregistration, and then the drain of the API.
	// Zero value: 5 s.
	StopTimeout time.Duration
	// RequestTimeout bounds one call to the platform. Zero value: 10 s.
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay between attempts of a step
	// that failed for a reason that may pass (platform unreachable, 5xx,
	// 429, 401): it doubles from MinBackoff up to MaxBackoff, with jitter.
	// Zero values: 200 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
}

// Deps are the Agent's dependencies.
type Deps struct {
	// Client calls the platform. Zero value: an http.Client over a clone of
	// http.DefaultTransport (system roots; see NewHTTPClient for TLS).
	Client *http.Client
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Metrics is the binary's registry, into which New registers the
	// agent's counters (see metrics.go). Zero value: they count, unseen.
	Metrics prometheus.Registerer
	// TracerProvider makes a client span of every call to the platform
	// (trace.StartClient), whose W3C traceparent the call carries: a
	// registration or heartbeat is one trace from the agent through the
	// platform's functions. Zero value: the global one (the binary's
	// server.Main installs it from the OTEL_* environment).
	TracerProvider oteltrace.TracerProvider
}

// Agent is EdgeGallery's mep-agent for kmep: it keeps the app's token,
// registers the app's services and keeps them alive, creates its
// subscriptions and answers the app's questions on its own port. Run it
// once.
type Agent struct {
	cfg    Config
	base   *url.URL
	client *http.Client
	tracer oteltrace.Tracer
	log    *slog.Logger
	sk     []byte

	m        agentMetrics
	tokens   *tokenState
	services []*service
	subs     []*subscription
	ran      atomic.Bool
}

// New checks cfg, fills its zero values and returns an Agent. It prepares
// every request body, so that a service that cannot be encoded is an error
// here rather than at run time.
func New(cfg Config, deps Deps) (*Agent, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.TrimSpace(cfg.AppInstanceID) == "":
		return nil, errors.New("mepagent: Config.AppInstanceID is required")
	case strings.ContainsAny(cfg.AppInstanceID, "/?#"):
		return nil, fmt.Errorf("mepagent: Config.AppInstanceID %q must not contain '/', '?' or '#'", cfg.AppInstanceID)
	case cfg.AccessKey == "":
		return nil, errors.New("mepagent: Config.AccessKey is required")
	case len(cfg.SecretKey) == 0:
		return nil, errors.New("mepagent: Config.SecretKey is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8090"
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if deps.Client == nil {
		deps.Client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	a := &Agent{
		cfg:    cfg,
		base:   base,
		client: deps.Client,
		tracer: trace.Tracer(deps.TracerProvider, "github.com/kmep-io/kmep/longrunning/mepagent"),
		log:    deps.Log,
		sk:     append([]byte(nil), cfg.SecretKey...),
		m:      newMetrics(deps.Metrics),
		tokens: newTokenState(),
	}
	a.cfg.SecretKey = nil
	for i, si := range cfg.Info.ServiceInfoPosts {
		if si.State == "" {
			si.State = "ACTIVE"
		}
		body, err := json.Marshal(si)
		if err != nil {
			return nil, fmt.Errorf("mepagent: serviceInfoPosts[%d] (%s): %w", i, si.SerName, err)
		}
		a.services = append(a.services, &service{name: si.SerName, body: body,
			interval: time.Duration(si.LivenessInterval) * time.Second})
	}
	for i, s := range cfg.Info.SerAvailabilityNotificationSubscriptions {
		if s.SubscriptionType == "" {
			s.SubscriptionType = subscriptionTypeSerAvailability
		}
		body, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("mepagent: serAvailabilityNotificationSubscriptions[%d]: %w", i, err)
		}
		a.subs = append(a.subs, &subscription{want: s, body: body})
	}
	return a, nil
}

func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("mepagent: Config.BaseURL is required")
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("mepagent: Config.BaseURL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("mepagent: Config.BaseURL %q: want http(s)://host[:port]", raw)
	}
	return u, nil
}

// Run starts the agent and blocks until ctx ends. It listens first (a
// listen error is returned at once), then gets a token, registers the
// services, heartbeats them and creates the subscriptions, each step
// retried with backoff for as long as the platform is unreachable or
// answers 5xx. When ctx ends it stops every step, deregisters the services
// when Config.DeregisterOnStop is set (within Config.StopTimeout), drains
// the API and wipes the secret key. It returns nil after a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("mepagent: Run called twice")
	}
	defer clear(a.sk)

	ln := a.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", a.cfg.Addr); err != nil {
			return fmt.Errorf("mepagent: listen %s: %w", a.cfg.Addr, err)
		}
	}
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	served := make(chan error, 1)
	go func() {
		served <- server.Run(srvCtx, server.Options{Listener: ln, Handler: a.Handler(), Log: a.log, DrainTimeout: a.cfg.StopTimeout})
	}()
	a.log.Info("mep-agent starting", "platform", a.base.String(), "app_instance", a.cfg.AppInstanceID,
		"services", len(a.services), "subscriptions", len(a.subs))

	work, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.runTokens(work) })
	for _, s := range a.services {
		wg.Go(func() { a.runService(work, s) })
	}
	if len(a.subs) > 0 {
		wg.Go(func() { a.runSubscriptions(work) })
	}

	var serveErr error
	serverDone := false
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serverDone = true
	}
	stopWork()
	wg.Wait()
	if a.cfg.DeregisterOnStop {
		a.deregisterAll()
	}
	stopServer()
	if !serverDone {
		serveErr = <-served
	}
	a.log.Info("mep-agent stopped")
	if serveErr != nil {
		return fmt.Errorf("mepagent: %w", serveErr)
	}
	return nil
}

// url returns the absolute URL of a platform path (which may carry a
// query).
func (a *Agent) url(path string) string { return a.base.String() + path }

// resolve turns a link the platform answered with into an absolute URL, as
// EdgeGallery does: an absolute path replaces the base URL's path.
func (a *Agent) resolve(link string) (string, error) {
	ref, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("link %q: %w", link, err)
	}
	return a.base.ResolveReference(ref).String(), nil
}

func (a *Agent) servicesPath() string {
	return serviceMgmt + "/applications/" + url.PathEscape(a.cfg.AppInstanceID) + "/services"
}

func (a *Agent) subscriptionsPath() string {
	return serviceMgmt + "/applications/" + url.PathEscape(a.cfg.AppInstanceID) + "/subscriptions"
}
