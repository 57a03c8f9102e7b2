package meshagent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// TestChild is the body of the helper processes the namespace test starts
// inside the namespaces (an echo server, a client); it does nothing in a
// normal run.
func TestChild(t *testing.T) {
	addr := os.Getenv("MESHTEST_ADDR")
	switch os.Getenv("MESHTEST_CHILD") {
	case "":
		t.Skip("helper process of TestTunnelThroughNAT")
	case "echo":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	case "client":
		began := time.Now()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			fmt.Println("DIAL", err)
			os.Exit(1)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := "ping through the mesh"
		_, _ = io.WriteString(c, msg)
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if string(got) != msg {
			fmt.Printf("ECHO %q %v (connection ended %s after the dial)\n", got, err, time.Since(began).Round(time.Microsecond))
			os.Exit(1)
		}
		fmt.Println("OK")
		os.Exit(0)
	}
}

type proc struct {
	cmd *exec.Cmd
	out *testenv.LogBuffer
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// mesh is a NATNet with redis in the relay namespace, the meshagent binary
// built, and an echo service on nodeB (port 7007) registered as ACTIVE.
type mesh struct {
	t   testing.TB
	nn  *testenv.NATNet
	bin string
	dir string
	url string
}

func newMesh(t testing.TB, symmetric bool) *mesh {
	nn := testenv.NewNATNet(t)
	if symmetric {
		if err := nn.SymmetricNAT(); err != nil {
			t.Fatal(err)
		}
	}
	m := &mesh{t: t, nn: nn, dir: t.TempDir(), url: nn.StartRedis(t)}
	st, closeStore, err := store.Open(m.url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeStore() })
	m.bin = filepath.Join(m.dir, "meshagent")
	if out, err := exec.Command("go", "build", "-o", m.bin, "./cmd").CombinedOutput(); err != nil {
		t.Fatalf("build meshagent: %v\n%s", err, out)
	}
	echo := exec.Command("ip", "netns", "exec", nn.NodeB, os.Args[0], "-test.run=^TestChild$")
	echo.Env = append(os.Environ(), "MESHTEST_CHILD=echo", "MESHTEST_ADDR="+nn.NodeBIP+":7007")
	if err := echo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = echo.Process.Kill(); _ = echo.Wait() })
	info := fmt.Sprintf(`{"serInstanceId":"echo1","serName":"echo","version":"1","serializer":"JSON","transportInfo":{"id":"t","name":"tcp","type":"RPC","protocol":"TCP","version":"1","security":{},"endpoint":{"addresses":[{"host":%q,"port":7007}]}}}`, nn.NodeBIP)
	if _, _, err := st.CreateService(context.Background(), store.ServiceRecord{ID: "echo1", AppInstanceID: "app1",
		Name: "echo", State: store.StateActive, Info: []byte(info)}); err != nil {
		t.Fatal(err)
	}
	return m
}

