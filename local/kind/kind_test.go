// Package kind_test checks the kind/ko/kn scripts of local/kind, which CI
// cannot run (they need Docker and the internet): the kn flags of
// deploy-kn.sh against the manifests, and the Secrets secrets.sh makes.
package kind_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	"sigs.k8s.io/yaml"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
)

// knService is a Knative Service as far as this test reads it (the
// manifests' own tests validate it fully).
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

// decode reads the documents of file of kind into fresh values from mk.
func decode[T any](t *testing.T, file, kind string) []*T {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*T
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &tm); err != nil {
			t.Fatal(err)
		}
		if tm.APIVersion+" "+tm.Kind != kind {
			continue
		}
		v := new(T)
		if err := yaml.UnmarshalStrict(raw, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, v)
	}
}

// commands returns the kn commands of a shell script: continuation lines
// joined, each command after the last "||" of its line, split into words
// (double quotes group words; nothing else is interpreted).
func commands(t *testing.T, script string) [][]string {
	t.Helper()
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	var out [][]string
	for _, line := range strings.Split(text, "\n") {
		if i := strings.LastIndex(line, "||"); i >= 0 {
			line = line[i+2:]
		}
		words, err := splitWords(line)
		if err != nil {
			t.Fatalf("%s: %v: %s", script, err, line)
		}
		if len(words) > 0 && words[0] == "kn" {
			out = append(out, words)
		}
	}
	return out
}

func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r == '#' && !quoted && !in:
			return words, nil
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quoted {
		return nil, errors.New("unbalanced quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// knFlags are the flags of the kn commands the script may use, and
// whether each takes a value (kn v1.x: service apply, broker create,
// trigger create, source binding create).
var knFlags = map[string]map[string]bool{
	"service apply": {"-n": true, "--image": true, "--service-account": true, "--label-service": true,
		"--label-revision": true, "--annotation-revision": true, "--scale-min": true, "--scale-max": true,
		"--concurrency-target": true, "--concurrency-limit": true, "--probe-readiness": true,
		"--probe-readiness-opts": true, "--env-value-from": true, "--env": true, "--request": true,
		"--limit": true, "--cluster-local": false, "--timeout": true},
	"broker create":         {"-n": true, "--class": true, "--retry": true, "--backoff-policy": true, "--backoff-delay": true, "--dl-sink": true},
	"trigger create":        {"-n": true, "--broker": true, "--filter": true, "--sink": true},
	"source binding create": {"-n": true, "--subject": true, "--sink": true},
}

// kn is one parsed kn command: its subcommand, its name argument and its
// flags (in order of appearance per flag).
type kn struct {
	sub, name string
	flags     map[string][]string
}

func parseKn(t *testing.T, words []string) (kn, bool) {
	t.Helper()
	var c kn
	rest := words[1:]
	for sub := range knFlags {
		parts := strings.Fields(sub)
		if len(rest) > len(parts) && slices.Equal(rest[:len(parts)], parts) {
			c.sub, c.name, rest = sub, rest[len(parts)], rest[len(parts)+1:]
		}
	}
	if c.sub == "" {
		return c, false // describe and the like
	}
	c.flags = map[string][]string{}
	known := knFlags[c.sub]
	for i := 0; i < len(rest); i++ {
		f := rest[i]
		takes, ok := known[f]
		if !ok {
			t.Errorf("kn %s %s: flag %s is not one of kn's (or not expected here)", c.sub, c.name, f)
			continue
		}
		if !takes {
			c.flags[f] = append(c.flags[f], "")
			continue
		}
		if i+1 >= len(rest) {
			t.Errorf("kn %s %s: %s without a value", c.sub, c.name, f)
			break
		}
		c.flags[f] = append(c.flags[f], rest[i+1])
		i++
	}
	return c, true
}

// one returns the single value of flag f.
func (c kn) one(t *testing.T, f string) string {
	t.Helper()
	if len(c.flags[f]) != 1 {
		t.Errorf("kn %s %s: %s given %d times", c.sub, c.name, f, len(c.flags[f]))
		return ""
	}
	return c.flags[f][0]
}

// pairs turns name=value flag values into a map.
func pairs(t *testing.T, vals []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			t.Errorf("%q is not name=value", v)
		}
		m[k] = val
	}
	return m
}

