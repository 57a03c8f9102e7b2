package vppconn_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"go.fd.io/govpp/adapter/mock"

	"github.com/kmep-io/kmep/longrunning/upfagent/mp2upf/binapi/upf_mp2"
	"github.com/kmep-io/kmep/longrunning/upfagent/vppconn"
)

// TestDialReportsConnection connects to govpp's mock adapter in the
// background: the connection is reported on Reset and carries requests.
func TestDialReportsConnection(t *testing.T) {
	m := mock.NewVppAdapter()
	m.MockReply(&upf_mp2.UpfMp2IPTrafficRuleReply{Retval: 3})
	c, err := vppconn.Dial(m, 10*time.Millisecond, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Reset():
	case <-time.After(5 * time.Second):
		t.Fatal("no connection reported")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply := &upf_mp2.UpfMp2IPTrafficRuleReply{}
	if err := c.Invoke(ctx, &upf_mp2.UpfMp2IPTrafficRule{IsAdd: 1}, reply); err != nil || reply.Retval != 3 {
		t.Fatalf("Invoke = %v, retval %d", err, reply.Retval)
	}
}
