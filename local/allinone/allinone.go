// Package allinone runs the whole kmep platform in one process for a
// laptop: every function's handler mounted on one port (the very handlers
// the per-function binaries serve; app packages kept in S3_ENDPOINT's
// bucket, else in an embedded S3-protocol server on disk under the data
// directory, announced in the log), the discovery cache, the event
// pipeline (the outbox relay, an embedded broker routing by
// manifests/eventing.yaml's Triggers, the notify, installer and
// deadletter triggers),
// the heartbeat reaper, the UPF agent in its "none" mode (no data plane),
// the mesh agent's DNS server (KMEP_DNS_ADDR, no tunnel), and the
// platform's keys and secrets generated on first start under a
// data directory.
//
// The store is chosen in this order, and the choice is the first log line:
// REDIS_URL when set; else a private redis-server child with its data (AOF
// on) under the data directory when redis-server is on PATH; else an
// embedded in-process Redis-protocol server (miniredis) whose data lives
// only as long as the process.
package allinone

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/functions/dashboard"
	"github.com/kmep-io/kmep/functions/instantiate"
	"github.com/kmep-io/kmep/functions/lcm"
	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/functions/subscriptions"
	"github.com/kmep-io/kmep/functions/token"
	"github.com/kmep-io/kmep/local/broker"
	"github.com/kmep-io/kmep/local/rediserver"
	"github.com/kmep-io/kmep/local/s3server"
	"github.com/kmep-io/kmep/longrunning/meshagent/nameserver"
	"github.com/kmep-io/kmep/longrunning/reaper"
	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/manifests"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	kevents "github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
	"github.com/kmep-io/kmep/triggers/deadletter"
	"github.com/kmep-io/kmep/triggers/installer"
	"github.com/kmep-io/kmep/triggers/notify"
)

// Config configures Run. Zero values are filled as documented.
type Config struct {
	// Addr is the listen address. Zero value: 127.0.0.1:8080.
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// DataDir holds generated secrets and the private Redis's data.
	// Zero value: .kmep
	DataDir string
	// RedisURL selects an external Redis. Zero value: a private
	// redis-server, else the embedded server.
	RedisURL string
	// NoRedisServer skips the redis-server child even when it is on PATH.
	NoRedisServer bool
	// AdminToken is the platform admin's Bearer token. Zero value: read from,
	// or generated into, DataDir/admin-token.
	AdminToken string
	// EncryptionKey seals secrets at rest (32 bytes). Zero value: read from,
	// or generated into, DataDir/encryption-key.
	EncryptionKey []byte
	// SigningKeyPEM holds the token signing keys. Zero value: read from, or
	// generated into, DataDir/signing-key.pem.
	SigningKeyPEM []byte
	// MinLivenessInterval is the shortest heartbeat interval granted.
	// Zero value: 1 s.
	MinLivenessInterval time.Duration
	// CallbackAllow is KMEP_CALLBACK_ALLOW: CIDRs and host names that
	// callbacks may use even though they are loopback, link-local or the
	// platform's own. Zero value: none (e.g. "127.0.0.0/8,::1,localhost"
	// lets a laptop's apps receive notifications).
	CallbackAllow string
	// CallbackDeny is KMEP_CALLBACK_DENY: CIDRs that callbacks may not
	// use although the default rules permit them (private ranges), even
	// when CallbackAllow names them. Zero value: none.
	CallbackDeny string
	// S3 is the bucket of app packages (S3_* settings). Zero Endpoint: an
	// embedded S3-protocol server on disk under DataDir/s3.
	S3 blob.Config
	// AppNamespace is where instantiated apps go. Zero value: "mec-apps".
	AppNamespace string
	// DNSAddr is where the mesh agent's DNS server answers (UDP and TCP):
	// DNS rules and MEC service names. Zero value: 127.0.0.1:5353.
	DNSAddr string
	// Redelivery is KMEP_RELAY_REDELIVERY, the relay's redelivery timeout:
	// an event notify has not settled this long after its last activity
	// is published again. (At start, every event still pending is
	// published again at once: the embedded broker's queue did not survive
	// the previous process.) Zero value: relay.DefaultRedelivery.
	Redelivery time.Duration
	// FIFO turns the bulk lane off in the relay, the embedded broker and
	// notify: a change made while many services lapse together waits
	// behind all of them (the baseline BenchmarkLapse measures the lanes
	// against). Zero value: false (bulk changes yield to the others; see
	// package relay).
	FIFO bool
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// TracerProvider makes the spans of a request's way through the
	// platform, one trace: the HTTP server span of the request, the
	// relay's publication of its change's event, the embedded broker's
	// delivery, notify's handling and each callback POST (package
	// store/kit/trace). Zero value: the global one (the kmep binary's
	// server.Main installs it from OTEL_EXPORTER_OTLP_ENDPOINT; unset, a
	// no-op).
	TracerProvider oteltrace.TracerProvider
	// Ready, when set, is called with the listen address once serving.
	Ready func(addr string)
	// NoAccessLog turns off the access log (KMEP_ACCESS_LOG=false).
	// Zero value: one info line per request (server.AccessLog).
	NoAccessLog bool
	// Banner, when set, receives the start-up banner as plain lines once
	// serving: the URL, the DNS address, where the admin token is, and
	// whether Redis and S3 are embedded. Zero value: the banner is only the
	// "ready" log line.
	Banner io.Writer
}

