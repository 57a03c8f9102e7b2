//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// nodeIP is the node's InternalIP: the mesh agent's DNS and the MEC host's
// address.
func nodeIP(t *testing.T, e env) string {
	return strings.TrimSpace(e.k(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`))
}

// images are the e2e pods' images by import path, as ko builds them
// (testdata/sidecar.yaml names both).
func images(t *testing.T, e env) map[string]string {
	cmd := exec.Command("bash", "-c", `. local/cluster/lib.sh && ko_resolve local/cluster/e2e/testdata/sidecar.yaml`)
	cmd.Dir = e.root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ko resolve: %v", err)
	}
	m := map[string]string{}
	for _, ref := range regexp.MustCompile(`image: (\S+/(sampleapp|cmd)[-@]\S*)`).FindAllStringSubmatch(string(out), -1) {
		switch {
		case strings.Contains(ref[1], "sampleapp"):
			m["sampleapp"] = ref[1]
		case strings.Contains(ref[1], "mepagent"):
			m["mepagent"] = ref[1]
		}
	}
	if m["sampleapp"] == "" || m["mepagent"] == "" {
		t.Fatalf("no sampleapp and mep-agent images in:\n%s", out)
	}
	return m
}

// e2eNamespace makes the namespace of make e2e's pods, kmep-e2e.
func e2eNamespace(t *testing.T, e env) {
	if !strings.Contains(e.kTry("get", "namespace", "kmep-e2e", "-o", "name"), "kmep-e2e") {
		e.k(t, "create", "namespace", "kmep-e2e")
	}
}

// runPod runs a pod of image with args to completion and returns its log;
// ok reports whether it succeeded.
func runPod(t *testing.T, e env, name, image string, args ...string) (string, bool) {
	e.kTry("delete", "pod", name, "-n", "kmep-e2e", "--wait=true", "--ignore-not-found")
	e.k(t, append([]string{"run", name, "-n", "kmep-e2e", "--image=" + image, "--restart=Never", "--"}, args...)...)
	defer e.kTry("delete", "pod", name, "-n", "kmep-e2e", "--wait=false")
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		phase := e.kTry("get", "pod", name, "-n", "kmep-e2e", "-o", "jsonpath={.status.phase}")
		if phase == "Succeeded" || phase == "Failed" {
			return e.kTry("logs", name, "-n", "kmep-e2e"), phase == "Succeeded"
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("pod %s did not finish within 2 min", name)
	return "", false
}

// meshDNS sets a DNS rule over Mm5 and queries the mesh agent's DNS (on
// the node's address, port 5353) from inside a pod until it answers it.
func meshDNS(t *testing.T, e env, say func(string, ...any)) {
	// A previous run's app (its rules) goes first.
	call(http.MethodPost, e.url+"/mepcfg/app_lcm/v1/applications/e2e-dns/terminate", e.admin, `{"gracefulTimeout":0}`, nil)
	provision(t, e, "e2e-dns")
	mustCall(t, http.StatusCreated, http.MethodPost, e.url+"/mepcfg/app_lcm/v1/applications/e2e-dns/appd_configuration", e.admin,
		`{"appName":"e2e-dns","appSupportMp1":true,"appTrafficRule":[],
"appDNSRule":[{"dnsRuleId":"dns-1","domainName":"e2e-dns.mesh.example","ipAddressType":"IP_V4","ipAddress":"10.0.0.9","ttl":30}]}`)
	set := time.Now()
	e2eNamespace(t, e)
	img := images(t, e)["sampleapp"]
	server := nodeIP(t, e) + ":5353"
	for i := 0; ; i++ {
		out, ok := runPod(t, e, fmt.Sprintf("e2e-dig-%d", i), img, "dig", "e2e-dns.mesh.example", server)
		if ok && strings.TrimSpace(out) == "10.0.0.9" {
			say("mesh DNS: a pod's query to %s answers the Mm5 DNS rule (e2e-dns.mesh.example → 10.0.0.9), %s after it was set",
				server, since(set))
			break
		}
		if time.Since(set) > 2*time.Minute {
			t.Fatalf("mesh DNS from a pod: %q (succeeded %v), want 10.0.0.9", out, ok)
		}
		time.Sleep(2 * time.Second)
	}
	mustCall(t, http.StatusOK, http.MethodPost, e.url+"/mepcfg/app_lcm/v1/applications/e2e-dns/terminate", e.admin, `{"gracefulTimeout":0}`)
}

// discover lists the services named name as app a sees them (state by id).
func discover(t *testing.T, e env, a mecApp, name string) map[string]string {
	t.Helper()
	b := mustCall(t, http.StatusOK, http.MethodGet, e.url+"/mep/mec_service_mgmt/v1/services?ser_name="+url.QueryEscape(name), a.token, "")
	var svcs []struct {
		SerInstanceID string `json:"serInstanceId"`
		State         string `json:"state"`
	}
	if err := json.Unmarshal(b, &svcs); err != nil {
		t.Fatalf("discovery: %v: %s", err, b)
	}
	m := map[string]string{}
	for _, s := range svcs {
		m[s.SerInstanceID] = s.State
	}
	return m
}

// waitFor polls cond every 500 ms until it is true or limit passes, and
// returns how long it took (failing t at the limit).
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return time.Since(start)
}

// sidecar runs the sample app with kmep's mep-agent as its sidecar
// (testdata/sidecar.yaml): the agent gets a token, registers the app's
// service, heartbeats it (ACTIVE past its liveness interval) and, when the
// pod is deleted, deregisters it.
func sidecar(t *testing.T, e env, say func(string, ...any)) {
	ak, sk := provision(t, e, "e2e-sidecar")
	e2eNamespace(t, e)
	e.kTry("delete", "secret", "e2e-sidecar-mep-credentials", "-n", "kmep-e2e")
	e.k(t, "create", "secret", "generic", "e2e-sidecar-mep-credentials", "-n", "kmep-e2e",
		"--from-literal=AK="+ak, "--from-literal=SK="+sk)
	watcher := newApp(t, e, "e2e-sidecar-watcher")
	start := time.Now()
	run(t, e.root, "./local/cluster/apply.sh", filepath.Join(e.root, "local/cluster/e2e/testdata/sidecar.yaml"))
	e.k(t, "rollout", "status", "deployment/e2e-sidecar", "-n", "kmep-e2e", "--timeout=300s")
	ready := since(start)
	took := waitFor(t, 2*time.Minute, "the sidecar's registration", func() bool {
		for _, st := range discover(t, e, watcher, "e2e-sidecar-svc") {
			if st == "ACTIVE" {
				return true
			}
		}
		return false
	})
	// Its liveness interval is 10 s: without heartbeats the reaper would
	// suspend it after 10 s plus the grace.
	time.Sleep(30 * time.Second)
	states := discover(t, e, watcher, "e2e-sidecar-svc")
	if len(states) != 1 {
		t.Fatalf("after 30 s: %d services e2e-sidecar-svc, want 1: %v", len(states), states)
	}
	for id, st := range states {
		if st != "ACTIVE" {
			t.Errorf("after 30 s of heartbeats: %s is %s, want ACTIVE", id, st)
		}
	}
	e.k(t, "delete", "deployment", "e2e-sidecar", "-n", "kmep-e2e", "--wait=false")
	gone := waitFor(t, 2*time.Minute, "deregistration on pod deletion", func() bool {
		return len(discover(t, e, watcher, "e2e-sidecar-svc")) == 0
	})
	say("sidecar (sample app + mep-agent): pod Ready %s after apply, its service ACTIVE %s later, still ACTIVE after 30 s of heartbeats; deregistered %s after the pod's deletion",
		ready, took.Round(time.Second), gone.Round(time.Second))
}

// instantiate registers this cluster as a MEC host (host-kubeconfig.sh),
// uploads a package whose chart runs the sample app with the mep-agent
// sidecar (kmepctl csar), distributes and instantiates it through the base
// URL, waits for the app's pod to be Ready and its service registered,
// then terminates it and checks that the release, its objects, its
// service and its credentials are gone. Then the same with an image that
// cannot be pulled: FAILED with the kubelet's reason, and terminate
// still cleans up.
func instantiate(t *testing.T, e env, say func(string, ...any)) {
	host := nodeIP(t, e)
	cmd := exec.Command("sh", "local/kind/host-kubeconfig.sh", host)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig, "KMEP_URL="+e.url, "PATH="+filepath.Dir(e.kubectl)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("host-kubeconfig.sh: %v\n%s", err, out)
	}
	img := images(t, e)
	csar, err := exec.Command(filepath.Join(e.root, "bin", "kmepctl"), "csar", "--name", "e2eapp",
		"--image", img["sampleapp"], "--mep-agent-image", img["mepagent"]).Output()
	if err != nil {
		t.Fatalf("kmepctl csar: %v", err)
	}
	const tenant = "e2e"
	base := e.url + "/lcmcontroller/v1/tenants/" + tenant
	call(http.MethodDelete, base+"/packages/e2e-pkg", e.admin, "", nil)
	// The upload, retried while it is a 503 (packages may be waking from
	// zero and reaching MinIO).
	waitFor(t, 2*time.Minute, "the package upload", func() bool {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("packageId", "e2e-pkg")
		fw, _ := mw.CreateFormFile("package", "e2eapp.csar")
		fw.Write(csar)
		mw.Close()
		req, _ := http.NewRequest(http.MethodPost, base+"/packages", &body)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Logf("upload: %v", err)
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case http.StatusCreated:
			return true
		case http.StatusServiceUnavailable:
			t.Logf("upload: %s %s", resp.Status, b)
			return false
		}
		t.Fatalf("upload: %s %s", resp.Status, b)
		return false
	})
	mustCall(t, http.StatusOK, http.MethodPost, base+"/packages/e2e-pkg/distribute", e.admin, fmt.Sprintf(`{"hostIp":[%q]}`, host))
	watcher := newApp(t, e, "e2e-instance-watcher")

	type view struct {
		State   string `json:"state"`
		Reason  string `json:"reason"`
		Release *struct {
			Ready   bool   `json:"ready"`
			Message string `json:"message"`
		} `json:"release"`
		ClusterError string `json:"clusterError"`
	}
	get := func(app string) (int, view) {
		status, b, err := call(http.MethodGet, base+"/app_instances/"+app, e.admin, "", nil)
		var v view
		if err == nil && status == http.StatusOK {
			json.Unmarshal(b, &v)
		}
		return status, v
	}
	inst := func(app string, params string) {
		call(http.MethodPost, base+"/app_instances/"+app+"/terminate", e.admin, `{"gracefulTimeout":0}`, nil) // a previous run's
		waitFor(t, 2*time.Minute, "a previous "+app+" gone", func() bool { s, _ := get(app); return s == http.StatusNotFound })
		mustCall(t, http.StatusAccepted, http.MethodPost, base+"/app_instances/"+app+"/instantiate", e.admin,
			fmt.Sprintf(`{"hostIp":%q,"appName":"e2eapp","packageId":"e2e-pkg","parameters":%s}`, host, params))
	}
	terminate := func(app string) time.Duration {
		start := time.Now()
		mustCall(t, http.StatusAccepted, http.MethodPost, base+"/app_instances/"+app+"/terminate", e.admin, `{"gracefulTimeout":0}`)
		waitFor(t, 3*time.Minute, app+" terminated", func() bool {
			s, _ := get(app)
			// The release's objects and Helm's record (a Secret
			// sh.helm.release.v1.APP.vN) are all named after it.
			return s == http.StatusNotFound &&
				!strings.Contains(e.kTry("get", "all,secret,configmap,serviceaccount", "-n", "mec-apps", "-o", "name"), app)
		})
		return time.Since(start)
	}

	// The good one.
	inst("e2e-app", `{}`)
	toReady := waitFor(t, 5*time.Minute, "e2e-app Ready", func() bool {
		_, v := get("e2e-app")
		if v.State == "FAILED" {
			t.Fatalf("e2e-app FAILED: %s", v.Reason)
		}
		return v.State == "INSTANTIATED" && v.Release != nil && v.Release.Ready
	})
	registered := waitFor(t, 2*time.Minute, "e2e-app's sidecar registration", func() bool {
		for _, st := range discover(t, e, watcher, "e2e-app") {
			if st == "ACTIVE" {
				return true
			}
		}
		return false
	})
	gone := terminate("e2e-app")
	if n := len(discover(t, e, watcher, "e2e-app")); n != 0 {
		t.Errorf("after terminate: %d services e2e-app, want 0", n)
	}
	if status, b, _ := call(http.MethodGet, e.url+"/mep/appMng/v1/applications/e2e-app/confs", e.admin, "", nil); status != http.StatusNotFound {
		t.Errorf("after terminate: the credentials: %d %s, want 404", status, b)
	}
	say("instantiate into this cluster: request → INSTANTIATED with the app's pod Ready in %s, its sidecar's service ACTIVE %s later; terminate → release, objects, service and credentials gone in %s",
		toReady.Round(time.Second), registered.Round(time.Second), gone.Round(time.Second))

	// An image that cannot be pulled.
	missing := strings.SplitN(img["sampleapp"], "@", 2)[0] + ":no-such-tag"
	inst("e2e-badimage", fmt.Sprintf(`{"image":%q}`, missing))
	var reason string
	failed := waitFor(t, 5*time.Minute, "e2e-badimage FAILED", func() bool {
		_, v := get("e2e-badimage")
		reason = v.Reason
		return v.State == "FAILED"
	})
	if !strings.Contains(reason, "ErrImagePull") && !strings.Contains(reason, "ImagePullBackOff") {
		t.Errorf("e2e-badimage FAILED with %q, want the kubelet's ErrImagePull or ImagePullBackOff", reason)
	}
	gone = terminate("e2e-badimage")
	say("instantiate with an image that cannot be pulled: FAILED in %s (%s); terminate cleaned up in %s",
		failed.Round(time.Second), reason, gone.Round(time.Second))
}

// deployNamesNotReady applies a Trigger whose Broker does not exist and
// runs make deploy's script: it must fail naming the Trigger and its
// condition.
func deployNamesNotReady(t *testing.T, e env, say func(string, ...any)) {
	broken := `apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: e2e-broken, namespace: kmep}
spec:
  broker: no-such-broker
  subscriber:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: notify}
`
	apply := exec.Command(e.kubectl, "--kubeconfig", e.kubeconfig, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(broken)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("apply the broken Trigger: %v\n%s", err, out)
	}
	defer e.kTry("delete", "trigger", "e2e-broken", "-n", "kmep")
	cmd := exec.Command("./local/cluster/deploy.sh")
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "KMEP_DEPLOY_EVENTING_TIMEOUT=20")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("deploy.sh passed with a Trigger on a missing Broker:\n%s", out)
	}
	line := regexp.MustCompile(`trigger e2e-broken: Ready=\S+ \([^)]*\) on Broker no-such-broker, which does not exist`).Find(out)
	if line == nil {
		t.Fatalf("deploy.sh failed without naming the Trigger:\n%s", out)
	}
	say("deploy with a Trigger on a missing Broker: fails naming it: %s", line)
}
