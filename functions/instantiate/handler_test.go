package instantiate_test

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
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kmep-io/kmep/functions/instantiate"
	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/local/s3server"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar/csartest"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/triggers/installer"
)

const admin = "instantiate-admin-token-0123456789"

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

type env struct {
	st   *store.Store
	pkgs http.Handler
	h    *instantiate.Handler
	// in does the installs and removals the function records.
	in *installer.Installer
	// seen is the last change delivered to in.
	seen string
}

// cluster is what both the function and the installer use.
type cluster interface {
	instantiate.Cluster
	installer.Cluster
}

// newEnv wires both functions and the installer trigger over one store and
// bucket; cluster is the real Deployer or a fake.
func newEnv(t testing.TB, s3 blob.Config, cluster cluster) *env {
	t.Helper()
	st := srv.Store(t, store.Options{EncryptionKey: bytes.Repeat([]byte{9}, 32)})
	s3.Bucket = "inst-" + strings.ToLower(srv.Prefix())
	objects, err := blob.New(s3)
	if err != nil {
		t.Fatal(err)
	}
	if err := objects.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, _ := auth.NewAdmin(admin)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := instantiate.New(instantiate.Deps{Store: st, Objects: objects, Cluster: cluster, Admin: a, Log: quiet,
		AgentValues: map[string]any{"mepServer": "http://mep.example:8080"}})
	in, err := installer.New(installer.Deps{Store: st, Objects: objects, Cluster: cluster, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	seen, err := st.LastChangeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, pkgs: packages.New(packages.Deps{Store: st, Objects: objects, Admin: a, Log: quiet}), h: h, in: in, seen: seen}
}

// deliver hands every instance change recorded since the last call to the
// installer, in order, as the relay and the Broker do, and waits for it.
func (e *env) deliver(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	chs, err := e.st.ReadChanges(ctx, e.seen, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chs {
		e.seen = c.StreamID
		ev, ok, err := events.FromChange(c)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || ev.Type() != events.TypeInstanceChanged {
			continue
		}
		if res := e.in.Handle(ctx, ev); res != nil {
			t.Fatalf("installer on %s %s: %v", c.Type, c.AppInstanceID, res)
		}
	}
}

func call(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// publish uploads pkg as tenant-1/id, adds host ip with kubeconfig and
// distributes the package there.
func (e *env) publish(t testing.TB, id string, pkg []byte, ip string, kubeconfig []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := newMultipart(&body, id, pkg)
	req := httptest.NewRequest("POST", "/lcmcontroller/v1/tenants/tenant-1/packages", &body)
	req.Header.Set("Content-Type", mw)
	req.Header.Set("Authorization", "Bearer "+admin)
	w := httptest.NewRecorder()
	e.pkgs.ServeHTTP(w, req)
	if w.Code != 201 {
		t.Fatalf("upload: %d %s", w.Code, w.Body)
	}
	hb, _ := json.Marshal(packages.HostRequest{MechostIP: ip, Kubeconfig: string(kubeconfig)})
	if w := call(e.pkgs, "POST", "/lcmcontroller/v1/hosts", string(hb)); w.Code != 201 && w.Code != 409 {
		t.Fatalf("host: %d %s", w.Code, w.Body)
	}
	if w := call(e.pkgs, "POST", "/lcmcontroller/v1/tenants/tenant-1/packages/"+id+"/distribute", `{"hostIp":["`+ip+`"]}`); w.Code != 200 {
		t.Fatalf("distribute: %d %s", w.Code, w.Body)
	}
}

func instPath(app string) string { return "/lcmcontroller/v1/tenants/tenant-1/app_instances/" + app }

func instantiateBody(pkg, ip string) string {
	return `{"hostIp":"` + ip + `","appName":"demo","packageId":"` + pkg + `","parameters":{"replicaCount":2}}`
}

func view(t testing.TB, e *env, app string) instantiate.View {
	t.Helper()
	w := call(e.h, "GET", instPath(app), "")
	if w.Code != 200 {
		t.Fatalf("get %s: %d %s", app, w.Code, w.Body)
	}
	var v instantiate.View
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInstantiateOnRealCluster(t *testing.T) {
	mio := testenv.NeedMinIO(t)
	k := testenv.NeedKube(t)
	ctx := context.Background()
	e := newEnv(t, blob.Config{Endpoint: mio.Endpoint, AccessKey: mio.AccessKey, SecretKey: mio.SecretKey}, kube.New(kube.Options{}))
	e.publish(t, "pkg-1", csartest.CSAR(csartest.Options{}), "127.0.0.1", k.Kubeconfig)

	w := call(e.h, "POST", instPath("app-1")+"/instantiate", instantiateBody("pkg-1", "127.0.0.1"))
	if w.Code != http.StatusAccepted || !strings.HasSuffix(w.Header().Get("Location"), instPath("app-1")) {
		t.Fatalf("instantiate: %d %s", w.Code, w.Body)
	}
	problemtest.Want(t, call(e.h, "POST", instPath("app-1")+"/instantiate", instantiateBody("pkg-1", "127.0.0.1")),
		instPath("app-1")+"/instantiate", http.StatusConflict, "")
	// Stateless: the function recorded the instance and its change, nothing
	// more, until the installer gets the event.
	if v := view(t, e, "app-1"); v.State != store.InstanceInstantiating {
		t.Fatalf("before the installer: %+v", v.Instance)
	}
	if rels, _ := e.st.GetAppConf(ctx, "app-1"); rels.AccessKeyID != "" {
		t.Error("the function stored credentials itself")
	}
	e.deliver(t)

	v := view(t, e, "app-1")
	if v.State != store.InstanceInstantiated || v.Release == nil || v.Release.Release != "deployed" {
		t.Fatalf("after install: %+v (release %+v)", v.Instance, v.Release)
	}
	if v.Release.Ready || !strings.Contains(v.Release.Message, "0/2 ready") {
		t.Errorf("readiness must say no pods run here: %+v", v.Release)
	}
	// Credentials through the token function's Mm5 path, and in the chart.
	conf, err := e.st.GetAppConf(ctx, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := clientcmd.RESTConfigFromKubeConfig(k.Kubeconfig)
	cs, _ := kubernetes.NewForConfig(rc)

	// A pod of the Deployment whose image the kubelet cannot pull (this
	// API server has no kubelet: the pod and its status are written as a
	// kubelet would): GET says FAILED with the kubelet's reason.
	pod, err := cs.CoreV1().Pods("mec-apps").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-1-abc12", Labels: map[string]string{"app": "app-1"}},
		Spec: corev1.PodSpec{ServiceAccountName: "app-1", // the chart's (this API server makes no default one)
			Containers: []corev1.Container{{Name: "app", Image: "registry.local/demo:1.0"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: "registry.local/demo:1.0",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
			Message: `Back-off pulling image "registry.local/demo:1.0"`}}}}
	if _, err := cs.CoreV1().Pods("mec-apps").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := view(t, e, "app-1"); v.State != store.InstanceFailed ||
		v.Reason != `Deployment/app-1: pod app-1-abc12 container app: ImagePullBackOff: Back-off pulling image "registry.local/demo:1.0"` {
		t.Errorf("with a pod whose image cannot be pulled: %s %q", v.State, v.Reason)
	}
	// Only waiting reasons that waiting does not mend count.
	pod, _ = cs.CoreV1().Pods("mec-apps").Get(ctx, "app-1-abc12", metav1.GetOptions{})
	pod.Status.ContainerStatuses[0].State.Waiting.Reason = "ContainerCreating"
	if _, err := cs.CoreV1().Pods("mec-apps").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := view(t, e, "app-1"); v.State != store.InstanceInstantiated || v.Reason != "" {
		t.Errorf("with a pod being created: %s %q", v.State, v.Reason)
	}
	_ = cs.CoreV1().Pods("mec-apps").Delete(ctx, "app-1-abc12", metav1.DeleteOptions{})
	sec, err := cs.CoreV1().Secrets("mec-apps").Get(ctx, "app-1-aksk", metav1.GetOptions{})
	if err != nil || string(sec.Data["AK"]) != conf.AccessKeyID || len(sec.Data["SK"]) != 64 {
		t.Fatalf("AK/SK secret: %v", err)
	}
	cred, err := e.st.CredentialByAK(ctx, conf.AccessKeyID)
	if err != nil || string(cred.SecretKey) != string(sec.Data["SK"]) || cred.AppInstanceID != "app-1" {
		t.Errorf("stored SK differs from the chart's: %v", err)
	}
	cm, err := cs.CoreV1().ConfigMaps("mec-apps").Get(ctx, "app-1-mep", metav1.GetOptions{})
	if err != nil || cm.Data["MEP_URL"] != "http://mep.example:8080" {
		t.Errorf("mep-agent settings: %v %v", err, cm)
	}
	dep, err := cs.AppsV1().Deployments("mec-apps").Get(ctx, "app-1", metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 2 {
		t.Errorf("parameters did not reach the chart: %v", err)
	}
	// The APPD's rules through the Mm5 appd configuration.
	if rules, _ := e.st.ListRules(ctx, store.RuleDNS, "app-1"); len(rules) != 1 || rules[0].ID != "dns1" {
		t.Errorf("DNS rules: %+v", rules)
	}
	if rules, _ := e.st.ListRules(ctx, store.RuleTraffic, "app-1"); len(rules) != 1 || rules[0].ID != "tr1" {
		t.Errorf("traffic rules: %+v", rules)
	}

	// Terminate: nobody subscribed, so no wait; release, credentials, rules
	// and record go.
	if w := call(e.h, "POST", instPath("app-1")+"/terminate", ""); w.Code != http.StatusAccepted {
		t.Fatalf("terminate: %d %s", w.Code, w.Body)
	}
	e.deliver(t)
	problemtest.Want(t, call(e.h, "GET", instPath("app-1"), ""), instPath("app-1"), http.StatusNotFound, "")
	if _, err := cs.AppsV1().Deployments("mec-apps").Get(ctx, "app-1", metav1.GetOptions{}); err == nil {
		t.Error("deployment left after terminate")
	}
	if _, err := e.st.GetAppConf(ctx, "app-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("credentials left after terminate: %v", err)
	}
	if rules, _ := e.st.ListRules(ctx, store.RuleDNS, "app-1"); len(rules) != 0 {
		t.Errorf("rules left after terminate: %+v", rules)
	}

	// A chart that does not render: 422 with Helm's message, nothing installed.
	files := csartest.ChartFiles("needs")
	files["templates/configmap.yaml"] += "  REGION: {{ required \"region is required\" .Values.region }}\n"
	e.publish(t, "pkg-2", csartest.CSAR(csartest.Options{Name: "needs", Chart: csartest.Chart("needs", files)}), "127.0.0.1", k.Kubeconfig)
	w = call(e.h, "POST", instPath("app-2")+"/instantiate", instantiateBody("pkg-2", "127.0.0.1"))
	problemtest.Want(t, w, instPath("app-2")+"/instantiate", http.StatusUnprocessableEntity, "parameters")
	if !strings.Contains(w.Body.String(), "region is required") {
		t.Errorf("422 without Helm's message: %s", w.Body)
	}
	if rels, _ := cs.CoreV1().Secrets("mec-apps").List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=app-2"}); len(rels.Items) != 0 {
		t.Error("a release was recorded for a chart that does not render")
	}
	problemtest.Want(t, call(e.h, "GET", instPath("app-2"), ""), instPath("app-2"), http.StatusNotFound, "")

	// The cluster goes down between the 202 and the install: FAILED with
	// the reason, the credentials removed again.
	if w := call(e.h, "POST", instPath("app-3")+"/instantiate", instantiateBody("pkg-1", "127.0.0.1")); w.Code != http.StatusAccepted {
		t.Fatalf("instantiate: %d %s", w.Code, w.Body)
	}
	k.Stop()
	e.deliver(t)
	if in, err := e.st.GetInstance(ctx, "app-3"); err != nil || in.State != store.InstanceFailed || in.Reason == "" {
		t.Errorf("install with the cluster down: %+v %v", in, err)
	}
	if _, err := e.st.GetAppConf(ctx, "app-3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("credentials left after a failed install: %v", err)
	}

	// The cluster down: 503, no record.
	w = call(e.h, "POST", instPath("app-4")+"/instantiate", instantiateBody("pkg-1", "127.0.0.1"))
	problemtest.Want(t, w, instPath("app-4")+"/instantiate", http.StatusServiceUnavailable, "")
	if w.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	problemtest.Want(t, call(e.h, "GET", instPath("app-4"), ""), instPath("app-4"), http.StatusNotFound, "")
}

// fakeCluster is a cluster that renders with Helm for real but whose
// install fails on demand.
type fakeCluster struct {
	real       *kube.Deployer
	installErr error
	mu         sync.Mutex
	installs   []string
	uninstalls []string
	// installed are the values of each release installed.
	installed map[string]map[string]any
}

func (f *fakeCluster) Reachable(context.Context, []byte) error { return nil }
func (f *fakeCluster) Render(ch *chart.Chart, name, ns string, v map[string]any) error {
	return f.real.Render(ch, name, ns, v)
}
func (f *fakeCluster) EnsureNamespace(context.Context, []byte, string) error { return nil }
func (f *fakeCluster) Install(_ context.Context, _ []byte, ns, name string, _ *chart.Chart, v map[string]any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installs = append(f.installs, ns+"/"+name)
	if f.installErr == nil {
		if f.installed == nil {
			f.installed = map[string]map[string]any{}
		}
		f.installed[ns+"/"+name] = v
	}
	return f.installErr
}
func (f *fakeCluster) Uninstall(_ context.Context, _ []byte, ns, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uninstalls = append(f.uninstalls, ns+"/"+name)
	if _, ok := f.installed[ns+"/"+name]; !ok {
		return kube.ErrNotFound
	}
	delete(f.installed, ns+"/"+name)
	return nil
}
func (f *fakeCluster) Release(_ context.Context, _ []byte, ns, name string) (kube.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.installed[ns+"/"+name]
	if !ok {
		return kube.Release{}, kube.ErrNotFound
	}
	return kube.Release{Status: "deployed", Values: v}, nil
}
func (f *fakeCluster) Status(context.Context, []byte, string, string) (kube.Status, error) {
	return kube.Status{Release: "deployed"}, nil
}

var _ cluster = (*fakeCluster)(nil)

func embeddedS3(t *testing.T) blob.Config {
	s, err := s3server.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return blob.Config{Endpoint: s.Endpoint, AccessKey: "local", SecretKey: "local"}
}

const fakeKubeconfig = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://192.0.2.1:6443'}}]\n" +
	"users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"

func TestFailedInstallIsUndone(t *testing.T) {
	f := &fakeCluster{real: kube.New(kube.Options{}), installErr: errors.New("admission webhook denied the request")}
	e := newEnv(t, embeddedS3(t), f)
	ctx := context.Background()
	e.publish(t, "pkg-1", csartest.CSAR(csartest.Options{}), "192.0.2.1", []byte(fakeKubeconfig))
	if w := call(e.h, "POST", instPath("app-1")+"/instantiate", instantiateBody("pkg-1", "192.0.2.1")); w.Code != 202 {
		t.Fatalf("instantiate: %d %s", w.Code, w.Body)
	}
	e.deliver(t)
	v := view(t, e, "app-1")
	if v.State != store.InstanceFailed || !strings.Contains(v.Reason, "helm install: admission webhook denied") {
		t.Errorf("state %s reason %q", v.State, v.Reason)
	}
	if _, err := e.st.GetAppConf(ctx, "app-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("credentials left after a failed install: %v", err)
	}
	if _, err := e.st.GetAppD(ctx, "app-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rules applied for a failed install: %v", err)
	}
	// A failed instance still occupies its id until it is terminated.
	problemtest.Want(t, call(e.h, "POST", instPath("app-1")+"/instantiate", instantiateBody("pkg-1", "192.0.2.1")), instPath("app-1")+"/instantiate", 409, "")
	if w := call(e.h, "POST", instPath("app-1")+"/terminate", `{"gracefulTimeout":0}`); w.Code != 202 {
		t.Fatalf("terminate: %d %s", w.Code, w.Body)
	}
	e.deliver(t)
	problemtest.Want(t, call(e.h, "GET", instPath("app-1"), ""), instPath("app-1"), 404, "")
}

func TestBadRequests(t *testing.T) {
	f := &fakeCluster{real: kube.New(kube.Options{})}
	e := newEnv(t, embeddedS3(t), f)
	e.publish(t, "pkg-1", csartest.CSAR(csartest.Options{}), "192.0.2.1", []byte(fakeKubeconfig))
	if w := call(e.pkgs, "POST", "/lcmcontroller/v1/hosts", `{"mechostIp":"192.0.2.2","kubeconfig":`+jsonString(fakeKubeconfig)+`}`); w.Code != 201 {
		t.Fatalf("second host: %d %s", w.Code, w.Body)
	}
	p := instPath("app-1") + "/instantiate"
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"unknown package", p, instantiateBody("nope", "192.0.2.1"), 404, ""},
		{"unknown host", p, instantiateBody("pkg-1", "192.0.2.99"), 404, ""},
		{"not distributed there", p, instantiateBody("pkg-1", "192.0.2.2"), 409, ""},
		{"bad host ip", p, instantiateBody("pkg-1", "edge-1"), 400, "hostIp"},
		{"no app name", p, `{"hostIp":"192.0.2.1","packageId":"pkg-1"}`, 400, "appName"},
		{"unknown member", p, `{"hostIp":"192.0.2.1","packageId":"pkg-1","appName":"a","extra":1}`, 400, "body"},
		{"ak without sk", p, `{"hostIp":"192.0.2.1","packageId":"pkg-1","appName":"a","ak":"x"}`, 400, "ak"},
		{"bad namespace", p, `{"hostIp":"192.0.2.1","packageId":"pkg-1","appName":"a","namespace":"Not_OK"}`, 400, "namespace"},
		{"bad instance id", instPath("App_1") + "/instantiate", instantiateBody("pkg-1", "192.0.2.1"), 400, "appInstanceId"},
		{"terminate unknown", instPath("app-9") + "/terminate", "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problemtest.Want(t, call(e.h, "POST", tc.path, tc.body), tc.path, tc.status, tc.field)
		})
	}
	if len(f.installs) != 0 {
		t.Errorf("refused requests installed something: %v", f.installs)
	}
	if insts, _ := e.st.ListInstances(context.Background()); len(insts) != 0 {
		t.Errorf("refused requests left records: %+v", insts)
	}
	// Not the admin.
	req := httptest.NewRequest("POST", p, strings.NewReader(instantiateBody("pkg-1", "192.0.2.1")))
	req.Header.Set("Authorization", "Bearer someone-else")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	if w.Code != 401 && w.Code != 403 {
		t.Errorf("non-admin: %d", w.Code)
	}
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

func newMultipart(w *bytes.Buffer, id string, pkg []byte) string {
	mw := multipart.NewWriter(w)
	_ = mw.WriteField("packageId", id)
	fw, _ := mw.CreateFormFile("package", id+".csar")
	_, _ = fw.Write(pkg)
	_ = mw.Close()
	return mw.FormDataContentType()
}