// agent starts the meshagent binary in namespace ns.
func (m *mesh) agent(ns, name string, env ...string) *proc {
	cmd := m.nn.Command(ns, m.bin)
	cmd.Env = append(os.Environ(), "REDIS_URL="+m.url, "KMEP_MESH_PSK="+strings.Repeat("ab", 32), "KMEP_MESH_PEER_TTL=3s",
		"KMEP_MESH_KEY_FILE="+filepath.Join(m.dir, name+".key"), "KMEP_NODE_NAME="+name,
		"KMEP_MESH_LISTEN=/ip4/0.0.0.0/tcp/4001", "KMEP_DNS_ADDR=127.0.0.1:5353", "KMEP_DNS_UPSTREAMS=127.0.0.1:1",
		"KMEP_LOG_LEVEL=debug")
	cmd.Env = append(cmd.Env, env...)
	p := &proc{cmd: cmd, out: &testenv.LogBuffer{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() {
		p.stop()
		if m.t.Failed() {
			m.t.Logf("%s log:\n%s", name, p.out.String())
		}
	})
	return p
}

// client runs one echo exchange from nodeA through its proxy listener.
func (m *mesh) client() (bool, string) {
	cmd := exec.Command("ip", "netns", "exec", m.nn.NodeA, os.Args[0], "-test.run=^TestChild$")
	cmd.Env = append(os.Environ(), "MESHTEST_CHILD=client", "MESHTEST_ADDR=127.0.0.1:7007")
	out, err := cmd.CombinedOutput()
	return err == nil && strings.Contains(string(out), "OK"), strings.TrimSpace(string(out))
}

func (m *mesh) eventually(what string) {
	m.t.Helper()
	began := time.Now()
	var first, last string
	for failed := 0; time.Since(began) < 60*time.Second; failed++ {
		ok, out := m.client()
		if ok {
			m.t.Logf("%s: echo through the proxy after %s (%d failed attempts, the first: %q)", what,
				time.Since(began).Round(time.Millisecond), failed, first)
			return
		}
		if first == "" {
			first = out
		}
		last = out
		time.Sleep(200 * time.Millisecond)
	}
	m.t.Fatalf("%s: no echo within 60 s; last client output: %s", what, last)
}

// A TCP service on nodeB, behind a symmetric NAT (no hole punching), is
// reached from nodeA, behind another NAT, through the relay; when the
// relay goes away new connections fail at once with an error that says
// so, and work again when it returns; with a port forward on natB they go
// directly, with no relay at all.
func TestTunnelThroughNAT(t *testing.T) {
	m := newMesh(t, true)
	nn := m.nn
	relay := m.agent(nn.Relay, "relay", "KMEP_MESH_RELAY=true")
	nodeB := m.agent(nn.NodeB, "nodeb", "KMEP_MESH_NETWORKS="+nn.NetB)
	nodeA := m.agent(nn.NodeA, "nodea", "KMEP_MESH_NETWORKS="+nn.NetA, "KMEP_MESH_PROXY_IP=127.0.0.1")

	// The nodes cannot reach each other directly: the direct path is shut.
	if c, err := exec.Command("ip", "netns", "exec", nn.NodeA, "bash", "-c",
		fmt.Sprintf("timeout 2 bash -c '</dev/tcp/%s/4001'", nn.NATBPublic)).CombinedOutput(); err == nil {
		t.Fatalf("nodeA reached natB:4001 without a port forward: %s", c)
	}
	m.eventually("through the relay")

	// The relay goes away: the relayed path fails at once, and says why.
	relay.stop()
	// The tunnel's RouteError says why: "its relays are down (...)" while
	// nodeB's record still names the relay, "no relay route" once its
	// circuit address has been withdrawn; either way with its direct path.
	why := regexp.MustCompile(`unreachable: (its relays are down|no relay route)`)
	// How soon is measured by BenchmarkOpenRelayDown; here, on a loaded
	// machine, the first attempts may still find the relay's connection
	// closing, so allow some time before the error must say why.
	downSince := time.Now()
	for i := 0; ; i++ {
		ok, out := m.client()
		if ok {
			t.Fatal("echo with the relay down: the path was not through the relay")
		}
		t.Logf("relay down: %s", out)
		if why.MatchString(nodeA.out.String()) {
			for _, line := range strings.Split(nodeA.out.String(), "\n") {
				if why.MatchString(line) {
					t.Logf("nodeA: %s", line)
					break
				}
			}
			break
		}
		if time.Since(downSince) > 20*time.Second {
			t.Fatalf("relay down: nodeA did not log %q within 20 s (%d attempts)", why.String(), i+1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	relay = m.agent(nn.Relay, "relay", "KMEP_MESH_RELAY=true") // same key file: same peer ID
	m.eventually("relay back")

	// A port forward on natB: nodeB announces it, and the relay is not needed.
	if err := nn.AllowDirect(4001); err != nil {
		t.Fatal(err)
	}
	nodeB.stop()
	m.agent(nn.NodeB, "nodeb", "KMEP_MESH_NETWORKS="+nn.NetB, "KMEP_MESH_ANNOUNCE=/ip4/"+nn.NATBPublic+"/tcp/4001")
	time.Sleep(4 * time.Second) // the new record replaces the old one
	relay.stop()
	m.eventually("direct, relay down")
}

// Both nodes behind NATs that keep source ports (endpoint-independent
// mappings, what MASQUERADE does by default): after the first connection
// through the relay, DCUtR punches a direct connection, and the service
// stays reachable with the relay gone.
func TestHolePunch(t *testing.T) {
	m := newMesh(t, false)
	nn := m.nn
	relay := m.agent(nn.Relay, "relay", "KMEP_MESH_RELAY=true")
	nodeB := m.agent(nn.NodeB, "nodeb", "KMEP_MESH_NETWORKS="+nn.NetB)
	nodeA := m.agent(nn.NodeA, "nodea", "KMEP_MESH_NETWORKS="+nn.NetA, "KMEP_MESH_PROXY_IP=127.0.0.1")
	m.eventually("through the relay")

	const punched = "direct connection to a peer reached through a relay"
	began := time.Now()
	for !strings.Contains(nodeA.out.String(), punched) && !strings.Contains(nodeB.out.String(), punched) {
		if time.Since(began) > 30*time.Second {
			t.Fatalf("no direct connection within 30 s of the relayed one")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("hole punched %s after the first relayed echo", time.Since(began).Round(time.Millisecond))
	for _, l := range strings.Split(nodeA.out.String()+nodeB.out.String(), "\n") {
		if strings.Contains(l, punched) {
			t.Log(l)
		}
	}
	relay.stop()
	m.eventually("direct (punched), relay down")
}