// Run starts the platform and serves until ctx ends, then drains and
// stops what it started.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = ".kmep"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	log := cfg.Log
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// Before anything starts (a redis-server child on the same data, a
	// listener): a second platform on this data directory fails here.
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	var about banner
	rdb, closeStore, err := openRedis(cfg, log, &about)
	if err != nil {
		return err
	}
	defer closeStore()
	defer rdb.Close()

	about.adminToken = "KMEP_ADMIN_TOKEN (set in the environment)"
	if cfg.AdminToken == "" {
		about.tokenFile = filepath.Join(cfg.DataDir, "admin-token")
		about.adminToken = "in the file " + about.tokenFile
	}
	secrets, err := loadSecrets(&cfg, log)
	if err != nil {
		return err
	}
	st, err := store.New(store.Options{Client: rdb, EncryptionKey: cfg.EncryptionKey})
	if err != nil {
		return err
	}
	keys, err := auth.ParseSigningKeys(cfg.SigningKeyPEM)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	signer, err := auth.NewSigner(keys, auth.SignerOptions{})
	if err != nil {
		return err
	}
	admin, err := auth.NewAdmin(cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if secrets != "" {
		log.Info("generated platform secrets", "files", secrets)
	}

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	token.PublishKeys(ctx, log, st, signer.JWKS())
	cache := services.NewCache(st, store.CacheOptions{OnError: func(err error) { log.Warn("discovery cache resync", "err", err) }})
	go cache.Run(bg)

	allow, err := callback.ParseAllowList(cfg.CallbackAllow)
	if err != nil {
		return fmt.Errorf("KMEP_CALLBACK_ALLOW: %w", err)
	}
	deny, err := callback.ParseDenyList(cfg.CallbackDeny)
	if err != nil {
		return fmt.Errorf("KMEP_CALLBACK_DENY: %w", err)
	}
	policy, err := callback.New(callback.Options{Allow: allow, Deny: deny, IncludeInterfaceAddrs: true})
	if err != nil {
		return err
	}
	verifier := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st, Log: log.With("component", "verifier")})
	go verifier.Run(bg)
	// One registry for every part: GET /metrics shows them all.
	reg := metrics.NewRegistry()
	tokenH := token.New(token.Deps{Store: st, Signer: signer, Admin: admin, Log: log.With("function", "token"), Metrics: reg})
	servicesH := services.New(services.Deps{Store: st, Cache: cache, Authenticate: verifier.AppInstance,
		AdminRead: admin.Check, Log: log.With("function", "services"), MinLivenessInterval: cfg.MinLivenessInterval, Metrics: reg})
	subsH := subscriptions.New(subscriptions.Deps{Store: st, Callbacks: policy, Authenticate: verifier.AppInstance,
		AdminRead: admin.Check, Log: log.With("function", "subscriptions")})
	appSupportH := appsupport.New(appsupport.Deps{Store: st, Authenticate: verifier.AppInstance, AdminRead: admin.Check, Log: log.With("function", "appsupport")})
	lcmH := lcm.New(lcm.Deps{Store: st, Admin: admin, Log: log.With("function", "lcm")})
	objects, closeS3, err := openS3(ctx, cfg, log, &about)
	if err != nil {
		return err
	}
	defer closeS3()
	packagesH := packages.New(packages.Deps{Store: st, Objects: objects, Admin: admin, Log: log.With("function", "packages")})
	deployer := kube.New(kube.Options{Log: log})
	instH := instantiate.New(instantiate.Deps{Store: st, Objects: objects, Cluster: deployer,
		Admin: admin, Log: log.With("function", "instantiate"), Namespace: cfg.AppNamespace})
	inst, err := installer.New(installer.Deps{Store: st, Objects: objects, Cluster: deployer, Log: log.With("trigger", "installer")})
	if err != nil {
		return err
	}

	brk, err := events(bg, cfg, st, policy, inst, reg, log)
	if err != nil {
		return err
	}
	// The operator's UI at / and its admin API; redeliveries go to the
	// embedded broker.
	dashH := dashboard.New(dashboard.Deps{Store: st, Admin: admin, App: verifier.AppInstance, Sender: brk,
		Stop: ctx.Done(), Log: log.With("function", "dashboard")})
	rp, err := reaper.New(reaper.Config{}, reaper.Deps{Store: st, Log: log.With("component", "reaper"), Metrics: reg})
	if err != nil {
		return err
	}
	go func() {
		if err := rp.Run(bg); err != nil {
			log.Error("reaper stopped", "err", err)
		}
	}()

	// The UPF agent without a data plane (its "none" driver): traffic rules
	// get their status and log lines as on a platform without a UPF.
	upf, err := upfagent.New(upfagent.Config{}, upfagent.Deps{Store: st,
		Driver: dataplane.None{Log: log.With("component", "upfagent")}, Log: log.With("component", "upfagent"), Metrics: reg})
	if err != nil {
		return err
	}
	go func() {
		if err := upf.Run(bg); err != nil {
			log.Error("UPF agent stopped", "err", err)
		}
	}()

	// The mesh agent's DNS server (its tunnel needs other nodes).
	dnsSrv, err := nameserver.New(nameserver.Config{Addr: cfg.DNSAddr}, nameserver.Deps{Store: st, Log: log.With("component", "meshdns"), Metrics: reg})
	if err != nil {
		return err
	}
	go func() {
		if err := dnsSrv.Run(bg); err != nil {
			log.Error("mesh DNS stopped", "err", err)
		}
	}()

	mux := http.NewServeMux()
	mux.Handle(token.TokenPath, tokenH)
	mux.Handle(token.JWKSPath, tokenH)
	mux.Handle("/mep/appMng/", tokenH)
	mux.Handle(services.BasePath+"/", servicesH)
	mux.Handle(appsupport.BasePath+"/", appSupportH)
	for _, p := range subscriptions.Routes() {
		mux.Handle(p, subsH)
	}
	mux.Handle(lcm.BasePath+"/", lcmH)
	mux.Handle(packages.BasePath+"/", packagesH)
	mux.Handle(instantiate.BasePath+"/tenants/{tenantId}/app_instances/", instH)
	mux.Handle("/", dashH)

	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Addr, err)
		}
	}
	about.url = "http://" + ln.Addr().String()
	about.dns = cfg.DNSAddr
	if about.dns == "" {
		about.dns = "127.0.0.1:5353"
	}
	about.print(log, cfg.Banner)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	return server.Run(ctx, server.Options{Listener: ln, Handler: metrics.Mount(reg, mux), Log: log, DrainTimeout: 10 * time.Second,
		NoAccessLog: cfg.NoAccessLog, TracerProvider: cfg.TracerProvider, Ready: verifier.Ready})
}