func resources(t *testing.T, vals []string) corev1.ResourceList {
	t.Helper()
	var all []string
	for _, v := range vals {
		all = append(all, strings.Split(v, ",")...)
	}
	out := corev1.ResourceList{}
	for k, v := range pairs(t, all) {
		out[corev1.ResourceName(k)] = mustQuantity(t, v)
	}
	return out
}

// TestKnServicesMatchManifests: each kn service apply of deploy-kn.sh
// deploys what manifests/functions.yaml and triggers.yaml declare (image,
// service account, labels, annotations and scale bounds, concurrency,
// readiness probe, every env variable with its source, resources), and
// each manifest Service has exactly one such command.
func TestKnServicesMatchManifests(t *testing.T) {
	var svcs []*knService
	for _, f := range []string{"../../manifests/functions.yaml", "../../manifests/triggers.yaml"} {
		svcs = append(svcs, decode[knService](t, f, "serving.knative.dev/v1 Service")...)
	}
	if len(svcs) < 9 {
		t.Fatalf("%d Knative Services in the manifests", len(svcs))
	}
	cmds := map[string]kn{}
	for _, w := range commands(t, "deploy-kn.sh") {
		c, ok := parseKn(t, w)
		if !ok || c.sub != "service apply" {
			continue
		}
		if _, dup := cmds[c.name]; dup {
			t.Errorf("kn service apply %s twice", c.name)
		}
		cmds[c.name] = c
	}
	for _, s := range svcs {
		t.Run(s.Name, func(t *testing.T) {
			c, ok := cmds[s.Name]
			if !ok {
				t.Fatal("no kn service apply")
			}
			delete(cmds, s.Name)
			tmpl := s.Spec.Template
			ctr := tmpl.Spec.Containers[0]
			if got := c.one(t, "-n"); got != s.Namespace {
				t.Errorf("namespace %q, manifest %q", got, s.Namespace)
			}
			if got, want := c.one(t, "--image"), "$(ko build "+strings.TrimPrefix(ctr.Image, "ko://")+")"; got != want {
				t.Errorf("image %q, want %q", got, want)
			}
			if got := c.one(t, "--service-account"); got != tmpl.Spec.ServiceAccountName {
				t.Errorf("service account %q, manifest %q", got, tmpl.Spec.ServiceAccountName)
			}
			svcLabels := pairs(t, c.flags["--label-service"])
			if _, local := c.flags["--cluster-local"]; local {
				svcLabels["networking.knative.dev/visibility"] = "cluster-local"
			}
			if !maps.Equal(svcLabels, s.Labels) {
				t.Errorf("service labels %v, manifest %v", svcLabels, s.Labels)
			}
			if got := pairs(t, c.flags["--label-revision"]); !maps.Equal(got, tmpl.Labels) {
				t.Errorf("revision labels %v, manifest %v", got, tmpl.Labels)
			}
			ann := pairs(t, c.flags["--annotation-revision"])
			for flag, key := range map[string]string{"--scale-min": "min-scale", "--scale-max": "max-scale", "--concurrency-target": "target"} {
				if v := c.flags[flag]; len(v) > 0 {
					ann["autoscaling.knative.dev/"+key] = c.one(t, flag)
				}
			}
			if !maps.Equal(ann, tmpl.Annotations) {
				t.Errorf("annotations %v, manifest %v", ann, tmpl.Annotations)
			}
			if cc := tmpl.Spec.ContainerConcurrency; cc == nil || c.one(t, "--concurrency-limit") != strconv.FormatInt(*cc, 10) {
				t.Errorf("concurrency limit %v, manifest %v", c.flags["--concurrency-limit"], cc)
			}
			// kn's --timeout is the revision's timeoutSeconds (unset: Knative's default).
			if ts := tmpl.Spec.TimeoutSeconds; (ts == nil) != (len(c.flags["--timeout"]) == 0) ||
				ts != nil && c.one(t, "--timeout") != strconv.FormatInt(*ts, 10) {
				t.Errorf("timeout %v, manifest %v", c.flags["--timeout"], ts)
			}
			p := ctr.ReadinessProbe
			if p == nil || p.HTTPGet == nil || c.one(t, "--probe-readiness") != "http:::"+p.HTTPGet.Path ||
				c.one(t, "--probe-readiness-opts") != fmt.Sprintf("InitialDelaySeconds=%d", p.InitialDelaySeconds) {
				t.Errorf("readiness %v %v, manifest %+v", c.flags["--probe-readiness"], c.flags["--probe-readiness-opts"], p)
			}
			env := pairs(t, c.flags["--env-value-from"])
			for k, v := range pairs(t, c.flags["--env"]) {
				env[k] = "value:" + v
			}
			want := map[string]string{}
			for _, e := range ctr.Env {
				switch {
				case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
					want[e.Name] = "cm:" + e.ValueFrom.ConfigMapKeyRef.Name + ":" + e.ValueFrom.ConfigMapKeyRef.Key
				case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
					want[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + ":" + e.ValueFrom.SecretKeyRef.Key
				case e.ValueFrom == nil:
					want[e.Name] = "value:" + e.Value
				default:
					t.Errorf("env %s: kn cannot express %+v", e.Name, e.ValueFrom)
				}
			}
			if !maps.Equal(env, want) {
				t.Errorf("env %v\nmanifest %v", env, want)
			}
			if got := resources(t, c.flags["--request"]); !equalResources(got, ctr.Resources.Requests) {
				t.Errorf("requests %v, manifest %v", got, ctr.Resources.Requests)
			}
			if got := resources(t, c.flags["--limit"]); !equalResources(got, ctr.Resources.Limits) {
				t.Errorf("limits %v, manifest %v", got, ctr.Resources.Limits)
			}
		})
	}
	for name := range cmds {
		t.Errorf("kn service apply %s: no such Service in the manifests", name)
	}
}

func equalResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}

