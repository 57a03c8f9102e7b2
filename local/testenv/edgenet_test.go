package testenv_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
)

// The edge topology routes the UE to the remote server and the MEC app
// over IPv4 and IPv6, and a capture on the app's link sees what crosses it.
func TestEdgeNet(t *testing.T) {
	n := testenv.NewEdgeNet(t)
	capt, err := testenv.CaptureIn(n.App, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	for _, dst := range []struct{ ns, ip string }{{n.Remote, n.RemoteIP}, {n.App, n.AppIP}, {n.Remote, n.RemoteIP6}, {n.App, n.AppIP6}} {
		ln, err := testenv.ListenIn(dst.ns, "tcp", net.JoinHostPort(dst.ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = io.WriteString(c, "hello from "+dst.ns)
				_ = c.Close()
			}
		}()
		c, err := testenv.DialIn(n.UE, "tcp", ln.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatalf("UE to %s: %v", ln.Addr(), err)
		}
		got, _ := io.ReadAll(c)
		_ = c.Close()
		_ = ln.Close()
		if string(got) != "hello from "+dst.ns {
			t.Fatalf("UE to %s: %q", ln.Addr(), got)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for capt.Count([]byte("hello from "+n.App)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the capture on the app's link saw %d greetings, want 2", capt.Count([]byte("hello from "+n.App)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if capt.Count([]byte("hello from "+n.Remote)) != 0 {
		t.Fatal("the capture on the app's link saw the remote server's traffic")
	}
	st, err := testenv.LinkStatsIn(n.Node, n.NodeUEIf)
	if err != nil || st.RxPackets == 0 || st.TxPackets == 0 {
		t.Fatalf("node's UE link counters %+v, %v", st, err)
	}
}
