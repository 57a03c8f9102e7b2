package proxy_test

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/meshagent/proxy"
)

// sink serves on addr: it reads everything, and answers each 1-byte
// request of a ping with one byte.
func sink(b *testing.B, addr string) netip.AddrPort {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n == 1 { // a ping
						_, _ = c.Write(buf[:1])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTunnel compares, in one run, one TCP connection to an endpoint
// directly and through the proxy and a libp2p stream between two nodes on
// loopback, with the mesh secret's gate only (TLS the one encryption,
// "proxied") and with the private network as well (KMEP_MESH_PNET,
// "proxied-pnet": XSalsa20 under TLS, what every mesh did before the
// gate): bulk throughput (MB/s, b.SetBytes), CPU per byte, and
// request/response latency (p50 of 1-byte ping-pongs).
//
//	go test -run '^$' -bench 'Tunnel$' -benchtime 2s -count 3 ./longrunning/meshagent/proxy/
func BenchmarkTunnel(b *testing.B) {
	target := sink(b, "127.0.0.2:0")
	paths := []struct{ name, addr string }{{"direct", target.String()}}
	for _, m := range []struct {
		name   string
		pnet   bool
		listen netip.Addr
	}{{"proxied", false, listenIP}, {"proxied-pnet", true, netip.MustParseAddr("127.0.0.10")}} {
		st := newStore(b) // each pair its own records
		a := nodeWith(b, st, psk, m.pnet, "127.0.0.3/32")
		n := nodeWith(b, st, psk, m.pnet, "127.0.0.2/32")
		waitPeers(b, a, "127.0.0.2")
		px, err := proxy.New(proxy.Config{ListenIP: m.listen}, proxy.Deps{Tunnel: a, Log: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(px.Close)
		if _, err := proxy.New(proxy.Config{}, proxy.Deps{Tunnel: n, Log: quiet}); err != nil {
			b.Fatal(err)
		}
		if err := px.Set([]proxy.Service{{Name: "sink", Port: target.Port(), Backends: []netip.AddrPort{target}}}); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, struct{ name, addr string }{m.name, px.Addrs()[target.Port()]})
	}

	for _, p := range paths {
		b.Run("bulk/"+p.name, func(b *testing.B) {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			chunk := make([]byte, 256<<10)
			b.SetBytes(int64(len(chunk)))
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// CPU time of the whole process (client, both nodes, sink) per
			// byte: the cost of the path, which a busy machine does not skew
			// as it skews MB/s.
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N*len(chunk)), "cpu-ns/B")
		})
	}
	for _, p := range paths {
		b.Run("latency/"+p.name, func(b *testing.B) {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			testenv.RoundTrips(b, c)
		})
	}
}