// TestKnEventingMatchesManifests: the kn broker, trigger and source
// binding commands create what manifests/eventing.yaml declares; kn
// triggers have no delivery flags, so the Broker's delivery (which the
// manifests' own test keeps equal to every Trigger's) is what they get.
func TestKnEventingMatchesManifests(t *testing.T) {
	const file = "../../manifests/eventing.yaml"
	brokers := decode[eventingv1.Broker](t, file, "eventing.knative.dev/v1 Broker")
	triggers := decode[eventingv1.Trigger](t, file, "eventing.knative.dev/v1 Trigger")
	bindings := decode[sourcesv1.SinkBinding](t, file, "sources.knative.dev/v1 SinkBinding")
	if len(brokers) != 1 || len(triggers) == 0 || len(bindings) != 1 {
		t.Fatalf("eventing.yaml: %d brokers, %d triggers, %d bindings", len(brokers), len(triggers), len(bindings))
	}
	got := map[string][]kn{}
	for _, w := range commands(t, "deploy-kn.sh") {
		if c, ok := parseKn(t, w); ok && c.sub != "service apply" {
			got[c.sub] = append(got[c.sub], c)
		}
	}

	b := brokers[0]
	if len(got["broker create"]) != 1 {
		t.Fatalf("%d kn broker create", len(got["broker create"]))
	}
	bc := got["broker create"][0]
	d := b.Spec.Delivery
	want := map[string]string{"name": b.Name, "-n": b.Namespace, "--class": b.Annotations["eventing.knative.dev/broker.class"],
		"--retry": strconv.Itoa(int(*d.Retry)), "--backoff-policy": string(*d.BackoffPolicy), "--backoff-delay": *d.BackoffDelay,
		"--dl-sink": "ksvc:" + d.DeadLetterSink.Ref.Name}
	have := map[string]string{"name": bc.name}
	for f := range bc.flags {
		have[f] = bc.one(t, f)
	}
	if !maps.Equal(have, want) || d.DeadLetterSink.Ref.Kind != "Service" {
		t.Errorf("kn broker create %v\nmanifest %v", have, want)
	}

	var wantT, haveT []string
	for _, tr := range triggers {
		if len(tr.Spec.Filters) != 1 || len(tr.Spec.Filters[0].Exact) != 1 || tr.Spec.Subscriber.Ref == nil {
			t.Fatalf("Trigger %s: kn can express one exact filter and a Service subscriber only", tr.Name)
		}
		var filter []string
		for k, v := range tr.Spec.Filters[0].Exact {
			filter = append(filter, k+"="+v)
		}
		wantT = append(wantT, fmt.Sprintf("%s -n %s --broker %s --filter %v --sink ksvc:%s", tr.Name, tr.Namespace,
			tr.Spec.Broker, filter, tr.Spec.Subscriber.Ref.Name))
	}
	for _, c := range got["trigger create"] {
		haveT = append(haveT, fmt.Sprintf("%s -n %s --broker %s --filter %v --sink %s", c.name, c.one(t, "-n"),
			c.one(t, "--broker"), c.flags["--filter"], c.one(t, "--sink")))
	}
	sort.Strings(wantT)
	sort.Strings(haveT)
	if !reflect.DeepEqual(haveT, wantT) {
		t.Errorf("kn triggers\n%s\nmanifest\n%s", strings.Join(haveT, "\n"), strings.Join(wantT, "\n"))
	}

	sb := bindings[0]
	if len(got["source binding create"]) != 1 {
		t.Fatalf("%d kn source binding create", len(got["source binding create"]))
	}
	sc := got["source binding create"][0]
	subject := sb.Spec.Subject.Kind + ":" + sb.Spec.Subject.APIVersion + ":" + sb.Spec.Subject.Name
	if sc.name != sb.Name || sc.one(t, "-n") != sb.Namespace || sc.one(t, "--subject") != subject ||
		sc.one(t, "--sink") != "broker:"+sb.Spec.Sink.Ref.Name || sb.Spec.Sink.Ref.Kind != "Broker" {
		t.Errorf("kn source binding create %s %v, manifest %+v", sc.name, sc.flags, sb.Spec)
	}
}

