//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// env is the running cluster as env.sh prints it.
type env struct {
	root, kubeconfig, kubectl, url, admin, state, cache string
}

// TestLocalCluster is make e2e. KMEP_E2E_KEEP=1 leaves the cluster up
// (and reuses one that is up); the measurements run either way.
func TestLocalCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("make e2e needs root (containerd, the kubelet, kube-proxy)")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	mem := sampleMemory()
	var report []string
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		report = append(report, line)
		fmt.Println("e2e: " + line)
	}
	defer func() {
		fmt.Println("\ne2e: what it measured")
		for _, l := range report {
			fmt.Println("  " + l)
		}
	}()

	keep := os.Getenv("KMEP_E2E_KEEP") != ""
	start := time.Now()
	run(t, root, "./local/cluster/up.sh")
	say("cluster-up: %s, peak memory in use %s (machine-wide, above the %s in use before)",
		since(start), mib(mem.peak()), mib(mem.base))
	if !keep {
		t.Cleanup(func() {
			start := time.Now()
			run(t, root, "./local/cluster/down.sh")
			say("cluster-down: %s", since(start))
			run(t, root, "./local/cluster/down.sh") // safe twice
			e := clusterEnvAfterDown(t, root)
			for _, left := range leftovers(e) {
				t.Errorf("left behind by cluster-down: %s", left)
			}
		})
	}
	start = time.Now()
	run(t, root, "./local/cluster/deploy.sh")
	say("deploy: %s", since(start))
	e := clusterEnv(t, root)
	start = time.Now()
	run(t, root, "./local/cluster/smoke.sh")
	say("smoke (README walkthrough through %s): passed in %s", e.url, since(start))

	t.Run("ScaleToZero", func(t *testing.T) { scaleToZero(t, e, say) })
	t.Run("PodKill", func(t *testing.T) { podKill(t, e, say) })
	t.Run("MeshDNS", func(t *testing.T) { meshDNS(t, e, say) })
	t.Run("Sidecar", func(t *testing.T) { sidecar(t, e, say) })
	t.Run("Instantiate", func(t *testing.T) { instantiate(t, e, say) })
	t.Run("DeployNamesNotReady", func(t *testing.T) { deployNamesNotReady(t, e, say) })
	t.Run("Eventing", func(t *testing.T) { eventing(t, e, say) })
	say("total: %s; peak memory in use %s", since(mem.started), mib(mem.peak()))
}

// scaleToZero lets lcm (min-scale 0) go to zero pods, then wakes it with
// a request through the base URL (the activator holds it until a pod is
// ready), ten times; then the same request to the warm pod.
func scaleToZero(t *testing.T, e env, say func(string, ...any)) {
	// The local cluster scales to zero after 6 s idle plus a 6 s grace
	// (Knative's minimums) for this test, and gets its settings back after.
	orig := e.k(t, "get", "configmap", "config-autoscaler", "-n", "knative-serving", "-o", "json")
	t.Cleanup(func() {
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if json.Unmarshal([]byte(orig), &cm) == nil {
			patch, _ := json.Marshal(map[string]any{"data": map[string]any{
				"stable-window": nullIfEmpty(cm.Data["stable-window"]), "scale-to-zero-grace-period": nullIfEmpty(cm.Data["scale-to-zero-grace-period"])}})
			e.kTry("patch", "configmap", "config-autoscaler", "-n", "knative-serving", "--type", "merge", "-p", string(patch))
		}
	})
	e.k(t, "patch", "configmap", "config-autoscaler", "-n", "knative-serving", "--type", "merge",
		"-p", `{"data":{"stable-window":"6s","scale-to-zero-grace-period":"6s"}}`)

	const wakes = 10
	// No token: lcm itself answers 401 with a ProblemDetails, so the first
	// byte comes from a running lcm pod.
	url := e.url + "/mepcfg/app_lcm/v1/applications/e2e/terminate"
	var cold, warm []time.Duration
	for i := range wakes {
		waitZero(t, e, "lcm", 5*time.Minute)
		d := firstByte(t, url, http.StatusUnauthorized)
		cold = append(cold, d)
		for range 3 {
			warm = append(warm, firstByte(t, url, http.StatusUnauthorized))
		}
		t.Logf("wake %d: %s from zero", i+1, d)
	}
	ms := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	say("scale to zero (lcm, %d wakes through the activator): cold start p50 %s, max %s; warm pod p50 %s, max %s",
		wakes, ms(pct(cold, 50)), ms(slices.Max(cold)), ms(pct(warm, 50)), ms(slices.Max(warm)))
}

