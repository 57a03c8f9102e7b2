// Package fakevpp is the data plane of the UPF agent's tests: govpp's mock
// adapter (go.fd.io/govpp/adapter/mock) behind a real govpp core
// connection, answering every binary-API request with its registered reply
// type and recording the decoded requests, so tests assert the exact
// messages a driver sends. SetDown makes the adapter's send fail like a
// VPP whose socket is gone; SetRetval makes VPP refuse requests.
//
// It models the one piece of VPP state a driver reads back: acl_add_replace
// with acl_index ~0 creates an ACL and returns a new index. No real VPP
// runs in these tests; this is the stand-in, on purpose.
package fakevpp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"go.fd.io/govpp/adapter/mock"
	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/acl"
	"go.fd.io/govpp/codec"
	"go.fd.io/govpp/core"
)

// ErrDown is what sends fail with while the fake is down.
var ErrDown = errors.New("fakevpp: VPP API socket unavailable")

// VPP is a fake VPP behind a govpp connection.
type VPP struct {
	// Conn is the govpp connection to hand to drivers.
	Conn    *core.Connection
	adapter *downable

	mu       sync.Mutex
	requests []api.Message
	record   bool
	retval   int32
	types    map[string]reflect.Type // message name → type
	nextACL  uint32
	sent     atomic.Uint64
}

type downable struct {
	*mock.VppAdapter
	down atomic.Bool
}

func (d *downable) SendMsg(clientID uint32, data []byte) error {
	if d.down.Load() {
		return ErrDown
	}
	return d.VppAdapter.SendMsg(clientID, data)
}

// New connects a govpp core connection to a fresh mock adapter. Close it
// with Close. Requests are recorded unless record is false (benchmarks).
func New(record bool) (*VPP, error) {
	v := &VPP{adapter: &downable{VppAdapter: mock.NewVppAdapter()}, record: record, types: map[string]reflect.Type{}}
	for _, msgs := range api.GetRegisteredMessages() {
		for _, m := range msgs {
			v.types[m.GetMessageName()] = reflect.TypeOf(m).Elem()
		}
	}
	v.adapter.MockReplyHandler(v.handle)
	conn, err := core.Connect(v.adapter)
	if err != nil {
		return nil, fmt.Errorf("fakevpp: connect: %w", err)
	}
	v.Conn = conn
	return v, nil
}

// Close disconnects.
func (v *VPP) Close() { v.Conn.Disconnect() }

// SetDown makes every send fail with ErrDown (true) or work again.
func (v *VPP) SetDown(down bool) { v.adapter.down.Store(down) }

// SetRetval sets the retval of every reply from now on (0: success).
func (v *VPP) SetRetval(r int32) {
	v.mu.Lock()
	v.retval = r
	v.mu.Unlock()
}

// Requests returns the requests received so far and forgets them.
func (v *VPP) Requests() []api.Message {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.requests
	v.requests = nil
	return r
}

// Sent counts the requests answered since New.
func (v *VPP) Sent() uint64 { return v.sent.Load() }

func (v *VPP) handle(req mock.MessageDTO) ([]byte, uint16, bool) {
	t, ok := v.types[req.MsgName]
	if !ok {
		return nil, 0, false
	}
	msg := reflect.New(t).Interface().(api.Message)
	if err := codec.DefaultCodec.DecodeMsg(req.Data, msg); err != nil {
		return nil, 0, false
	}
	rt, ok := v.types[req.MsgName+"_reply"]
	if !ok {
		return nil, 0, false
	}
	reply := reflect.New(rt).Interface().(api.Message)
	v.mu.Lock()
	retval := v.retval
	if v.record {
		v.requests = append(v.requests, msg)
	}
	if r, ok := msg.(*acl.ACLAddReplace); ok && retval == 0 {
		idx := r.ACLIndex
		if idx == ^uint32(0) {
			idx = v.nextACL
			v.nextACL++
		}
		reply.(*acl.ACLAddReplaceReply).ACLIndex = idx
	}
	v.mu.Unlock()
	if f := reflect.ValueOf(reply).Elem().FieldByName("Retval"); f.IsValid() {
		f.SetInt(int64(retval))
	}
	id, err := v.adapter.GetMsgID(reply.GetMessageName(), reply.GetCrcString())
	if err != nil {
		return nil, 0, false
	}
	data, err := codec.DefaultCodec.EncodeMsg(reply, id)
	if err != nil {
		return nil, 0, false
	}
	binary.BigEndian.PutUint32(data[2:6], req.ClientID)
	v.sent.Add(1)
	return data, id, true
}
