// Package fakevpp is the data plane of the UPF agent's tests: govpp's mock
// adapter (go.fd.io/govpp/adapter/mock) behind a real govpp core
// connection, answering every binary-API request with its registered reply
// type and recording the decoded requests, so tests assert the exact
// messages a driver sends. SetDown makes the adapter's send fail like a
// VPP whose socket is gone; SetRetval makes VPP refuse requests.
//
// It models the VPP state the vpp driver reads back and depends on (see
// model.go): the ACL plugin's ACLs (acl_add_replace, acl_del, acl_dump),
// the per-interface ACL lists (acl_interface_set_acl_list,
// acl_interface_list_dump), and the ABF plugin's policies and interface
// attachments (abf_policy_add_del, abf_itf_attach_add_del and their
// dumps), with the refusals a driver must respect (an ACL in use cannot
// be deleted, an unknown index is refused). Dumps are answered with their
// details messages and then the control_ping_reply, in order, from one
// goroutine, as VPP does. No real VPP runs in these tests; this is the
// stand-in, on purpose.
package fakevpp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/mock"
	"go.fd.io/govpp/api"
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
	state    state
	sent     atomic.Uint64

	out  chan outMsg // ordered replies of dumps and control pings
	done chan struct{}
}

type outMsg struct {
	id   uint16
	data []byte
}

// downable wraps the mock adapter: it fails sends while down, and answers
// dumps and control pings itself (the mock's reply handler returns one
// message per request; a dump needs several).
type downable struct {
	*mock.VppAdapter
	down atomic.Bool
	v    *VPP
	cb   atomic.Pointer[adapter.MsgCallback]
}

func (d *downable) SetMsgCallback(cb adapter.MsgCallback) {
	d.cb.Store(&cb)
	d.VppAdapter.SetMsgCallback(cb)
}

func (d *downable) SendMsg(clientID uint32, data []byte) error {
	if d.down.Load() {
		return ErrDown
	}
	name, _ := d.GetMsgNameByID(binary.BigEndian.Uint16(data[0:2]))
	if name == "control_ping" || strings.HasSuffix(name, "_dump") {
		return d.v.async(name, clientID, data)
	}
	return d.VppAdapter.SendMsg(clientID, data)
}

// New connects a govpp core connection to a fresh mock adapter. Close it
// with Close. Requests are recorded unless record is false (benchmarks).
func New(record bool) (*VPP, error) {
	v := &VPP{record: record, types: map[string]reflect.Type{}, state: newState(),
		out: make(chan outMsg, 1<<16), done: make(chan struct{})}
	v.adapter = &downable{VppAdapter: mock.NewVppAdapter(), v: v}
	for _, msgs := range api.GetRegisteredMessages() {
		for _, m := range msgs {
			v.types[m.GetMessageName()] = reflect.TypeOf(m).Elem()
		}
	}
	v.adapter.MockReplyHandler(v.handle)
	go v.deliver()
	conn, err := core.Connect(v.adapter)
	if err != nil {
		close(v.done)
		return nil, fmt.Errorf("fakevpp: connect: %w", err)
	}
	v.Conn = conn
	return v, nil
}

// Close disconnects.
func (v *VPP) Close() {
	v.Conn.Disconnect()
	close(v.done)
}

// SetDown makes every send fail with ErrDown (true) or work again.
func (v *VPP) SetDown(down bool) { v.adapter.down.Store(down) }

// SetRetval sets the retval of every reply from now on (0: success).
func (v *VPP) SetRetval(r int32) {
	v.mu.Lock()
	v.retval = r
	v.mu.Unlock()
}

// Requests returns the requests received so far (control pings left out)
// and forgets them.
func (v *VPP) Requests() []api.Message {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.requests
	v.requests = nil
	return r
}

// Sent counts the requests answered since New (dumps and control pings
// included).
func (v *VPP) Sent() uint64 { return v.sent.Load() }

// decode decodes a request, or returns nil for an unknown one.
func (v *VPP) decode(name string, data []byte) api.Message {
	t, ok := v.types[name]
	if !ok {
		return nil
	}
	msg := reflect.New(t).Interface().(api.Message)
	if err := codec.DefaultCodec.DecodeMsg(data, msg); err != nil {
		return nil
	}
	return msg
}

// encode encodes a reply or details message for the request context ctx.
func (v *VPP) encode(msg api.Message, ctx uint32) (uint16, []byte, error) {
	id, err := v.adapter.GetMsgID(msg.GetMessageName(), msg.GetCrcString())
	if err != nil {
		return 0, nil, err
	}
	data, err := codec.DefaultCodec.EncodeMsg(msg, id)
	if err != nil {
		return 0, nil, err
	}
	binary.BigEndian.PutUint32(data[2:6], ctx)
	return id, data, nil
}

func (v *VPP) handle(req mock.MessageDTO) ([]byte, uint16, bool) {
	msg := v.decode(req.MsgName, req.Data)
	if msg == nil {
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
	if retval == 0 {
		retval = v.state.apply(msg, reply)
	}
	v.mu.Unlock()
	if f := reflect.ValueOf(reply).Elem().FieldByName("Retval"); f.IsValid() {
		f.SetInt(int64(retval))
	}
	id, data, err := v.encode(reply, req.ClientID)
	if err != nil {
		return nil, 0, false
	}
	v.sent.Add(1)
	return data, id, true
}

// async answers a dump (its details from the modelled state) or a control
// ping through the ordered outbox.
func (v *VPP) async(name string, ctx uint32, data []byte) error {
	var msgs []api.Message
	if name == "control_ping" {
		rt, ok := v.types["control_ping_reply"]
		if !ok {
			return errors.New("fakevpp: control_ping_reply is not registered")
		}
		msgs = []api.Message{reflect.New(rt).Interface().(api.Message)}
	} else {
		req := v.decode(name, data)
		if req == nil {
			return fmt.Errorf("fakevpp: cannot decode %s", name)
		}
		v.mu.Lock()
		if v.record {
			v.requests = append(v.requests, req)
		}
		msgs = v.state.dump(req)
		v.mu.Unlock()
	}
	for _, m := range msgs {
		id, b, err := v.encode(m, ctx)
		if err != nil {
			return err
		}
		v.out <- outMsg{id, b}
	}
	v.sent.Add(1)
	return nil
}

func (v *VPP) deliver() {
	for {
		select {
		case <-v.done:
			return
		case m := <-v.out:
			if cb := v.adapter.cb.Load(); cb != nil {
				(*cb)(m.id, m.data)
			}
		}
	}
}
