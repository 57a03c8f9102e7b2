package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// writeOp is one write path of the store: setup makes the state it acts
// on, do is the write.
type writeOp struct {
	name  string
	setup func(ctx context.Context, s *store.Store) error
	do    func(ctx context.Context, s *store.Store) error
}

func noSetup(context.Context, *store.Store) error { return nil }

// writeOps are the store's write paths, one each.
func writeOps() []writeOp {
	service := func(id string, live int) store.ServiceRecord { return svc(id, "app-1", "name-"+id, "cat", live) }
	create := func(id string, live int) func(ctx context.Context, s *store.Store) error {
		return func(ctx context.Context, s *store.Store) error {
			_, _, err := s.CreateService(ctx, service(id, live))
			return err
		}
	}
	sub := store.Subscription{ID: "sub-1", AppInstanceID: "app-1", Type: store.SubServiceAvailability,
		CallbackReference: "http://10.0.0.1/cb", Body: []byte(`{}`)}
	conf := store.AppConf{AppInstanceID: "app-1", AccessKeyID: "AK1", SecretKey: []byte("secret-key-of-app-1"), AppName: "demo"}
	rule := store.Rule{Kind: store.RuleDNS, AppInstanceID: "app-1", ID: "dns-1", State: "ACTIVE", Body: []byte(`{"dnsRuleId":"dns-1"}`)}
	appd := store.AppD{AppInstanceID: "app-1", AppName: "demo", DNS: []store.Rule{rule}}
	pkg := store.Package{TenantID: "t1", ID: "pkg-1", Object: "o", Size: 1}
	host := store.Host{Address: "10.0.0.9", Name: "edge", Kubeconfig: []byte("kubeconfig")}
	inst := store.Instance{AppInstanceID: "app-9", TenantID: "t1", State: store.InstanceInstantiating}
	return []writeOp{
		{"CreateService", noSetup, create("svc-1", 10)},
		{"UpdateService", create("svc-1", 10), func(ctx context.Context, s *store.Store) error {
			r := service("svc-1", 20)
			_, _, err := s.UpdateService(ctx, r, 1)
			return err
		}},
		{"DeleteService", create("svc-1", 10), func(ctx context.Context, s *store.Store) error {
			_, err := s.DeleteService(ctx, "app-1", "svc-1")
			return err
		}},
		{"Heartbeat", create("svc-1", 10), func(ctx context.Context, s *store.Store) error {
			_, err := s.Heartbeat(ctx, "app-1", "svc-1")
			return err
		}},
		{"ClaimExpired", create("svc-1", 1), func(ctx context.Context, s *store.Store) error {
			_, err := s.ClaimExpired(ctx, time.Now().Add(time.Hour), 10)
			return err
		}},
		{"CreateSubscription", noSetup, func(ctx context.Context, s *store.Store) error {
			_, _, err := s.CreateSubscription(ctx, sub)
			return err
		}},
		{"DeleteSubscription", func(ctx context.Context, s *store.Store) error {
			_, _, err := s.CreateSubscription(ctx, sub)
			return err
		}, func(ctx context.Context, s *store.Store) error {
			_, err := s.DeleteSubscription(ctx, "app-1", "sub-1")
			return err
		}},
		{"PutAppConf", noSetup, func(ctx context.Context, s *store.Store) error {
			_, err := s.PutAppConf(ctx, conf)
			return err
		}},
		{"DeleteAppConf", func(ctx context.Context, s *store.Store) error {
			_, err := s.PutAppConf(ctx, conf)
			return err
		}, func(ctx context.Context, s *store.Store) error { return s.DeleteAppConf(ctx, "app-1") }},
		{"PublishJWKS", noSetup, func(ctx context.Context, s *store.Store) error { return s.PublishJWKS(ctx, []byte(`{"keys":[]}`)) }},
		{"RecordAuthFailure", func(ctx context.Context, s *store.Store) error {
			_, err := s.PutAppConf(ctx, conf)
			return err
		}, func(ctx context.Context, s *store.Store) error {
			_, err := s.RecordAuthFailure(ctx, "AK1", "10.0.0.7")
			return err
		}},
		{"AcceptSignature", func(ctx context.Context, s *store.Store) error {
			_, err := s.PutAppConf(ctx, conf)
			return err
		}, func(ctx context.Context, s *store.Store) error {
			_, err := s.AcceptSignature(ctx, "AK1", "10.0.0.7", "sig-1", time.Minute)
			return err
		}},
		{"CreateAppD", noSetup, func(ctx context.Context, s *store.Store) error {
			_, err := s.CreateAppD(ctx, appd)
			return err
		}},
		{"UpdateRule", func(ctx context.Context, s *store.Store) error {
			_, err := s.CreateAppD(ctx, appd)
			return err
		}, func(ctx context.Context, s *store.Store) error {
			r := rule
			r.State = "INACTIVE"
			_, _, err := s.UpdateRule(ctx, r, 1)
			return err
		}},
		{"DeleteAppD", func(ctx context.Context, s *store.Store) error {
			_, err := s.CreateAppD(ctx, appd)
			return err
		}, func(ctx context.Context, s *store.Store) error { return s.DeleteAppD(ctx, "app-1") }},
		{"CreateRegistration", noSetup, func(ctx context.Context, s *store.Store) error {
			_, err := s.CreateRegistration(ctx, store.Registration{AppInstanceID: "app-1", Body: []byte(`{}`)})
			return err
		}},
		{"DeleteRegistration", func(ctx context.Context, s *store.Store) error {
			_, err := s.CreateRegistration(ctx, store.Registration{AppInstanceID: "app-1", Body: []byte(`{}`)})
			return err
		}, func(ctx context.Context, s *store.Store) error { return s.DeleteRegistration(ctx, "app-1") }},
		{"StartTermination", noSetup, func(ctx context.Context, s *store.Store) error {
			_, _, err := s.StartTermination(ctx, "app-1", time.Minute)
			return err
		}},
		{"ConfirmTermination", func(ctx context.Context, s *store.Store) error {
			_, _, err := s.StartTermination(ctx, "app-1", time.Minute)
			return err
		}, func(ctx context.Context, s *store.Store) error {
			_, err := s.ConfirmTermination(ctx, "app-1")
			return err
		}},
		{"ConfirmReady", noSetup, func(ctx context.Context, s *store.Store) error {
			_, err := s.ConfirmReady(ctx, "app-1")
			return err
		}},
		{"PurgeApp", create("svc-1", 0), func(ctx context.Context, s *store.Store) error {
			_, err := s.PurgeApp(ctx, "app-1")
			return err
		}},
		{"CreatePackage", noSetup, func(ctx context.Context, s *store.Store) error { return s.CreatePackage(ctx, pkg) }},
		{"DeletePackage", func(ctx context.Context, s *store.Store) error { return s.CreatePackage(ctx, pkg) },
			func(ctx context.Context, s *store.Store) error { return s.DeletePackage(ctx, "t1", "pkg-1") }},
		{"PutHost", noSetup, func(ctx context.Context, s *store.Store) error {
			_, err := s.PutHost(ctx, host)
			return err
		}},
		{"DeleteHost", func(ctx context.Context, s *store.Store) error {
			_, err := s.PutHost(ctx, host)
			return err
		}, func(ctx context.Context, s *store.Store) error { return s.DeleteHost(ctx, host.Address) }},
		{"CreateInstance", noSetup, func(ctx context.Context, s *store.Store) error { return s.CreateInstance(ctx, inst) }},
		{"DeleteInstance", func(ctx context.Context, s *store.Store) error { return s.CreateInstance(ctx, inst) },
			func(ctx context.Context, s *store.Store) error { return s.DeleteInstance(ctx, inst.AppInstanceID) }},
		{"Allocate", noSetup, func(ctx context.Context, s *store.Store) error {
			_, err := s.Allocate(ctx, "upf-1", 100, "rule-1")
			return err
		}},
		{"Release", func(ctx context.Context, s *store.Store) error {
			_, err := s.Allocate(ctx, "upf-1", 100, "rule-1")
			return err
		}, func(ctx context.Context, s *store.Store) error {
			_, err := s.Release(ctx, "upf-1", "rule-1")
			return err
		}},
		{"AcquireLease", noSetup, func(ctx context.Context, s *store.Store) error {
			_, err := s.AcquireLease(ctx, "relay", "me", time.Minute)
			return err
		}},
		{"PutRuleStatuses", func(ctx context.Context, s *store.Store) error {
			_, err := s.AcquireLease(ctx, "upf-1", "me", time.Minute)
			return err
		}, func(ctx context.Context, s *store.Store) error {
			return s.PutRuleStatuses(ctx, "upf-1", "upf-1", "me",
				[]store.RuleStatus{{AppInstanceID: "app-1", RuleID: "r1", State: "APPLIED", Rev: 1}}, nil)
		}},
		{"Ack", func(ctx context.Context, s *store.Store) error {
			if err := s.EnsureGroup(ctx, "g", "0"); err != nil {
				return err
			}
			if _, _, err := s.CreateService(ctx, service("svc-1", 0)); err != nil {
				return err
			}
			_, err := s.ReadGroup(ctx, "g", "c", 10, 0, false)
			return err
		}, func(ctx context.Context, s *store.Store) error {
			last, err := s.LastChangeID(ctx)
			if err != nil {
				return err
			}
			return s.Ack(ctx, "g", last)
		}},
		{"MarkDone", noSetup, func(ctx context.Context, s *store.Store) error { return s.MarkDone(ctx, "k1", time.Minute) }},
		{"RecordDeadLetter", noSetup, func(ctx context.Context, s *store.Store) error {
			return s.RecordDeadLetter(ctx, "ev-1", []byte(`{}`))
		}},
		{"PutMeshPeer", noSetup, func(ctx context.Context, s *store.Store) error {
			return s.PutMeshPeer(ctx, store.MeshPeer{ID: "peer-1", Addrs: []string{"/ip4/10.0.0.1/tcp/1"}}, time.Minute)
		}},
		{"DeleteMeshPeer", func(ctx context.Context, s *store.Store) error {
			return s.PutMeshPeer(ctx, store.MeshPeer{ID: "peer-1", Addrs: []string{"/ip4/10.0.0.1/tcp/1"}}, time.Minute)
		}, func(ctx context.Context, s *store.Store) error { return s.DeleteMeshPeer(ctx, "peer-1") }},
	}
}

