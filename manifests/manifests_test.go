package manifests_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// module is this repository's module path: ko:// images name its packages.
const module = "github.com/kmep-io/kmep"

// doc is one YAML document of a manifest file, decoded into its Go type.
type doc struct {
	file string
	kind string // apiVersion + " " + kind
	obj  any
}

func (d doc) String() string { return d.file + ": " + d.kind + " " + d.meta().GetName() }

func (d doc) meta() metav1.Object {
	m, ok := d.obj.(metav1.Object)
	if !ok {
		panic(fmt.Sprintf("%T has no ObjectMeta", d.obj))
	}
	return m
}

// newObject returns the Go type of a document's apiVersion and kind.
func newObject(kind string) (any, bool) {
	switch kind {
	case "serving.knative.dev/v1 Service":
		return new(knService), true
	case "serving.knative.dev/v1beta1 DomainMapping":
		return new(domainMapping), true
	case "eventing.knative.dev/v1 Broker":
		return new(eventingv1.Broker), true
	case "eventing.knative.dev/v1 Trigger":
		return new(eventingv1.Trigger), true
	case "sources.knative.dev/v1 SinkBinding":
		return new(sourcesv1.SinkBinding), true
	case "v1 Namespace":
		return new(corev1.Namespace), true
	case "v1 ConfigMap":
		return new(corev1.ConfigMap), true
	case "v1 Secret":
		return new(corev1.Secret), true
	case "v1 Service":
		return new(corev1.Service), true
	case "v1 ServiceAccount":
		return new(corev1.ServiceAccount), true
	case "apps/v1 Deployment":
		return new(appsv1.Deployment), true
	case "apps/v1 StatefulSet":
		return new(appsv1.StatefulSet), true
	case "apps/v1 DaemonSet":
		return new(appsv1.DaemonSet), true
	case "networking.k8s.io/v1 NetworkPolicy":
		return new(networkingv1.NetworkPolicy), true
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return new(rbacv1.ClusterRole), true
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return new(rbacv1.ClusterRoleBinding), true
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return new(rbacv1.RoleBinding), true
	case "traefik.io/v1alpha1 IngressRoute":
		return new(ingressRoute), true
	}
	return nil, false
}

// rawDocs splits data into its YAML documents, comment-only ones left out.
func rawDocs(t *testing.T, data []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out [][]byte
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) > 0 {
			out = append(out, raw)
		}
	}
}

// decodeAll decodes every document of data strictly (unknown and
// duplicate fields are errors) into its Go type.
func decodeAll(file string, data []byte) ([]doc, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []doc
	for i := 1; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		kind := tm.APIVersion + " " + tm.Kind
		obj, ok := newObject(kind)
		if !ok {
			return nil, fmt.Errorf("%s: document %d: unexpected %s", file, i, kind)
		}
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", file, i, kind, err)
		}
		out = append(out, doc{file: file, kind: kind, obj: obj})
	}
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// files lists the manifests: what `ko apply -f manifests/` applies
// (applied) and the examples and templates beside them.
func files(t *testing.T) (applied, other []string) {
	t.Helper()
	applied, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"examples", "secrets"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		other = append(other, m...)
	}
	if len(applied) < 8 || len(other) < 3 {
		t.Fatalf("manifests: applied %v, other %v", applied, other)
	}
	return applied, other
}

// loadDocs decodes the given files, failing the test on any error.
func loadDocs(t *testing.T, names []string) []doc {
	t.Helper()
	var out []doc
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := decodeAll(name, data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ds...)
	}
	return out
}

