package meshagent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// nsSink serves, inside namespace ns, on ip: it reads everything (closing
// once the client has finished writing) and answers a 1-byte read with one
// byte (a ping).
func nsSink(b *testing.B, m *mesh, ns, ip string) int {
	ln, err := m.nn.Listen(ns, ip+":0")
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
					if n == 1 {
						_, _ = c.Write(buf[:1])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// BenchmarkTunnelShaped compares, in one run, one TCP connection from
// nodeA to a sink on nodeB over the namespaces' path (nodeA - natA -
// router - natB - nodeB, the router's links shaped with tc tbf) directly
// (a port forward on natB) and through the mesh (nodeA's proxy, a libp2p
// connection to nodeB's announced port forward, nodeB's far side): with
// the mesh secret's gate only ("proxied", TLS the one encryption) and with
// KMEP_MESH_PNET as well ("proxied-pnet", a second pair of agents on port
// 4002 with records in Redis database 1: XSalsa20 under TLS, as every mesh
// was before the gate). Bulk throughput (MB/s, all bytes delivered before
// the clock stops), CPU per byte (in all, and of each node's agent alone), and the p50/p99 of 1-byte ping-pongs,
// for each shape.
//
//	go test -run '^$' -bench TunnelShaped -benchtime 2s -count 2 ./longrunning/meshagent/
func BenchmarkTunnelShaped(b *testing.B) {
	m := newMesh(b, false)
	nn := m.nn
	port := nsSink(b, m, nn.NodeB, nn.NodeBIP)
	for _, p := range []int{4001, 4002, port} {
		if err := nn.AllowDirect(p); err != nil {
			b.Fatal(err)
		}
	}
	pnetURL := strings.TrimSuffix(m.url, "/0") + "/1"
	agents := []*proc{
		m.agent(nn.NodeB, "nodeb", "KMEP_MESH_NETWORKS="+nn.NetB, "KMEP_MESH_ANNOUNCE=/ip4/"+nn.NATBPublic+"/tcp/4001"),
		m.agent(nn.NodeA, "nodea", "KMEP_MESH_NETWORKS="+nn.NetA, "KMEP_MESH_PROXY_IP=127.0.0.1"),
		m.agent(nn.NodeB, "nodeb-pnet", "REDIS_URL="+pnetURL, "KMEP_MESH_PNET=true", "KMEP_MESH_NETWORKS="+nn.NetB,
			"KMEP_MESH_LISTEN=/ip4/0.0.0.0/tcp/4002", "KMEP_MESH_ANNOUNCE=/ip4/"+nn.NATBPublic+"/tcp/4002",
			"KMEP_DNS_ADDR=127.0.0.1:5354"),
		m.agent(nn.NodeA, "nodea-pnet", "REDIS_URL="+pnetURL, "KMEP_MESH_PNET=true", "KMEP_MESH_NETWORKS="+nn.NetA,
			"KMEP_MESH_LISTEN=/ip4/0.0.0.0/tcp/4002", "KMEP_MESH_PROXY_IP=127.0.0.2", "KMEP_DNS_ADDR=127.0.0.1:5354"),
	}
	// agentCPU is the CPU time agent a has used so far (ip netns exec
	// execs it: same pid).
	agentCPU := func(a *proc) time.Duration {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command name "(...)": state is 3rd, utime 14th, stime 15th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	}
	// cpu is the CPU time used so far by this process (client and sink)
	// and the agents.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		for _, a := range agents {
			total += agentCPU(a)
		}
		return total
	}
	info := fmt.Sprintf(`{"serInstanceId":"sink1","serName":"sink","version":"1","serializer":"JSON","transportInfo":{"id":"t","name":"tcp","type":"RPC","protocol":"TCP","version":"1","security":{},"endpoint":{"addresses":[{"host":%q,"port":%d}]}}}`, nn.NodeBIP, port)
	for _, url := range []string{m.url, pnetURL} {
		st, closeStore, err := store.Open(url, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = closeStore() }()
		if _, _, err := st.CreateService(context.Background(), store.ServiceRecord{ID: "sink1", AppInstanceID: "app1",
			Name: "sink", State: store.StateActive, Info: []byte(info)}); err != nil {
			b.Fatal(err)
		}
	}
	// Each path with its agents on nodeA and nodeB (none direct).
	paths := []struct {
		name, addr   string
		nodeA, nodeB *proc
	}{
		{"direct", fmt.Sprintf("%s:%d", nn.NATBPublic, port), nil, nil},
		{"proxied", fmt.Sprintf("127.0.0.1:%d", port), agents[1], agents[0]},
		{"proxied-pnet", fmt.Sprintf("127.0.0.2:%d", port), agents[3], agents[2]},
	}
	ping := func(addr string) error {
		c, err := nn.Dial(nn.NodeA, addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		one := []byte{1}
		if _, err := c.Write(one); err != nil {
			return err
		}
		_, err = io.ReadFull(c, one)
		return err
	}
	for _, p := range paths[1:] {
		for began := time.Now(); ; {
			err := ping(p.addr)
			if err == nil {
				break
			}
			if time.Since(began) > 60*time.Second {
				b.Fatalf("%s path not up within 60 s: %v", p.name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	for _, shape := range []struct {
		name string
		bits int64
	}{{"1gbit", 1e9}, {"10gbit", 10e9}} {
		if err := nn.Shape(shape.bits); err != nil {
			b.Fatal(err)
		}
		name := shape.name
		for _, p := range paths {
			b.Run(name+"/bulk/"+p.name, func(b *testing.B) {
				c, err := nn.Dial(nn.NodeA, p.addr, 2*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				chunk := make([]byte, 256<<10)
				b.SetBytes(int64(len(chunk)))
				cpu0 := cpu()
				var a0, b0 time.Duration
				if p.nodeA != nil {
					a0, b0 = agentCPU(p.nodeA), agentCPU(p.nodeB)
				}
				b.ResetTimer()
				for range b.N {
					if _, err := c.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				// The clock stops once the sink has read every byte (it
				// closes on our end of writes).
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
				b.StopTimer()
				// CPU of the client, the sink and the agents per byte (the
				// kernel's forwarding and shaping not included; idle agents
				// cost next to nothing).
				sent := float64(b.N * len(chunk))
				b.ReportMetric(float64(cpu()-cpu0)/sent, "cpu-ns/B")
				// Each node's agent alone: on two real nodes, what one
				// agent's cores must carry.
				if p.nodeA != nil {
					b.ReportMetric(float64(agentCPU(p.nodeA)-a0)/sent, "agentA-cpu-ns/B")
					b.ReportMetric(float64(agentCPU(p.nodeB)-b0)/sent, "agentB-cpu-ns/B")
				}
			})
		}
		for _, p := range paths {
			b.Run(name+"/latency/"+p.name, func(b *testing.B) {
				c, err := nn.Dial(nn.NodeA, p.addr, 2*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				testenv.RoundTrips(b, c)
			})
		}
	}
}