// monitor counts the commands Redis executes per key prefix and command
// name (MONITOR), so each write path is attributed its own commands.
type monitor struct {
	mu     sync.Mutex
	counts map[string]map[string]int // prefix -> command -> calls
	seen   map[string]bool           // sync markers
}

var monitorLine = regexp.MustCompile(`^[0-9.]+ \[[^]]*\] "([^"]+)"(.*)$`)
var opPrefix = regexp.MustCompile(`op[0-9]{2}(?:warm|stall)`)

func startMonitor(t *testing.T, addr string) (*monitor, *redis.Client) {
	m := &monitor{counts: map[string]map[string]int{}, seen: map[string]bool{}}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReaderSize(conn, 1<<20)
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			g := monitorLine.FindStringSubmatch(strings.TrimSuffix(strings.TrimPrefix(line, "+"), "\r\n"))
			if g == nil {
				continue
			}
			name := strings.ToLower(g[1])
			m.mu.Lock()
			if name == "echo" {
				m.seen[g[2]] = true
			}
			if p := opPrefix.FindString(g[2]); p != "" {
				if m.counts[p] == nil {
					m.counts[p] = map[string]int{}
				}
				m.counts[p][name]++
			}
			m.mu.Unlock()
		}
	}()
	echo := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = echo.Close() })
	return m, echo
}