// openS3 returns the package bucket: cfg.S3's, or an embedded server's.
func openS3(ctx context.Context, cfg Config, log *slog.Logger, about *banner) (*blob.Store, func(), error) {
	closeS3 := func() {}
	c := cfg.S3
	if c.Endpoint == "" {
		dir := filepath.Join(cfg.DataDir, "s3")
		srv, err := s3server.Start(dir, "127.0.0.1:0", log)
		if err != nil {
			return nil, nil, fmt.Errorf("embedded S3 server: %w", err)
		}
		closeS3 = func() { _ = srv.Close() }
		c.Endpoint, c.AccessKey, c.SecretKey = srv.Endpoint, "local", "local"
		about.s3 = "embedded S3 server on disk under " + dir + " (set S3_ENDPOINT for a real one)"
		log.Info("S3_ENDPOINT unset: app packages go to an embedded S3 server on disk (single-user, unsigned)",
			"endpoint", srv.Endpoint, "dir", dir)
	}
	if about.s3 == "" {
		about.s3 = "external S3 at " + c.Endpoint
	}
	objects, err := blob.New(c)
	if err != nil {
		closeS3()
		return nil, nil, err
	}
	if err := objects.EnsureBucket(ctx); err != nil {
		log.Warn("package bucket not ready; uploads answer 503 until S3 answers", "endpoint", c.Endpoint, "err", err)
	}
	return objects, closeS3, nil
}