// knService is a Knative Service (serving.knative.dev/v1) as far as these
// tests read it (the fields the env and kn checks compare). Strict
// decoding refuses any field it does not know; serving_test.go decodes the
// same documents into knative's own type and runs its SetDefaults and
// Validate.
type knService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Template struct {
			metav1.ObjectMeta `json:"metadata,omitempty"`
			Spec              struct {
				corev1.PodSpec       `json:",inline"`
				ContainerConcurrency *int64 `json:"containerConcurrency,omitempty"`
				TimeoutSeconds       *int64 `json:"timeoutSeconds,omitempty"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// domainMapping is a serving.knative.dev/v1beta1 DomainMapping as far as
// these tests read it (see knService).
type domainMapping struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Ref struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
			Namespace  string `json:"namespace,omitempty"`
		} `json:"ref"`
		TLS *struct {
			SecretName string `json:"secretName"`
		} `json:"tls,omitempty"`
	} `json:"spec"`
}

// ingressRoute is a Traefik IngressRoute (traefik.io/v1alpha1) as far as
// the base URL's routes use it (see knService; ingress_test.go evaluates
// its rules).
type ingressRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		EntryPoints []string `json:"entryPoints,omitempty"`
		Routes      []struct {
			Kind     string `json:"kind"`
			Match    string `json:"match"`
			Priority int    `json:"priority,omitempty"`
			Services []struct {
				Kind string `json:"kind"`
				Name string `json:"name"`
			} `json:"services"`
		} `json:"routes"`
	} `json:"spec"`
}

// knative is what Knative's own types do: the webhook's defaulting and
// validation.
type knative interface {
	SetDefaults(context.Context)
	Validate(context.Context) *apis.FieldError
}

// TestEveryDocumentDecodesStrictlyAndValidates: every document of every
// manifest (examples and templates included) decodes strictly into its Go
// type; Knative objects pass their own SetDefaults and Validate as the
// webhooks run them on create; Kubernetes objects pass the checks the API
// server would make of names, selectors and probe ports.
func TestEveryDocumentDecodesStrictlyAndValidates(t *testing.T) {
	applied, other := files(t)
	docs := loadDocs(t, append(applied, other...))
	kinds := map[string]int{}
	for _, d := range docs {
		kinds[d.kind]++
		t.Run(d.String(), func(t *testing.T) {
			m := d.meta()
			if errs := validation.IsDNS1123Subdomain(m.GetName()); len(errs) > 0 {
				t.Errorf("name %q: %v", m.GetName(), errs)
			}
			clusterScoped := strings.HasSuffix(d.kind, " Namespace") || strings.HasSuffix(d.kind, " ClusterRole") ||
				strings.HasSuffix(d.kind, " ClusterRoleBinding")
			if clusterScoped != (m.GetNamespace() == "") {
				t.Errorf("namespace %q for %s", m.GetNamespace(), d.kind)
			}
			if k, ok := d.obj.(knative); ok {
				ctx := apis.WithinCreate(context.Background())
				k.SetDefaults(ctx)
				if fe := k.Validate(ctx); fe != nil {
					t.Errorf("Validate: %v", fe)
				}
				return
			}
			checkKubernetes(t, d)
		})
	}
	for _, want := range []string{"serving.knative.dev/v1 Service", "eventing.knative.dev/v1 Broker",
		"eventing.knative.dev/v1 Trigger", "sources.knative.dev/v1 SinkBinding", "apps/v1 Deployment",
		"apps/v1 DaemonSet", "apps/v1 StatefulSet", "v1 Secret", "v1 ConfigMap", "rbac.authorization.k8s.io/v1 ClusterRole"} {
		if kinds[want] == 0 {
			t.Errorf("no %s in the manifests", want)
		}
	}
}

// checkKubernetes checks what the API server would refuse of a workload:
// a selector that does not select its pod template, probes on ports the
// container does not name; and that every container has an image.
func checkKubernetes(t *testing.T, d doc) {
	t.Helper()
	var sel *metav1.LabelSelector
	var tmpl *corev1.PodTemplateSpec
	switch o := d.obj.(type) {
	case *appsv1.Deployment:
		sel, tmpl = o.Spec.Selector, &o.Spec.Template
	case *appsv1.StatefulSet:
		sel, tmpl = o.Spec.Selector, &o.Spec.Template
		if o.Spec.ServiceName == "" {
			t.Error("StatefulSet without serviceName")
		}
	case *appsv1.DaemonSet:
		sel, tmpl = o.Spec.Selector, &o.Spec.Template
	case *knService:
		checkPodSpec(t, &o.Spec.Template.Spec.PodSpec)
		for _, c := range o.Spec.Template.Spec.Containers {
			p := c.ReadinessProbe
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.InitialDelaySeconds != 0 {
				t.Errorf("container %s: readiness is not GET /healthz without initial delay", c.Name)
			}
		}
		if o.Spec.Template.Spec.ContainerConcurrency == nil {
			t.Error("no containerConcurrency")
		}
		for _, a := range []string{"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale"} {
			if o.Spec.Template.Annotations[a] == "" {
				t.Errorf("no %s annotation", a)
			}
		}
		return
	case *domainMapping:
		if o.Spec.Ref.Kind != "Service" || o.Spec.Ref.Name == "" {
			t.Errorf("DomainMapping to %+v", o.Spec.Ref)
		}
		return
	case *corev1.Service:
		if len(o.Spec.Selector) == 0 || len(o.Spec.Ports) == 0 {
			t.Error("Service without selector or ports")
		}
		return
	default:
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(tmpl.Labels)) {
		t.Errorf("selector %v does not select the template's labels %v (%v)", sel, tmpl.Labels, err)
	}
	checkPodSpec(t, &tmpl.Spec)
}

func checkPodSpec(t *testing.T, spec *corev1.PodSpec) {
	t.Helper()
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Error("enableServiceLinks is not false")
	}
	for _, c := range spec.Containers {
		if c.Image == "" {
			t.Errorf("container %s has no image", c.Name)
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
				t.Errorf("container %s probes port %q it does not name", c.Name, p.HTTPGet.Port.StrVal)
			}
		}
	}
}

// workload is a container of a manifest that runs one of kmep's binaries.
type workload struct {
	doc       doc
	container corev1.Container
	pkg       string // the import path of the ko:// image
}

// workloads lists the containers with ko:// images.
func workloads(t *testing.T, docs []doc) []workload {
	t.Helper()
	var out []workload
	add := func(d doc, spec *corev1.PodSpec) {
		for _, c := range spec.Containers {
			if pkg, ok := strings.CutPrefix(c.Image, "ko://"); ok {
				out = append(out, workload{doc: d, container: c, pkg: pkg})
			}
		}
	}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *knService:
			add(d, &o.Spec.Template.Spec.PodSpec)
		case *appsv1.Deployment:
			add(d, &o.Spec.Template.Spec)
		case *appsv1.StatefulSet:
			add(d, &o.Spec.Template.Spec)
		case *appsv1.DaemonSet:
			add(d, &o.Spec.Template.Spec)
		}
	}
	if len(out) == 0 {
		t.Fatal("no ko:// images")
	}
	return out
}

// goList runs go list with args in the module and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// koBuilds is .ko.yaml as far as the test reads it.
type koConfig struct {
	DefaultPlatforms []string `json:"defaultPlatforms"`
	Builds           []struct {
		ID      string   `json:"id"`
		Main    string   `json:"main"`
		Env     []string `json:"env"`
		Flags   []string `json:"flags"`
		Ldflags []string `json:"ldflags"`
	} `json:"builds"`
}

// TestKoImagesAreMainPackagesBuiltStatic: every ko:// image names a main
// package of this module; every binary of functions/, triggers/ and
// longrunning/ is deployed by a manifest; .ko.yaml builds each of them
// exactly once, static (CGO_ENABLED=0), stripped (-s -w), with -trimpath.
func TestKoImagesAreMainPackagesBuiltStatic(t *testing.T) {
	applied, other := files(t)
	images := map[string]bool{}
	for _, w := range workloads(t, loadDocs(t, append(applied, other...))) {
		images[w.pkg] = true
	}
	var pkgs []string
	for p := range images {
		if !strings.HasPrefix(p, module+"/") {
			t.Errorf("ko://%s is not in module %s", p, module)
		}
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, line := range goList(t, append([]string{"-f", "{{.ImportPath}} {{.Name}}"}, pkgs...)...) {
		path, name, _ := strings.Cut(line, " ")
		if name != "main" {
			t.Errorf("ko://%s is package %s, not a main package", path, name)
		}
	}
	for _, line := range goList(t, "-f", "{{.ImportPath}} {{.Name}}", module+"/functions/...", module+"/triggers/...", module+"/longrunning/...") {
		path, name, _ := strings.Cut(line, " ")
		if name == "main" && !images[path] {
			t.Errorf("binary %s has no manifest (no ko://%s image)", path, path)
		}
	}

	raw, err := os.ReadFile("../.ko.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ko koConfig
	if err := yaml.UnmarshalStrict(raw, &ko); err != nil {
		t.Fatalf(".ko.yaml: %v", err)
	}
	built := map[string]bool{}
	for _, b := range ko.Builds {
		pkg := module + "/" + strings.TrimPrefix(b.Main, "./")
		if built[pkg] {
			t.Errorf(".ko.yaml builds %s twice", pkg)
		}
		built[pkg] = true
		if !images[pkg] {
			t.Errorf(".ko.yaml build %s: no manifest uses ko://%s", b.ID, pkg)
		}
		if !slices.Contains(b.Env, "CGO_ENABLED=0") {
			t.Errorf(".ko.yaml build %s: not static (env %v)", b.ID, b.Env)
		}
		if !slices.Contains(b.Flags, "-trimpath") {
			t.Errorf(".ko.yaml build %s: no -trimpath (flags %v)", b.ID, b.Flags)
		}
		ld := strings.Fields(strings.Join(b.Ldflags, " "))
		if !slices.Contains(ld, "-s") || !slices.Contains(ld, "-w") {
			t.Errorf(".ko.yaml build %s: not stripped (ldflags %v)", b.ID, b.Ldflags)
		}
	}
	for _, p := range pkgs {
		if !built[p] {
			t.Errorf(".ko.yaml has no build for ko://%s", p)
		}
	}
}

// TestBrokerDeliveryMatchesTriggers: the Broker's delivery is each
// Trigger's, so Triggers created with kn (which cannot set delivery) and
// those of eventing.yaml retry and dead-letter alike.
func TestBrokerDeliveryMatchesTriggers(t *testing.T) {
	docs := loadDocs(t, []string{"eventing.yaml"})
	var b *eventingv1.Broker
	var trs []*eventingv1.Trigger
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *eventingv1.Broker:
			b = o
		case *eventingv1.Trigger:
			trs = append(trs, o)
		}
	}
	if b == nil || b.Spec.Delivery == nil || b.Spec.Delivery.DeadLetterSink == nil {
		t.Fatal("the Broker has no delivery with a dead-letter sink")
	}
	for _, tr := range trs {
		if !reflect.DeepEqual(tr.Spec.Delivery, b.Spec.Delivery) {
			t.Errorf("Trigger %s delivery %+v differs from the Broker's %+v", tr.Name, tr.Spec.Delivery, b.Spec.Delivery)
		}
	}
}