// podKill deletes one of services' two pods (min-scale 2) while 8 clients
// discover services for 20 s, and counts the requests that failed.
func podKill(t *testing.T, e env, say func(string, ...any)) {
	token := appToken(t, e, "e2e-podkill")
	pods := strings.Fields(e.k(t, "get", "pods", "-n", "kmep", "-l", "serving.knative.dev/service=services",
		"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(pods) < 2 {
		t.Fatalf("services has %d running pods, want its min-scale of 2: %v", len(pods), pods)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var total, failed atomic.Int64
	var mu sync.Mutex
	failures := map[string]int{}
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, e.url+"/mep/mec_service_mgmt/v1/services", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if ctx.Err() != nil && err != nil {
					return
				}
				total.Add(1)
				what := ""
				if err != nil {
					what = err.Error()
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						what = resp.Status
					}
				}
				if what != "" {
					failed.Add(1)
					mu.Lock()
					failures[what]++
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(5 * time.Second)
	e.k(t, "delete", "pod", "-n", "kmep", pods[0], "--wait=false")
	wg.Wait()
	say("pod kill (services, min-scale 2, %s deleted 5 s into 20 s of discovery by 8 clients): %d requests, %d failed",
		pods[0], total.Load(), failed.Load())
	for what, n := range failures {
		t.Errorf("%d requests failed: %s", n, what)
	}
	// Back to two ready pods before anything else runs.
	e.k(t, "wait", "ksvc/services", "-n", "kmep", "--for=condition=Ready", "--timeout=120s")
}

// appToken provisions app's AK/SK over Mm5 and returns a token for it.
func appToken(t *testing.T, e env, app string) string {
	ak, sk := provision(t, e, app)
	tok, err := exec.Command(filepath.Join(e.root, "bin", "kmepctl"), "token", "--ak", ak, "--sk", sk, "--url", e.url+"/mep/token").Output()
	if err != nil {
		t.Fatalf("kmepctl token: %v", err)
	}
	return strings.TrimSpace(string(tok))
}

// provision makes an AK/SK and provisions it for app over Mm5.
func provision(t *testing.T, e env, app string) (ak, sk string) {
	kmepctl := filepath.Join(e.root, "bin", "kmepctl")
	out, err := exec.Command(kmepctl, "keygen").Output()
	if err != nil {
		t.Fatalf("kmepctl keygen: %v", err)
	}
	kv := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "="); ok {
			kv[k] = strings.Trim(v, `'"`)
		}
	}
	body := fmt.Sprintf(`{"authInfo":{"credentials":{"accessKeyId":%q,"secretKey":%q}},"appInfo":{"appName":"e2e","requiredServices":[]}}`, kv["AK"], kv["SK"])
	if status, b, err := call(http.MethodPut, e.url+"/mep/appMng/v1/applications/"+app+"/confs", e.admin, body, nil); err != nil || status/100 != 2 {
		t.Fatalf("provision %s: %d %v %s", app, status, err, b)
	}
	return kv["AK"], kv["SK"]
}

