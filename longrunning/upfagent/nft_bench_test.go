package upfagent_test

import (
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// nftEdge is an edge for benchmarks: the topology and the store, no servers.
func nftEdge(b *testing.B) *edge {
	testenv.RequireNetNS(b)
	return &edge{t: b, root: b, n: testenv.NewEdgeNet(b), st: srv.Store(b, store.Options{})}
}

// BenchmarkNftablesApply10k measures a starting agent applying 10,000
// rules from the store (100 per appd configuration) to nftables in the
// node namespace: its first resync, store reads, index allocation, status
// records and the kernel included; per iteration.
//
//	go test -run '^$' -bench NftablesApply10k -benchtime 3x ./longrunning/upfagent/
func BenchmarkNftablesApply10k(b *testing.B) {
	const n = 10_000
	for range b.N {
		b.StopTimer()
		e := nftEdge(b)
		createRules(b, e.st, n, "app")
		b.StartTimer()
		began := time.Now()
		r := e.start("A")
		el := time.Since(began)
		b.StopTimer()
		if s := r.a.Stats(); s.Applied != n {
			b.Fatalf("applied %d, want %d", s.Applied, n)
		}
		r.stop()
		b.ReportMetric(el.Seconds(), "s/10k-rules")
	}
}

// BenchmarkNftablesResync10k measures the resync of a restarted agent
// whose 10,000 rules are all in the kernel and recorded: New (the driver
// reads its tables back), the lease, the store reads, the audit (Missing)
// and the sweep; nothing is committed.
//
//	go test -run '^$' -bench NftablesResync10k -benchtime 3x ./longrunning/upfagent/
func BenchmarkNftablesResync10k(b *testing.B) {
	const n = 10_000
	b.StopTimer()
	e := nftEdge(b)
	createRules(b, e.st, n, "app")
	first := e.start("A")
	first.stop()
	for range b.N {
		b.StartTimer()
		began := time.Now()
		r := e.start("B")
		el := time.Since(began)
		b.StopTimer()
		if s := r.a.Stats(); s.Applied != 0 || s.Removed != 0 || s.Resyncs != 1 {
			b.Fatalf("the restarted agent changed the data plane: %+v", s)
		}
		r.stop()
		b.ReportMetric(el.Seconds(), "s/resync")
	}
}
