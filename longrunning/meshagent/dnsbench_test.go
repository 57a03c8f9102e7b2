package meshagent_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

var qpsLine = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)

// dnsperf runs Debian's dnsperf pinned to CPU 1 against addr for 5 s and
// returns its queries per second.
func dnsperf(b *testing.B, addr, queries string) float64 {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("taskset", "-c", "1", "dnsperf", "-s", host, "-p", port, "-d", queries,
		"-l", "5", "-c", "64", "-T", "1", "-q", "1000").CombinedOutput()
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, out)
	}
	m := qpsLine.FindSubmatch(out)
	if m == nil {
		b.Fatalf("dnsperf output without a rate:\n%s", out)
	}
	q, _ := strconv.ParseFloat(string(m[1]), 64)
	return q
}

func answers(addr, name string) bool {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
	return err == nil && len(r.Answer) == 1
}

// BenchmarkDNSvsCoreDNS measures, in one run, the queries per second of
// the mesh agent's DNS server (the real binary, DNS only) answering a DNS
// rule and of CoreDNS answering the same record from its hosts plugin;
// each server is pinned to CPU 0 and dnsperf (64 concurrent clients) to
// CPU 1. Run it with -benchtime=1x: it alternates the two servers for
// three 5 s dnsperf rounds each and reports the medians and their ratio.
func BenchmarkDNSvsCoreDNS(b *testing.B) {
	for _, tool := range []string{"dnsperf", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("skipping: %s is missing (apt-get install -y dnsperf util-linux)", tool)
		}
	}
	const name = "bench.example.test."
	r := testenv.NewRedis(b, testenv.RedisOptions{})
	st, err := store.New(store.Options{Client: r.Client(b)})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreateAppD(context.Background(), store.AppD{AppInstanceID: "bench", DNS: []store.Rule{{
		Kind: store.RuleDNS, ID: "r1", State: store.StateActive,
		Body: []byte(`{"dnsRuleId":"r1","domainName":"` + name + `","ipAddressType":"IP_V4","ipAddress":"10.1.2.3","ttl":300,"state":"ACTIVE"}`)}}}); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	queries := filepath.Join(dir, "queries")
	if err := os.WriteFile(queries, []byte(name+" A\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "meshagent")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd").CombinedOutput(); err != nil {
		b.Fatalf("build meshagent: %v\n%s", err, out)
	}
	port, err := testenv.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command("taskset", "-c", "0", bin)
	cmd.Env = append(os.Environ(), "REDIS_URL="+r.URL(), "KMEP_MESH_TUNNEL=false", "KMEP_DNS_ADDR="+addr,
		"KMEP_DNS_UPSTREAMS=127.0.0.1:1", "KMEP_LOG_LEVEL=warn")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; !answers(addr, name); i++ {
		if i > 200 {
			b.Fatal("meshagent DNS did not answer the rule")
		}
		time.Sleep(25 * time.Millisecond)
	}

	c := testenv.NewCoreDNS(b, testenv.CoreDNSOptions{Hosts: []string{"10.1.2.3 " + name}, CPU: 0})
	if !answers(c.Addr, name) {
		b.Fatal("coredns does not answer the record")
	}
	// Alternate the two servers, three rounds each, and compare medians:
	// whatever else the machine does drifts over both alike.
	var kmep, core []float64
	for round := 0; round < 3; round++ {
		kmep = append(kmep, dnsperf(b, addr, queries))
		core = append(core, dnsperf(b, c.Addr, queries))
	}
	k, cd := median(kmep), median(core)
	b.ReportMetric(k, "kmep-q/s")
	b.ReportMetric(cd, "coredns-q/s")
	b.ReportMetric(k/cd, "ratio")
	b.Logf("kmep q/s %.0f, CoreDNS q/s %.0f (rounds: %.0f vs %.0f): ratio of medians %.2f", k, cd, kmep, core, k/cd)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
