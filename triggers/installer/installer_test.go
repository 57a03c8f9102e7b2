package installer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"helm.sh/helm/v3/pkg/chart"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kmep-io/kmep/functions/instantiate"
	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar/csartest"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/triggers/installer"
)

const admin = "installer-admin-token-0123456789"

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

// hookCluster is the real Deployer whose Install goes through hook (when
// set), which may call next to install for real.
type hookCluster struct {
	*kube.Deployer
	installs atomic.Int32
	hook     func(ctx context.Context, next func(context.Context) error) error
}

func (c *hookCluster) Install(ctx context.Context, kc []byte, ns, name string, ch *chart.Chart, v map[string]any) error {
	c.installs.Add(1)
	next := func(ctx context.Context) error { return c.Deployer.Install(ctx, kc, ns, name, ch, v) }
	if c.hook != nil {
		return c.hook(ctx, next)
	}
	return next(ctx)
}

var _ installer.Cluster = (*hookCluster)(nil)

type env struct {
	st      *store.Store
	fn      http.Handler
	pkgs    http.Handler
	cluster *hookCluster
	in      *installer.Installer
	cs      *kubernetes.Clientset
}

func newEnv(t *testing.T, mio *testenv.MinIO, k *testenv.Kube) *env {
	t.Helper()
	st := srv.Store(t, store.Options{EncryptionKey: bytes.Repeat([]byte{7}, 32)})
	objects, err := blob.New(blob.Config{Endpoint: mio.Endpoint, AccessKey: mio.AccessKey, SecretKey: mio.SecretKey,
		Bucket: "installer-" + strings.ToLower(srv.Prefix())})
	if err != nil {
		t.Fatal(err)
	}
	if err := objects.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, _ := auth.NewAdmin(admin)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cluster := &hookCluster{Deployer: kube.New(kube.Options{})}
	in, err := installer.New(installer.Deps{Store: st, Objects: objects, Cluster: cluster, Log: quiet,
		LeaseTTL: time.Second, TouchEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := clientcmd.RESTConfigFromKubeConfig(k.Kubeconfig)
	cs, _ := kubernetes.NewForConfig(rc)
	e := &env{st: st, cluster: cluster, in: in, cs: cs,
		fn:   instantiate.New(instantiate.Deps{Store: st, Objects: objects, Cluster: cluster.Deployer, Admin: a, Log: quiet}),
		pkgs: packages.New(packages.Deps{Store: st, Objects: objects, Admin: a, Log: quiet})}
	e.publish(t, "pkg-1", csartest.CSAR(csartest.Options{}), "127.0.0.1", k.Kubeconfig)
	return e
}

func call(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func (e *env) publish(t *testing.T, id string, pkg []byte, ip string, kubeconfig []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("packageId", id)
	fw, _ := mw.CreateFormFile("package", id+".csar")
	_, _ = fw.Write(pkg)
	_ = mw.Close()
	req := httptest.NewRequest("POST", "/lcmcontroller/v1/tenants/tenant-1/packages", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+admin)
	w := httptest.NewRecorder()
	e.pkgs.ServeHTTP(w, req)
	if w.Code != 201 {
		t.Fatalf("upload: %d %s", w.Code, w.Body)
	}
	hb, _ := json.Marshal(packages.HostRequest{MechostIP: ip, Kubeconfig: string(kubeconfig)})
	if w := call(e.pkgs, "POST", "/lcmcontroller/v1/hosts", string(hb)); w.Code != 201 {
		t.Fatalf("host: %d %s", w.Code, w.Body)
	}
	if w := call(e.pkgs, "POST", "/lcmcontroller/v1/tenants/tenant-1/packages/"+id+"/distribute", `{"hostIp":["`+ip+`"]}`); w.Code != 200 {
		t.Fatalf("distribute: %d %s", w.Code, w.Body)
	}
}

func instPath(app string) string { return "/lcmcontroller/v1/tenants/tenant-1/app_instances/" + app }

// instantiate asks the function for app and returns the event its change
// becomes (recorded pending, as the relay does before it publishes).
func (e *env) instantiate(t *testing.T, app string) cloudevents.Event {
	t.Helper()
	after, _ := e.st.LastChangeID(context.Background())
	w := call(e.fn, "POST", instPath(app)+"/instantiate", `{"hostIp":"127.0.0.1","appName":"demo","packageId":"pkg-1"}`)
	if w.Code != http.StatusAccepted {
		t.Fatalf("instantiate %s: %d %s", app, w.Code, w.Body)
	}
	return e.event(t, after, app, store.ChangeInstantiate)
}

func (e *env) terminate(t *testing.T, app string) cloudevents.Event {
	t.Helper()
	after, _ := e.st.LastChangeID(context.Background())
	if w := call(e.fn, "POST", instPath(app)+"/terminate", `{"gracefulTimeout":0}`); w.Code != http.StatusAccepted {
		t.Fatalf("terminate %s: %d %s", app, w.Code, w.Body)
	}
	return e.event(t, after, app, store.ChangeTerminate)
}

// event is the CloudEvent of app's change of type typ after stream id after.
func (e *env) event(t *testing.T, after, app, typ string) cloudevents.Event {
	t.Helper()
	ctx := context.Background()
	chs, err := e.st.ReadChanges(ctx, after, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chs {
		if c.Kind != store.KindInstance || c.AppInstanceID != app || c.Type != typ {
			continue
		}
		ev, ok, err := events.FromChange(c)
		if err != nil || !ok || ev.Type() != events.TypeInstanceChanged {
			t.Fatalf("change %+v: event %v ok=%v err=%v", c, ev, ok, err)
		}
		if err := e.st.AddPending(ctx, ev.ID()); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	t.Fatalf("no %s change of %s in the stream", typ, app)
	return cloudevents.Event{}
}

func (e *env) pending(t *testing.T, id string) bool {
	t.Helper()
	ids, err := e.st.PendingIDs(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(ids, id)
}

func ack(t *testing.T, what string, res protocol.Result) {
	t.Helper()
	if res != nil {
		t.Fatalf("%s: %v, want ACK", what, res)
	}
}

func retry(t *testing.T, what string, res protocol.Result) {
	t.Helper()
	var hr *cehttp.Result
	if !errors.As(res, &hr) || hr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("%s: %v, want 503", what, res)
	}
}

func (e *env) state(t *testing.T, app string) store.Instance {
	t.Helper()
	in, err := e.st.GetInstance(context.Background(), app)
	if err != nil {
		t.Fatalf("instance %s: %v", app, err)
	}
	return in
}

// releases are Helm's release records (one Secret per revision) of app.
func (e *env) releases(t *testing.T, app string) int {
	t.Helper()
	l, err := e.cs.CoreV1().Secrets("mec-apps").List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

// instantiated checks app ended INSTANTIATED with one release, its
// credentials and its rules.
func (e *env) instantiated(t *testing.T, app string) {
	t.Helper()
	ctx := context.Background()
	if in := e.state(t, app); in.State != store.InstanceInstantiated {
		t.Fatalf("%s: state %s reason %q", app, in.State, in.Reason)
	}
	if n := e.releases(t, app); n != 1 {
		t.Errorf("%s: %d Helm release records, want 1", app, n)
	}
	conf, err := e.st.GetAppConf(ctx, app)
	if err != nil {
		t.Fatalf("%s: credentials: %v", app, err)
	}
	sec, err := e.cs.CoreV1().Secrets("mec-apps").Get(ctx, app+"-aksk", metav1.GetOptions{})
	if err != nil || string(sec.Data["AK"]) != conf.AccessKeyID {
		t.Errorf("%s: the chart's AK/SK secret differs from the stored credentials: %v", app, err)
	}
	if rules, _ := e.st.ListRules(ctx, store.RuleDNS, app); len(rules) != 1 {
		t.Errorf("%s: DNS rules %+v", app, rules)
	}
}

// gone checks nothing of app is left.
func (e *env) gone(t *testing.T, app string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.st.GetInstance(ctx, app); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: record left: %v", app, err)
	}
	if _, err := e.st.GetInstallSpec(ctx, app); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: install spec left: %v", app, err)
	}
	if _, err := e.st.GetAppConf(ctx, app); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: credentials left: %v", app, err)
	}
	if _, err := e.st.GetAppD(ctx, app); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: rule configuration left: %v", app, err)
	}
	for _, kind := range []string{store.RuleDNS, store.RuleTraffic} {
		if rules, _ := e.st.ListRules(ctx, kind, app); len(rules) != 0 {
			t.Errorf("%s: rules left: %+v", app, rules)
		}
	}
	if n := e.releases(t, app); n != 0 {
		t.Errorf("%s: %d Helm release records left", app, n)
	}
	if _, err := e.cs.AppsV1().Deployments("mec-apps").Get(ctx, app, metav1.GetOptions{}); err == nil {
		t.Errorf("%s: deployment left", app)
	}
	if _, err := e.cs.CoreV1().ConfigMaps("mec-apps").Get(ctx, app+"-mep", metav1.GetOptions{}); err == nil {
		t.Errorf("%s: configmap left", app)
	}
	if _, err := e.cs.CoreV1().Secrets("mec-apps").Get(ctx, app+"-aksk", metav1.GetOptions{}); err == nil {
		t.Errorf("%s: AK/SK secret left", app)
	}
}

func TestOnRealCluster(t *testing.T) {
	mio := testenv.NeedMinIO(t)
	k := testenv.NeedKube(t)
	e := newEnv(t, mio, k)

	// The installer stops mid-install (its context ends: a pod stopped, or
	// killed, leaving its lease behind) and the event is delivered again:
	// the instance reaches INSTANTIATED with one release.
	for _, tc := range []struct {
		name string
		// stop ends ctx at some point of the install.
		stop func(ctx context.Context, cancel context.CancelFunc, next func(context.Context) error) error
	}{
		{"after helm install", func(ctx context.Context, cancel context.CancelFunc, next func(context.Context) error) error {
			if err := next(context.WithoutCancel(ctx)); err != nil {
				return err
			}
			cancel()
			return ctx.Err()
		}},
		{"during helm install", func(ctx context.Context, cancel context.CancelFunc, next func(context.Context) error) error {
			cancel()
			return next(ctx)
		}},
	} {
		t.Run("killed "+tc.name, func(t *testing.T) {
			app := "kill-" + strings.ReplaceAll(strings.Fields(tc.name)[0], " ", "")
			ev := e.instantiate(t, app)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			e.cluster.hook = func(hctx context.Context, next func(context.Context) error) error {
				var err error
				ran := false
				once.Do(func() { ran = true; err = tc.stop(hctx, cancel, next) })
				if !ran {
					err = next(hctx)
				}
				return err
			}
			defer func() { e.cluster.hook = nil }()
			retry(t, "interrupted delivery", e.in.Handle(ctx, ev))
			if in := e.state(t, app); in.State != store.InstanceInstantiating {
				t.Fatalf("after the interruption: %s %q, want INSTANTIATING (to be resumed)", in.State, in.Reason)
			}
			if !e.pending(t, ev.ID()) {
				t.Fatal("an interrupted delivery settled its event")
			}
			// A killed process leaves its lease until it lapses.
			if ok, err := e.st.AcquireLease(context.Background(), installer.LeaseName(app), "killed-pod", time.Second); err != nil || !ok {
				t.Fatalf("lease: %v %v", ok, err)
			}
			ack(t, "redelivery", e.in.Handle(context.Background(), ev))
			e.instantiated(t, app)
			if e.pending(t, ev.ID()) {
				t.Error("the finished delivery did not settle its event")
			}
		})
	}

	// The same event twice at once, then once more: one release, one
	// install.
	t.Run("delivered twice", func(t *testing.T) {
		ev := e.instantiate(t, "twice")
		before := e.cluster.installs.Load()
		var wg sync.WaitGroup
		res := make([]protocol.Result, 2)
		for i := range res {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = e.in.Handle(context.Background(), ev) }()
		}
		wg.Wait()
		ack(t, "first delivery", res[0])
		ack(t, "second delivery", res[1])
		ack(t, "third delivery", e.in.Handle(context.Background(), ev))
		e.instantiated(t, "twice")
		if n := e.cluster.installs.Load() - before; n != 1 {
			t.Errorf("%d helm installs for three deliveries, want 1", n)
		}
		if e.pending(t, ev.ID()) {
			t.Error("event not settled")
		}
		term := e.terminate(t, "twice")
		ack(t, "terminate", e.in.Handle(context.Background(), term))
		ack(t, "terminate again", e.in.Handle(context.Background(), term))
		e.gone(t, "twice")
	})

	// Terminate while the install runs: the removal waits for it, then
	// nothing is left.
	t.Run("terminate during install", func(t *testing.T) {
		ev := e.instantiate(t, "during")
		started, proceed := make(chan struct{}), make(chan struct{})
		e.cluster.hook = func(ctx context.Context, next func(context.Context) error) error {
			close(started)
			<-proceed
			return next(ctx)
		}
		defer func() { e.cluster.hook = nil }()
		var wg sync.WaitGroup
		var installRes, termRes protocol.Result
		wg.Add(1)
		go func() { defer wg.Done(); installRes = e.in.Handle(context.Background(), ev) }()
		<-started
		term := e.terminate(t, "during")
		if in := e.state(t, "during"); in.State != store.InstanceTerminating {
			t.Fatalf("after terminate: %s", in.State)
		}
		wg.Add(1)
		go func() { defer wg.Done(); termRes = e.in.Handle(context.Background(), term) }()
		time.Sleep(200 * time.Millisecond) // the removal is waiting for the install's lease
		close(proceed)
		wg.Wait()
		ack(t, "install", installRes)
		ack(t, "terminate", termRes)
		e.gone(t, "during")
		if e.pending(t, ev.ID()) || e.pending(t, term.ID()) {
			t.Error("events not settled")
		}
		// A late redelivery of the install finds nothing to do.
		ack(t, "late install", e.in.Handle(context.Background(), ev))
		e.gone(t, "during")
	})

	// A release of the instance's name that is not its own is never touched.
	t.Run("someone else's release", func(t *testing.T) {
		ev := e.instantiate(t, "theirs")
		ch, err := kube.LoadChart(csartest.Chart("demo", csartest.ChartFiles("demo")))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.cluster.Deployer.Install(context.Background(), k.Kubeconfig, "mec-apps", "theirs", ch,
			map[string]any{"ak": "someone-else", "sk": "x", "appInstanceId": "theirs", "mepagent": map[string]any{"enabled": false}}); err != nil {
			t.Fatal(err)
		}
		ack(t, "install", e.in.Handle(context.Background(), ev))
		in := e.state(t, "theirs")
		if in.State != store.InstanceFailed || !strings.Contains(in.Reason, "not this instance's") {
			t.Fatalf("state %s reason %q", in.State, in.Reason)
		}
		if _, err := e.st.GetAppConf(context.Background(), "theirs"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("credentials left after a failed install: %v", err)
		}
		term := e.terminate(t, "theirs")
		ack(t, "terminate", e.in.Handle(context.Background(), term))
		if n := e.releases(t, "theirs"); n != 1 {
			t.Errorf("the other release: %d records, want 1 (left alone)", n)
		}
		if _, err := e.st.GetInstance(context.Background(), "theirs"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("record left: %v", err)
		}
	})

	// The cluster down at install time: FAILED with the reason, the
	// credentials removed again.
	t.Run("cluster down", func(t *testing.T) {
		ev := e.instantiate(t, "down")
		k.Stop()
		ack(t, "install", e.in.Handle(context.Background(), ev))
		in := e.state(t, "down")
		if in.State != store.InstanceFailed || in.Reason == "" {
			t.Fatalf("state %s reason %q", in.State, in.Reason)
		}
		if _, err := e.st.GetAppConf(context.Background(), "down"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("credentials left after a failed install: %v", err)
		}
		if e.pending(t, ev.ID()) {
			t.Error("a failed install did not settle its event")
		}
	})
}

// Events the installer cannot use are refused with 400 and settled. Each
// event is handled in a span "install" below the event's traceparent, an
// error when refused.
func TestRefusesOtherEvents(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	st := srv.Store(t, store.Options{EncryptionKey: bytes.Repeat([]byte{7}, 32)})
	rec := tracetest.NewSpanRecorder()
	in, err := installer.New(installer.Deps{Store: st, Objects: &blob.Store{}, Cluster: kube.New(kube.Options{}),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		typ  string
		data any
	}{
		{"other type", events.TypeServiceChanged, events.InstanceChanged{ChangeType: store.ChangeInstantiate, AppInstanceID: "a"}},
		{"no app", events.TypeInstanceChanged, events.InstanceChanged{ChangeType: store.ChangeInstantiate}},
		{"unknown change", events.TypeInstanceChanged, events.InstanceChanged{ChangeType: "REBOOT", AppInstanceID: "a"}},
		{"not JSON", events.TypeInstanceChanged, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := cloudevents.NewEvent()
			ev.SetID("1700000000000-" + strings.ReplaceAll(tc.name, " ", ""))
			ev.SetSource(events.Source)
			ev.SetType(tc.typ)
			ev.SetExtension(events.ExtTraceParent, parent)
			if tc.data != nil {
				_ = ev.SetData(cloudevents.ApplicationJSON, tc.data)
			} else {
				_ = ev.SetData("text/plain", []byte("{"))
			}
			if err := st.AddPending(context.Background(), ev.ID()); err != nil {
				t.Fatal(err)
			}
			var hr *cehttp.Result
			if res := in.Handle(context.Background(), ev); !errors.As(res, &hr) || hr.StatusCode != http.StatusBadRequest {
				t.Fatalf("%v, want 400", res)
			}
			if ids, _ := st.PendingIDs(context.Background(), 100); slices.Contains(ids, ev.ID()) {
				t.Error("a refused event stays pending")
			}
			spans := rec.Ended()
			if len(spans) == 0 {
				t.Fatal("no span")
			}
			sp := spans[len(spans)-1]
			if sp.Name() != "install" || sp.Parent().TraceID().String() != parent[3:35] || sp.Parent().SpanID().String() != parent[36:52] ||
				sp.Status().Code != codes.Error {
				t.Errorf("span %q below %v, status %v; want \"install\" below the event's traceparent, an error", sp.Name(), sp.Parent(), sp.Status())
			}
		})
	}
	// An event for an instance that does not exist: nothing to do, settled.
	ev := cloudevents.NewEvent()
	ev.SetID("1700000000001-0")
	ev.SetSource(events.Source)
	ev.SetType(events.TypeInstanceChanged)
	_ = ev.SetData(cloudevents.ApplicationJSON, events.InstanceChanged{ChangeType: store.ChangeTerminate, AppInstanceID: "nobody"})
	if res := in.Handle(context.Background(), ev); res != nil {
		t.Fatalf("unknown instance: %v, want ACK", res)
	}
	if spans := rec.Ended(); spans[len(spans)-1].Status().Code == codes.Error {
		t.Errorf("the ACKed event's span is an error: %v", spans[len(spans)-1].Status())
	}
}