// waitZero waits until ksvc's Deployment is scaled to zero and none of
// its pods is ready.
func waitZero(t *testing.T, e env, ksvc string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		replicas := e.kTry("get", "deployment", "-n", "kmep", "-l", "serving.knative.dev/service="+ksvc,
			"-o", "jsonpath={.items[*].spec.replicas}")
		ready := e.kTry("get", "pods", "-n", "kmep", "-l", "serving.knative.dev/service="+ksvc,
			"-o", `jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}`)
		// Every revision's Deployment (old ones stay, scaled to zero).
		zero := replicas != ""
		for _, r := range strings.Fields(replicas) {
			zero = zero && r == "0"
		}
		if zero && !strings.Contains(ready, "True") {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s did not scale to zero within %s", ksvc, limit)
}

// firstByte sends a POST to url and returns the time from sending it to
// the first byte of the answer, which must have status want and be a
// ProblemDetails (so it came from the function, not the ingress).
func firstByte(t *testing.T, url string, want int) time.Duration {
	var sent, first time.Time
	trace := &httptrace.ClientTrace{
		WroteRequest:         func(httptrace.WroteRequestInfo) { sent = time.Now() },
		GotFirstResponseByte: func() { first = time.Now() },
	}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
		http.MethodPost, url, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want || !bytes.Contains(body, []byte(`"status":`+strconv.Itoa(want))) {
		t.Fatalf("POST %s: %s %s, want %d with a ProblemDetails", url, resp.Status, body, want)
	}
	return first.Sub(sent)
}

// leftovers lists what of the cluster is still on the machine.
func leftovers(e env) []string {
	var out []string
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "registry"} {
		if b, _ := exec.Command("pgrep", "-f", filepath.Join(e.cache, "bin", name)).Output(); len(bytes.TrimSpace(b)) > 0 {
			out = append(out, "process "+name+" "+strings.Join(strings.Fields(string(b)), ","))
		}
	}
	if b, _ := exec.Command("pgrep", "-f", "containerd.*"+filepath.Join(e.state)).Output(); len(bytes.TrimSpace(b)) > 0 {
		out = append(out, "containerd processes "+strings.Join(strings.Fields(string(b)), ","))
	}
	if b, _ := exec.Command("pgrep", "-f", "containerd-shim.*/run/kmep/").Output(); len(bytes.TrimSpace(b)) > 0 {
		out = append(out, "containerd shims "+strings.Join(strings.Fields(string(b)), ","))
	}
	if f, err := os.Open("/proc/self/mounts"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 1 && (strings.HasPrefix(fields[1], e.state) || strings.HasPrefix(fields[1], "/run/kmep") ||
				strings.HasPrefix(fields[1], filepath.Join(e.cache, "containerd"))) {
				out = append(out, "mount "+fields[1])
			}
		}
		f.Close()
	}
	for _, ifc := range []string{"kmep0", "kmep-br0"} {
		if exec.Command("ip", "link", "show", ifc).Run() == nil {
			out = append(out, "interface "+ifc)
		}
	}
	if m, _ := filepath.Glob("/run/netns/cni-*"); len(m) > 0 {
		out = append(out, "network namespaces "+strings.Join(m, " "))
	}
	for _, ipt := range []string{"iptables-save", "ip6tables-save"} {
		b, _ := exec.Command(ipt).Output()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "KUBE-") || strings.Contains(l, "CNI-") {
				out = append(out, ipt+": "+l)
			}
		}
	}
	return out
}

func run(t *testing.T, dir, script string, args ...string) {
	t.Helper()
	cmd := exec.Command(script, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v", script, err)
	}
}

func clusterEnv(t *testing.T, root string) env {
	out, err := exec.Command(filepath.Join(root, "local/cluster/env.sh")).Output()
	if err != nil {
		t.Fatalf("env.sh: %v", err)
	}
	e := parseEnv(root, string(out))
	if e.admin == "" || e.url == "" || e.kubeconfig == "" {
		t.Fatalf("env.sh printed no KMEP_URL, KUBECONFIG or KMEP_ADMIN_TOKEN:\n%s", out)
	}
	return e
}

// clusterEnvAfterDown is the paths env.sh would print (it refuses to
// when no cluster is up): lib.sh's, through bash.
func clusterEnvAfterDown(t *testing.T, root string) env {
	cmd := exec.Command("bash", "-c", ". local/cluster/lib.sh && echo \"export KMEP_CLUSTER_STATE=$STATE\" && echo \"export KMEP_CLUSTER_CACHE=$CACHE\"")
	cmd.Dir = root
	out, err := cmd.Output()
	e := parseEnv(root, string(out))
	if err != nil || e.state == "" || e.cache == "" {
		t.Fatalf("lib.sh's paths: %v: %q", err, out)
	}
	return e
}

func parseEnv(root, out string) env {
	e := env{root: root}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "KUBECONFIG":
			e.kubeconfig = v
		case "KUBECTL":
			e.kubectl = v
		case "KMEP_URL":
			e.url = v
		case "KMEP_ADMIN_TOKEN":
			e.admin = v
		case "KMEP_CLUSTER_STATE":
			e.state = v
		case "KMEP_CLUSTER_CACHE":
			e.cache = v
		}
	}
	return e
}

// k runs kubectl and returns its output; a failure fails the test.
func (e env) k(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(e.kubectl, append([]string{"--kubeconfig", e.kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kTry runs kubectl and returns its output, "" when it fails.
func (e env) kTry(args ...string) string {
	out, err := exec.Command(e.kubectl, append([]string{"--kubeconfig", e.kubeconfig}, args...)...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// memory samples the machine's memory in use (MemTotal - MemAvailable)
// once a second from its start.
type memory struct {
	started time.Time
	base    int64
	max     atomic.Int64
}

func sampleMemory() *memory {
	m := &memory{started: time.Now(), base: memInUse()}
	go func() {
		for {
			if u := memInUse() - m.base; u > m.max.Load() {
				m.max.Store(u)
			}
			time.Sleep(time.Second)
		}
	}()
	return m
}

func (m *memory) peak() int64 { return m.max.Load() }

func memInUse() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var total, avail int64
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = n * 1024
		case "MemAvailable:":
			avail = n * 1024
		}
	}
	return total - avail
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func since(t time.Time) string { return time.Since(t).Round(time.Second).String() }

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