// brokerWorkers is how many deliveries the embedded broker makes at once
// (notify handles that many events at once, as behind Knative's
// dispatcher).
const brokerWorkers = 64

// events starts the event pipeline in-process: the relay publishes the
// change stream to an embedded broker that routes by the very Trigger
// objects of manifests/eventing.yaml to the notify, installer and
// deadletter triggers' receiver functions.
func events(ctx context.Context, cfg Config, st *store.Store, policy *callback.Policy, inst *installer.Installer,
	reg prometheus.Registerer, log *slog.Logger) (*broker.Broker, error) {
	n, err := notify.New(notify.Deps{Store: st, Client: policy.Client(), Log: log.With("trigger", "notify"), Metrics: reg, FIFO: cfg.FIFO,
		TracerProvider: cfg.TracerProvider})
	if err != nil {
		return nil, err
	}
	dead := deadletter.New(deadletter.Deps{Recorder: st, Settler: st, Log: log.With("trigger", "deadletter"), Metrics: reg})
	triggers, err := broker.LoadTriggers(manifests.Eventing)
	if err != nil {
		return nil, fmt.Errorf("manifests/eventing.yaml: %w", err)
	}
	bulk := kevents.Bulk // the kmeplane extension
	if cfg.FIFO {
		bulk = nil
	}
	brk, err := broker.New(broker.Options{Broker: "kmep", Namespace: "kmep", Triggers: triggers, Log: log.With("component", "broker"),
		Workers: brokerWorkers, Bulk: bulk, TracerProvider: cfg.TracerProvider,
		// The triggers' receiver functions, which their binaries serve behind
		// cloudevents' HTTP receiver: in process, events need no encoding.
		Resolve: broker.Receivers(map[string]broker.Receiver{"notify": n.Handle, "deadletter": dead.Handle, "installer": inst.Handle})})
	if err != nil {
		return nil, err
	}
	go brk.Run(ctx)
	brokerMetrics(reg, brk)
	// The relay's group starts at "$": create it before the platform takes
	// its first write, so nothing written from now on is missed.
	if err := st.EnsureGroup(ctx, relay.Group, "$"); err != nil {
		return nil, fmt.Errorf("relay group: %w", err)
	}
	// The broker's queue is in this process: what a previous process left
	// pending is lost from it, so the relay publishes it again at once.
	rl, err := relay.New(relay.Config{Sink: "http://in-process.broker/", Redelivery: cfg.Redelivery, RedeliverOnStart: true, FIFO: cfg.FIFO},
		relay.Deps{Store: st, Sender: brk, Log: log.With("component", "relay"), Metrics: reg, TracerProvider: cfg.TracerProvider})
	if err != nil {
		return nil, err
	}
	go func() {
		if err := rl.Run(ctx); err != nil {
			log.Error("relay stopped", "err", err)
		}
	}()
	return brk, nil
}

