package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/csar/csartest"
	"github.com/kmep-io/kmep/store/kit/kube"
)

func values() map[string]any {
	return map[string]any{"ak": "AK1", "sk": "SK-secret", "appInstanceId": "app-1", "mepagent": map[string]any{"enabled": true, "mepServer": "http://mep"}}
}

func clientset(t *testing.T, kubeconfig []byte) *kubernetes.Clientset {
	t.Helper()
	rc, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestRender(t *testing.T) {
	d := kube.New(kube.Options{})
	ch, err := kube.LoadChart(csartest.Chart("demo", csartest.ChartFiles("demo")))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Render(ch, "app-1", "ns", values()); err != nil {
		t.Fatalf("render: %v", err)
	}
	v := values()
	delete(v, "ak")
	var re *kube.RenderError
	if err := d.Render(ch, "app-1", "ns", v); !errors.As(err, &re) || !strings.Contains(re.Message, "ak is required") {
		t.Errorf("render without ak: %v", err)
	}
	if _, err := kube.LoadChart([]byte("not a chart")); !errors.As(err, &re) {
		t.Errorf("load garbage: %v", err)
	}
}

func TestInstallAgainstAPIServer(t *testing.T) {
	k := testenv.NeedKube(t)
	ctx := context.Background()
	d := kube.New(kube.Options{})
	ch, err := kube.LoadChart(csartest.Chart("demo", csartest.ChartFiles("demo")))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reachable(ctx, k.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	if err := d.EnsureNamespace(ctx, k.Kubeconfig, "mec-apps"); err != nil {
		t.Fatal(err)
	}
	if err := d.EnsureNamespace(ctx, k.Kubeconfig, "mec-apps"); err != nil {
		t.Fatalf("second EnsureNamespace: %v", err)
	}
	if err := d.Install(ctx, k.Kubeconfig, "mec-apps", "app-1", ch, values()); err != nil {
		t.Fatal(err)
	}
	cs := clientset(t, k.Kubeconfig)
	dep, err := cs.AppsV1().Deployments("mec-apps").Get(ctx, "app-1", metav1.GetOptions{})
	if err != nil || dep.Spec.Template.Spec.Containers[0].Image != "registry.local/demo:1.0" {
		t.Fatalf("deployment: %v", err)
	}
	if svc, err := cs.CoreV1().Services("mec-apps").Get(ctx, "app-1", metav1.GetOptions{}); err != nil || svc.Spec.Ports[0].Port != 8080 {
		t.Fatalf("service: %v", err)
	}
	sec, err := cs.CoreV1().Secrets("mec-apps").Get(ctx, "app-1-aksk", metav1.GetOptions{})
	if err != nil || string(sec.Data["AK"]) != "AK1" || string(sec.Data["APPINSTID"]) != "app-1" {
		t.Fatalf("secret: %v %v", err, sec)
	}
	// Helm keeps its release in a Secret.
	rels, err := cs.CoreV1().Secrets("mec-apps").List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=app-1"})
	if err != nil || len(rels.Items) != 1 {
		t.Fatalf("helm release secrets: %v %d", err, len(rels.Items))
	}

	st, err := d.Status(ctx, k.Kubeconfig, "mec-apps", "app-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Release != "deployed" || len(st.Resources) != 5 {
		t.Errorf("status: %+v", st)
	}
	// No kubelet here: nothing runs, and the status says so.
	if st.Ready || len(st.Workloads) != 1 || st.Workloads[0].Ready != 0 || st.Workloads[0].Desired != 1 ||
		!strings.Contains(st.Message, "Deployment/app-1 0/1 ready") {
		t.Errorf("readiness: %+v", st)
	}

	if err := d.Install(ctx, k.Kubeconfig, "mec-apps", "app-1", ch, values()); err == nil {
		t.Error("second install of the same release succeeded")
	}
	if _, err := cs.AppsV1().Deployments("mec-apps").Get(ctx, "app-1", metav1.GetOptions{}); err != nil {
		t.Errorf("a refused second install removed the first one's objects: %v", err)
	}

	if err := d.Uninstall(ctx, k.Kubeconfig, "mec-apps", "app-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments("mec-apps").Get(ctx, "app-1", metav1.GetOptions{}); err == nil {
		t.Error("deployment left after uninstall")
	}
	if err := d.Uninstall(ctx, k.Kubeconfig, "mec-apps", "app-1"); !errors.Is(err, kube.ErrNotFound) {
		t.Errorf("second uninstall: %v", err)
	}
	if _, err := d.Status(ctx, k.Kubeconfig, "mec-apps", "app-1"); !errors.Is(err, kube.ErrNotFound) {
		t.Errorf("status after uninstall: %v", err)
	}

	k.Stop()
	if err := d.Reachable(ctx, k.Kubeconfig); !errors.Is(err, kube.ErrUnreachable) {
		t.Errorf("reachable with the API server down: %v", err)
	}
	if err := d.Install(ctx, k.Kubeconfig, "mec-apps", "app-2", ch, values()); !errors.Is(err, kube.ErrUnreachable) {
		t.Errorf("install with the API server down: %v", err)
	}
}

// TestInstallWithMepAgentSidecar: a chart whose values name
// mepagent.image (kmepctl csar --mep-agent-image) gets the sidecar, with
// instantiate's mepagent values merged over the chart's (Helm keeps the
// chart's image), and the sidecar's app_instance_info.yaml names the
// instance.
func TestInstallWithMepAgentSidecar(t *testing.T) {
	k := testenv.NeedKube(t)
	ctx := context.Background()
	d := kube.New(kube.Options{})
	files := csartest.ChartFiles("demo")
	files["values.yaml"] = csartest.ChartValues("demo", "registry.local/sampleapp:2", "registry.local/mep-agent:3")
	ch, err := kube.LoadChart(csartest.Chart("demo", files))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.EnsureNamespace(ctx, k.Kubeconfig, "sidecar"); err != nil {
		t.Fatal(err)
	}
	if err := d.Install(ctx, k.Kubeconfig, "sidecar", "app-9", ch, values()); err != nil {
		t.Fatal(err)
	}
	cs := clientset(t, k.Kubeconfig)
	dep, err := cs.AppsV1().Deployments("sidecar").Get(ctx, "app-9", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs0 := dep.Spec.Template.Spec.Containers
	if len(cs0) != 2 || cs0[0].Image != "registry.local/sampleapp:2" || cs0[1].Name != "mep-agent" || cs0[1].Image != "registry.local/mep-agent:3" {
		t.Fatalf("containers: %+v", cs0)
	}
	env := map[string]string{}
	for _, e := range cs0[1].Env {
		env[e.Name] = e.Value
	}
	if env["KMEP_URL"] != "http://mep" || env["APP_INSTANCE_INFO"] != "/etc/mep-agent/app_instance_info.yaml" ||
		len(cs0[1].EnvFrom) != 1 || cs0[1].EnvFrom[0].SecretRef.Name != "app-9-aksk" {
		t.Errorf("sidecar env: %v, envFrom %+v", env, cs0[1].EnvFrom)
	}
	cm, err := cs.CoreV1().ConfigMaps("sidecar").Get(ctx, "app-9-mep-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info := cm.Data["app_instance_info.yaml"]
	for _, want := range []string{"appInstanceId: app-1", "serName: app-9", "host: app-9.sidecar.svc.cluster.local", "port: 8080"} {
		if !strings.Contains(info, want) {
			t.Errorf("app_instance_info.yaml lacks %q:\n%s", want, info)
		}
	}
	// Without mepagent.image: the five objects, one container.
	plain, err := kube.LoadChart(csartest.Chart("demo", csartest.ChartFiles("demo")))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Install(ctx, k.Kubeconfig, "sidecar", "app-10", plain, values()); err != nil {
		t.Fatal(err)
	}
	if dep, err := cs.AppsV1().Deployments("sidecar").Get(ctx, "app-10", metav1.GetOptions{}); err != nil || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Errorf("plain chart: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps("sidecar").Get(ctx, "app-10-mep-agent", metav1.GetOptions{}); err == nil {
		t.Error("plain chart made the sidecar's ConfigMap")
	}
}
