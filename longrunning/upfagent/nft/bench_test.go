package nft_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/nft"
)

// rules returns n DROP rules for addresses no test traffic goes to
// (172.16.0.0/12), one nftables rule each, with priorities spread over
// 0..255, tagged so that two sets do not share ids.
func rules(b testing.TB, n int, tag string) []dataplane.Op {
	ops := make([]dataplane.Op, n)
	for i := range ops {
		ops[i] = op(b, "bench", trafficRule(fmt.Sprintf("%s%d", tag, i), i*7%256, "DROP",
			fmt.Sprintf(`{"dstAddress":["172.%d.%d.%d"],"protocol":["TCP"],"dstPort":["80"]}`, 16+i>>16&15, i>>8&255, i&255), ""))
	}
	return ops
}

// applyAll applies ops in batches of 2048, as the agent's resync hands
// them over (upfagent.Config.ResyncBatch).
func applyAll(b testing.TB, d *nft.Driver, ops []dataplane.Op) { applyIn(b, d, ops, 2048) }

// applyIn applies ops in batches of size.
func applyIn(b testing.TB, d *nft.Driver, ops []dataplane.Op, size int) {
	for lo := 0; lo < len(ops); lo += size {
		batch(b, d, ops[lo:min(lo+size, len(ops))]...)
	}
}

// BenchmarkApply10k measures applying 10,000 rules to an empty table, in
// batches of 2048 (one transaction each, as the agent's resync steps) and,
// in the same run, of 256 (the agent's steps before ResyncBatch; the
// kernel rebuilds the chains a commit touches, so more commits cost more).
//
//	go test -run '^$' -bench Apply10k -benchtime 3x ./longrunning/upfagent/nft/
func BenchmarkApply10k(b *testing.B) {
	nd := newNode(b)
	d := nd.driver(nd.n.NodeUEIf)
	ops := rules(b, 10_000, "r")
	for _, size := range []int{2048, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			var total, cpu time.Duration
			for range b.N {
				b.StopTimer()
				if _, err := d.Sweep(context.Background(), nil); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				began, cpu0 := time.Now(), cpuTime(b)
				applyIn(b, d, ops, size)
				total += time.Since(began)
				cpu += cpuTime(b) - cpu0
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/10k-rules")
			// CPU time of this process, the kernel's work in its netlink calls
			// included: what a loaded machine does not inflate as it does s/10k-rules.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/10k-rules")
		})
	}
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkChangeOneOf10k measures one change to a table of 10,000 rules:
// adding a rule (inserted in the middle of the priority order), replacing
// one (its old version out, the new one in, one transaction), removing one.
//
//	go test -run '^$' -bench ChangeOneOf10k ./longrunning/upfagent/nft/
func BenchmarkChangeOneOf10k(b *testing.B) {
	nd := newNode(b)
	d := nd.driver(nd.n.NodeUEIf)
	applyAll(b, d, rules(b, 10_000, "r"))
	ctx := context.Background()
	one := func(i int, prio int) dataplane.Op {
		return op(b, "bench", trafficRule(fmt.Sprintf("new%d", i), prio, "DROP",
			fmt.Sprintf(`{"dstAddress":["172.31.%d.%d"],"protocol":["TCP"],"dstPort":["80"]}`, i>>8&255, i&255), ""))
	}
	b.Run("add", func(b *testing.B) {
		for i := range b.N {
			batch(b, d, one(i, 128))
			b.StopTimer()
			if err := d.Remove(ctx, dataplane.Applied{AppInstanceID: "bench", ID: fmt.Sprintf("new%d", i)}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("replace", func(b *testing.B) {
		for i := range b.N {
			batch(b, d, one(0, 1+i%254))
		}
	})
	b.Run("remove", func(b *testing.B) {
		for i := range b.N {
			b.StopTimer()
			batch(b, d, one(i, 128))
			b.StartTimer()
			if err := d.Remove(ctx, dataplane.Applied{AppInstanceID: "bench", ID: fmt.Sprintf("new%d", i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkForward measures bulk TCP from the UE namespace through the
// node namespace to the remote server, in one run, with no rules and with
// 1,000 and 10,000 rules that every packet passes over (none matches:
// the worst case of a linear chain): MB/s, and ns per packet the node's
// UE-side interface received (the kernel's count: TSO segments of up to
// 64 KiB each, which is what nftables evaluates), and wire packets of
// 1500 bytes.
//
//	go test -run '^$' -bench Forward -benchtime 2s ./longrunning/upfagent/nft/
func BenchmarkForward(b *testing.B) {
	nd := newNode(b)
	n := nd.n
	d := nd.driver(n.NodeUEIf)
	ln, err := testenv.ListenIn(n.Remote, "tcp", net.JoinHostPort(n.RemoteIP, "0"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	ctx := context.Background()
	for _, count := range []int{0, 1_000, 10_000} {
		if _, err := d.Sweep(ctx, nil); err != nil {
			b.Fatal(err)
		}
		applyAll(b, d, rules(b, count, fmt.Sprint("f", count, "-")))
		b.Run(fmt.Sprintf("rules=%d", count), func(b *testing.B) {
			c, err := testenv.DialIn(n.UE, "tcp", ln.Addr().String(), 2*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			chunk := make([]byte, 256<<10)
			b.SetBytes(int64(len(chunk)))
			st0, err := testenv.LinkStatsIn(n.Node, n.NodeUEIf)
			if err != nil {
				b.Fatal(err)
			}
			began := time.Now()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			el := time.Since(began)
			st1, err := testenv.LinkStatsIn(n.Node, n.NodeUEIf)
			if err != nil {
				b.Fatal(err)
			}
			pkts := st1.RxPackets - st0.RxPackets
			b.ReportMetric(float64(el.Nanoseconds())/float64(pkts), "ns/pkt")
			b.ReportMetric(float64(el.Nanoseconds())/(float64(b.N*len(chunk))/1500), "ns/1500B")
		})
	}
}