// openRedis picks the store and announces it as the first log line.
func openRedis(cfg Config, log *slog.Logger, about *banner) (*redis.Client, func(), error) {
	if cfg.RedisURL != "" {
		c, err := store.Dial(cfg.RedisURL)
		if err != nil {
			return nil, nil, err
		}
		log.Info("store: external Redis from REDIS_URL", "addr", c.Options().Addr)
		about.redis = "external Redis from REDIS_URL at " + c.Options().Addr
		return c, func() {}, nil
	}
	if !cfg.NoRedisServer {
		if _, err := exec.LookPath("redis-server"); err == nil {
			dir := filepath.Join(cfg.DataDir, "redis")
			srv, err := rediserver.Start(rediserver.Options{Dir: dir, AOF: true})
			if err != nil {
				return nil, nil, err
			}
			log.Info("store: private redis-server child, AOF on", "addr", srv.Addr, "dir", dir)
			about.redis = "private redis-server child at " + srv.Addr + ", data (AOF) under " + dir
			c, err := store.Dial(srv.URL())
			if err != nil {
				srv.Stop()
				return nil, nil, err
			}
			return c, srv.Stop, nil
		}
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("embedded store: %w", err)
	}
	log.Warn("store: EMBEDDED in-process Redis-protocol server (miniredis): NO PERSISTENCE, data is lost on exit; install redis-server or set REDIS_URL", "addr", m.Addr())
	about.redis = "EMBEDDED in-process server (miniredis) at " + m.Addr() + ": NO PERSISTENCE"
	c, err := store.Dial("redis://" + m.Addr() + "/0")
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return c, m.Close, nil
}

// loadSecrets fills the zero secrets of cfg from DataDir, generating the
// missing files. It returns the names of the files it generated.
func loadSecrets(cfg *Config, log *slog.Logger) (string, error) {
	var generated []string
	file := func(name string, gen func() ([]byte, error)) ([]byte, error) {
		p := filepath.Join(cfg.DataDir, name)
		b, err := os.ReadFile(p)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if b, err = gen(); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
		generated = append(generated, p)
		return b, nil
	}
	random := func(n int) func() ([]byte, error) {
		return func() ([]byte, error) {
			b := make([]byte, n)
			if _, err := rand.Read(b); err != nil {
				return nil, err
			}
			return []byte(base64.RawURLEncoding.EncodeToString(b) + "\n"), nil
		}
	}
	if cfg.AdminToken == "" {
		b, err := file("admin-token", random(32))
		if err != nil {
			return "", fmt.Errorf("admin token: %w", err)
		}
		cfg.AdminToken = strings.TrimSpace(string(b))
		log.Info("admin token from file (set KMEP_ADMIN_TOKEN to choose one)", "file", filepath.Join(cfg.DataDir, "admin-token"))
	}
	if cfg.EncryptionKey == nil {
		b, err := file("encryption-key", random(32))
		if err != nil {
			return "", fmt.Errorf("encryption key: %w", err)
		}
		if cfg.EncryptionKey, err = store.ParseEncryptionKey(string(b)); err != nil {
			return "", err
		}
	}
	if cfg.SigningKeyPEM == nil {
		b, err := file("signing-key.pem", auth.GenerateSigningKeyPEM)
		if err != nil {
			return "", fmt.Errorf("signing key: %w", err)
		}
		cfg.SigningKeyPEM = b
	}
	return strings.Join(generated, ", "), nil
}