// TestSecretsScript runs secrets.sh and checks that it makes every Secret
// and key of manifests/secrets/secrets.yaml, with values kmep's own
// parsers accept, and different values on every run.
func TestSecretsScript(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("secrets.sh needs openssl, which is not on PATH")
	}
	template := decode[corev1.Secret](t, "../../manifests/secrets/secrets.yaml", "v1 Secret")
	run := func() map[string]map[string]string {
		out, err := exec.Command("sh", "secrets.sh").Output()
		if err != nil {
			t.Fatalf("secrets.sh: %v", err)
		}
		f, err := os.CreateTemp(t.TempDir(), "secrets-*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(out); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got := map[string]map[string]string{}
		for _, s := range decode[corev1.Secret](t, f.Name(), "v1 Secret") {
			if s.Namespace != "kmep" {
				t.Errorf("Secret %s in namespace %q", s.Name, s.Namespace)
			}
			got[s.Name] = s.StringData
		}
		return got
	}
	first, second := run(), run()
	if len(first) != len(template) {
		t.Errorf("secrets.sh makes %d Secrets, the template has %d", len(first), len(template))
	}
	for _, tmpl := range template {
		got, ok := first[tmpl.Name]
		if !ok {
			t.Errorf("secrets.sh makes no Secret %s", tmpl.Name)
			continue
		}
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tmpl.StringData))) {
			t.Errorf("Secret %s: keys %v, template %v", tmpl.Name, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tmpl.StringData)))
		}
		for k, v := range got {
			if v == "" || v == second[tmpl.Name][k] {
				t.Errorf("Secret %s key %s: %q is empty or the same on two runs", tmpl.Name, k, v)
			}
		}
	}
	s := first["kmep-secrets"]
	if keys, err := auth.ParseSigningKeys([]byte(s["KMEP_TOKEN_SIGNING_KEY"])); err != nil || len(keys) != 1 {
		t.Errorf("KMEP_TOKEN_SIGNING_KEY: %d keys, %v", len(keys), err)
	}
	if _, err := store.ParseEncryptionKey(s["KMEP_ENCRYPTION_KEY"]); err != nil {
		t.Errorf("KMEP_ENCRYPTION_KEY: %v", err)
	}
	if _, err := auth.NewAdmin(s["KMEP_ADMIN_TOKEN"]); err != nil {
		t.Errorf("KMEP_ADMIN_TOKEN: %v", err)
	}
	if b, err := hex.DecodeString(first["kmep-mesh"]["KMEP_MESH_PSK"]); err != nil || len(b) != 32 {
		t.Errorf("KMEP_MESH_PSK: %d bytes, %v; want 64 hex digits", len(b), err)
	}
	s3 := first["kmep-s3"]
	if len(s3["S3_ACCESS_KEY"]) < 3 || len(s3["S3_SECRET_KEY"]) < 8 {
		t.Errorf("S3 credentials too short for MinIO's root user (3) and password (8): %d, %d", len(s3["S3_ACCESS_KEY"]), len(s3["S3_SECRET_KEY"]))
	}
}

func mustQuantity(t *testing.T, s string) resource.Quantity {
	t.Helper()
	q, err := resource.ParseQuantity(s)
	if err != nil {
		t.Errorf("quantity %q: %v", s, err)
	}
	return q
}