// sync returns once the monitor has seen every command Redis executed
// before it.
func (m *monitor) sync(t *testing.T, c *redis.Client, n int) {
	t.Helper()
	marker := fmt.Sprintf("sync-%d", n)
	if err := c.Echo(context.Background(), marker).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		ok := m.seen[` "`+marker+`"`]
		m.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("MONITOR did not show the sync marker")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *monitor) take(prefix string) map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.counts[prefix]
	delete(m.counts, prefix)
	return c
}

// openConnections makes c's command and pipeline pools hold n connections
// each: n concurrent blocking reads of 200 ms in each.
func openConnections(t *testing.T, c *redis.Client, n int) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	for range n {
		wg.Add(2)
		go func() { defer wg.Done(); _ = c.Do(ctx, "BLPOP", "no-such-list", "0.2").Err() }()
		go func() {
			defer wg.Done()
			_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Do(ctx, "BLPOP", "no-such-list", "0.2"); return nil })
		}()
	}
	wg.Wait()
}

// Every write path of the store, through the client every binary uses
// (store.Dial), sent once while Redis is paused (SIGSTOP, 5 s: beyond the
// 2 s read timeout and a fresh connection's dial): each answers nil or
// ErrUnavailable, never another verdict, and Redis executes each of its
// commands at most as often as in the same write without a stall (MONITOR
// counts them): nothing is sent twice, so nothing is applied twice.
// (go-redis' default, or kmep's former MaxRetries 1, sends the command
// again after the read timeout.)
func TestNoWriteIsSentTwiceThroughAStall(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	// Pools large enough that every write has a connection of its own,
	// opened before the stall: the writes are sent, and only their
	// answers are late.
	c, err := store.Dial(r.URL() + "?pool_size=64&pipeline_pool_size=64")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	mon, monClient := startMonitor(t, r.Addr)
	ops := writeOps()
	key := make([]byte, 32)
	open := func(i int, phase string) *store.Store {
		s, err := store.New(store.Options{Client: c, Prefix: fmt.Sprintf("op%02d%s", i, phase), EncryptionKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx := context.Background()
	syncs := 0
	next := func() int { syncs++; return syncs }

	// Without a stall: what each write sends, once Redis knows the
	// scripts (the first run of each, under another prefix, loads them).
	want := make([]map[string]int, len(ops))
	for i, op := range ops {
		load := open(i, "load")
		if err := op.setup(ctx, load); err != nil {
			t.Fatalf("%s: setup: %v", op.name, err)
		}
		if err := op.do(ctx, load); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		s := open(i, "warm")
		if err := op.setup(ctx, s); err != nil {
			t.Fatalf("%s: setup: %v", op.name, err)
		}
		mon.sync(t, monClient, next())
		mon.take(fmt.Sprintf("op%02dwarm", i))
		if err := op.do(ctx, s); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		mon.sync(t, monClient, next())
		want[i] = mon.take(fmt.Sprintf("op%02dwarm", i))
		if len(want[i]) == 0 {
			t.Fatalf("%s: MONITOR saw none of its commands", op.name)
		}
	}

	// Through the stall: all at once.
	stores := make([]*store.Store, len(ops))
	for i, op := range ops {
		stores[i] = open(i, "stall")
		if err := op.setup(ctx, stores[i]); err != nil {
			t.Fatalf("%s: setup: %v", op.name, err)
		}
	}
	openConnections(t, c, 2*len(ops))
	mon.sync(t, monClient, next())
	for i := range ops {
		mon.take(fmt.Sprintf("op%02dstall", i))
	}
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = op.do(ctx, stores[i]) }()
	}
	time.Sleep(5 * time.Second)
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	mon.sync(t, monClient, next())
	unavailable := 0
	for i, op := range ops {
		got := mon.take(fmt.Sprintf("op%02dstall", i))
		switch {
		case errors.Is(errs[i], store.ErrUnavailable):
			unavailable++
		case errs[i] != nil:
			t.Errorf("%s through the stall: %v, want nil or ErrUnavailable", op.name, errs[i])
		}
		for cmd, n := range got {
			if n > want[i][cmd] {
				t.Errorf("%s through the stall: Redis executed %s %d times, %d without a stall (sent again)", op.name, cmd, n, want[i][cmd])
			}
		}
	}
	t.Logf("%d write paths through a 5 s stall: %d answered ErrUnavailable, %d nil; none sent twice", len(ops), unavailable, len(ops)-unavailable)
	if unavailable == 0 {
		t.Fatal("the stall answered nothing ErrUnavailable: it did not hit the writes")
	}
}
