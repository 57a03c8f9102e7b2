package meshagent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
			fmt.Printf("ECHO %q %v\n", got, err)
			os.Exit(1)
		}
		fmt.Println("OK")
		os.Exit(0)
	}
}

type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// A TCP service on nodeB, behind its NAT, is reached from nodeA, behind
// another NAT, through the relay; when the relay goes away new connections
// fail fast, and work again when it returns; with a port forward on natB
// they go directly, with no relay at all.
func TestTunnelThroughNAT(t *testing.T) {
	nn := testenv.NewNATNet(t)
	redisURL := nn.StartRedis(t)
	st, closeStore, err := store.Open(redisURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()

	dir := t.TempDir()
	bin := filepath.Join(dir, "meshagent")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd").CombinedOutput(); err != nil {
		t.Fatalf("build meshagent: %v\n%s", err, out)
	}
	psk := strings.Repeat("ab", 32)
	agent := func(ns, name string, env ...string) *proc {
		cmd := nn.Command(ns, bin)
		cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL, "KMEP_MESH_PSK="+psk, "KMEP_MESH_PEER_TTL=3s",
			"KMEP_MESH_KEY_FILE="+filepath.Join(dir, name+".key"), "KMEP_NODE_NAME="+name,
			"KMEP_MESH_LISTEN=/ip4/0.0.0.0/tcp/4001", "KMEP_DNS_ADDR=127.0.0.1:5353", "KMEP_DNS_UPSTREAMS=127.0.0.1:1",
			"KMEP_LOG_LEVEL=debug")
		cmd.Env = append(cmd.Env, env...)
		p := &proc{cmd: cmd, out: &bytes.Buffer{}}
		cmd.Stdout, cmd.Stderr = p.out, p.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.stop()
			if t.Failed() {
				t.Logf("%s log:\n%s", name, p.out.String())
			}
		})
		return p
	}
	relay := agent(nn.Relay, "relay", "KMEP_MESH_RELAY=true")
	nodeB := agent(nn.NodeB, "nodeb", "KMEP_MESH_NETWORKS="+nn.NetB)
	agent(nn.NodeA, "nodea", "KMEP_MESH_NETWORKS="+nn.NetA, "KMEP_MESH_PROXY_IP=127.0.0.1")

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

	client := func() (bool, string) {
		cmd := exec.Command("ip", "netns", "exec", nn.NodeA, os.Args[0], "-test.run=^TestChild$")
		cmd.Env = append(os.Environ(), "MESHTEST_CHILD=client", "MESHTEST_ADDR=127.0.0.1:7007")
		out, err := cmd.CombinedOutput()
		return err == nil && strings.Contains(string(out), "OK"), string(out)
	}
	eventually := func(what string) time.Duration {
		t.Helper()
		began := time.Now()
		var last string
		for time.Since(began) < 60*time.Second {
			ok, out := client()
			if ok {
				t.Logf("%s: echo through the proxy after %s", what, time.Since(began).Round(time.Millisecond))
				return time.Since(began)
			}
			last = out
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: no echo within 60 s; last client output: %s", what, last)
		return 0
	}

	// The nodes cannot reach each other directly: the direct path is shut.
	if c, err := exec.Command("ip", "netns", "exec", nn.NodeA, "bash", "-c",
		fmt.Sprintf("timeout 2 bash -c '</dev/tcp/%s/4001'", nn.NATBPublic)).CombinedOutput(); err == nil {
		t.Fatalf("nodeA reached natB:4001 without a port forward: %s", c)
	}
	eventually("through the relay")

	// The relay goes away: the relayed path fails fast and clearly.
	relay.stop()
	began := time.Now()
	ok, out := client()
	t.Logf("relay down: connection ended after %s (%q)", time.Since(began).Round(time.Millisecond), strings.TrimSpace(out))
	if ok {
		t.Fatal("echo with the relay down: the path was not through the relay")
	}
	relay = agent(nn.Relay, "relay", "KMEP_MESH_RELAY=true") // same key file: same peer ID
	eventually("relay back")

	// A port forward on natB: nodeB announces it, and the relay is not needed.
	if err := nn.AllowDirect(4001); err != nil {
		t.Fatal(err)
	}
	nodeB.stop()
	agent(nn.NodeB, "nodeb", "KMEP_MESH_NETWORKS="+nn.NetB, "KMEP_MESH_ANNOUNCE=/ip4/"+nn.NATBPublic+"/tcp/4001")
	time.Sleep(4 * time.Second) // the new record replaces the old one
	relay.stop()
	eventually("direct, relay down")
}
