package vpp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/abf"
	"go.fd.io/govpp/binapi/acl"
	"go.fd.io/govpp/binapi/acl_types"
	"go.fd.io/govpp/binapi/fib_types"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/core"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
)

// Name is the driver's name in configuration and errors.
const Name = "vpp"

// MaxInterfaceACLs is how many ACLs (input and output) one interface can
// hold through acl_interface_set_acl_list, whose count is a u8.
const MaxInterfaceACLs = 255

// none is VPP's ~0: no index.
const none = ^uint32(0)

// dumpBuffer is the reply buffer of a dump stream: VPP sends the details
// without waiting for the reader.
const dumpBuffer = 4096

// ErrInterfaceFull is returned when an interface cannot take one more ACL.
// It is transient: the rule fits once others are gone.
var ErrInterfaceFull = errors.New("vpp: the interface holds 255 ACLs")

// ErrPolicyIDTaken is returned when the ABF policy id of a rule belongs to
// a policy the driver did not create (see Config.PolicyBase).
var ErrPolicyIDTaken = errors.New("vpp: ABF policy id used by a foreign policy")

// Conn is what the driver needs of a govpp connection (*core.Connection
// and *vppconn.Conn have it).
type Conn interface {
	Invoke(ctx context.Context, req, reply api.Message) error
	NewStream(ctx context.Context, options ...api.StreamOption) (api.Stream, error)
}

// Config configures a Driver.
type Config struct {
	// Interfaces are the sw_if_index of the interfaces whose input the
	// rules act on. Required: at least one.
	Interfaces []uint32
	// NextHop is where FORWARD_* rules without dstInterface.dstIpAddress
	// send traffic. Zero value: none (such a rule is unsupported).
	NextHop netip.Addr
	// NextHopInterface is the sw_if_index next hops are reached through.
	// Zero value: resolve next hops in the FIB (sw_if_index ~0; index 0 is
	// VPP's local0, never a next hop's interface).
	NextHopInterface uint32
	// TableID is the FIB table next hops are resolved in. Zero value: 0,
	// the default table.
	TableID uint32
	// PolicyBase plus a rule's index is its ABF policy id. Zero value: 0.
	PolicyBase uint32
	// TagPrefix starts the tag of every ACL the driver creates; ACLs with
	// other tags are foreign. At most 20 bytes, no ':'. Zero value: "kmep".
	TagPrefix string
	// Log receives the driver's lines. Zero value: slog.Default().
	Log *slog.Logger
}

// Driver applies traffic rules to a stock VPP. Its methods may be called
// concurrently; they take turns.
type Driver struct {
	conn Conn
	cfg  Config
	log  *slog.Logger

	mu sync.Mutex
	v  *view // nil: to be read from VPP
}

// view is what the driver created in VPP, as far as it knows.
type view struct {
	rules  map[string]*ruleACL // by ident
	byACL  map[uint32]*ruleACL
	strays []*ruleACL // own ACLs with a duplicate ident (removed by Sweep)
	permit uint32     // the permit-everything ACL, or none
	lists  map[uint32]lists
	// foreign holds the ids of ABF policies the driver did not create.
	foreign map[uint32]bool
}

type lists struct{ input, output []uint32 }

type ruleACL struct {
	ident  string
	prio   int
	acl    uint32
	policy *policy
}

type policy struct {
	id       uint32
	paths    []fib_types.FibPath
	attached map[attachKey]uint32 // → priority
}

type attachKey struct {
	sw   uint32
	ipv6 bool
}

// New returns a Driver over conn.
func New(conn Conn, cfg Config) (*Driver, error) {
	if cfg.TagPrefix == "" {
		cfg.TagPrefix = "kmep"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	switch {
	case conn == nil:
		return nil, errors.New("vpp: a connection is required")
	case len(cfg.Interfaces) == 0:
		return nil, errors.New("vpp: at least one interface (sw_if_index) is required")
	case len(cfg.TagPrefix) > 20 || strings.Contains(cfg.TagPrefix, ":"):
		return nil, fmt.Errorf("vpp: tag prefix %q: at most 20 bytes, no ':'", cfg.TagPrefix)
	case cfg.NextHop.IsValid() && (cfg.NextHop.Zone() != "" || cfg.NextHop.IsUnspecified()):
		return nil, fmt.Errorf("vpp: next hop %s is not a usable address", cfg.NextHop)
	}
	cfg.Interfaces = slices.Clone(cfg.Interfaces)
	slices.Sort(cfg.Interfaces)
	if len(slices.Compact(cfg.Interfaces)) != len(cfg.Interfaces) {
		return nil, errors.New("vpp: an interface is listed twice")
	}
	return &Driver{conn: conn, cfg: cfg, log: cfg.Log.With("driver", Name)}, nil
}

// Forget drops the driver's view: the next call reads VPP's state again.
func (d *Driver) Forget() {
	d.mu.Lock()
	d.v = nil
	d.mu.Unlock()
}

// Apply creates or replaces the rule's ACL, puts it in its place on the
// interfaces and, for FORWARD_* rules, sets up its ABF policy.
func (d *Driver) Apply(ctx context.Context, r dataplane.Rule, _ dataplane.Handle) (dataplane.Handle, error) {
	entries, nh, err := d.translate(r)
	if err != nil {
		return nil, err
	}
	prio := 0
	if r.Traffic.Priority != nil {
		prio = *r.Traffic.Priority
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(ctx); err != nil {
		return nil, err
	}
	ident := Ident(r.AppInstanceID, r.ID, identRoom(d.cfg.TagPrefix))
	ra := d.v.rules[ident]
	if ra == nil {
		if err := d.roomForOneMore(); err != nil {
			return nil, err
		}
	}
	if nh.IsValid() && (ra == nil || ra.policy == nil || ra.policy.id != d.cfg.PolicyBase+r.Index) && d.v.foreign[d.cfg.PolicyBase+r.Index] {
		return nil, fmt.Errorf("%w: %d", ErrPolicyIDTaken, d.cfg.PolicyBase+r.Index)
	}
	h, err := d.apply(ctx, r, ra, ident, prio, entries, nh)
	if err != nil {
		d.v = nil // what VPP holds now is unknown: read it again next time
	}
	return h, err
}

func (d *Driver) apply(ctx context.Context, r dataplane.Rule, ra *ruleACL, ident string, prio int,
	entries []acl_types.ACLRule, nh netip.Addr) (dataplane.Handle, error) {
	idx := none
	if ra != nil {
		idx = ra.acl
	}
	reply := &acl.ACLAddReplaceReply{}
	req := &acl.ACLAddReplace{ACLIndex: idx, Tag: Tag(d.cfg.TagPrefix, prio, r.AppInstanceID, r.ID), Count: uint32(len(entries)), R: entries}
	if err := d.call(ctx, req, reply); err != nil {
		return nil, err
	}
	if ra == nil {
		ra = &ruleACL{ident: ident, acl: reply.ACLIndex}
		d.v.rules[ident] = ra
		d.v.byACL[ra.acl] = ra
	}
	ra.prio = prio
	if err := d.order(ctx); err != nil {
		return nil, err
	}
	switch {
	case nh.IsValid():
		if err := d.ensurePolicy(ctx, ra, d.cfg.PolicyBase+r.Index, nh); err != nil {
			return nil, err
		}
		return dataplane.Handle{ra.acl, ra.policy.id}, nil
	case ra.policy != nil:
		if err := d.dropPolicy(ctx, ra); err != nil {
			return nil, err
		}
	}
	return dataplane.Handle{ra.acl}, nil
}

// translate checks the rule's action and returns its entries and, for a
// FORWARD rule, its next hop.
func (d *Driver) translate(r dataplane.Rule) ([]acl_types.ACLRule, netip.Addr, error) {
	var nh netip.Addr
	switch a := r.Traffic.Action; a {
	case "DROP":
		es, err := Entries(r, false, 0)
		return es, nh, err
	case "PASSTHROUGH":
		es, err := Entries(r, true, 0)
		return es, nh, err
	case "FORWARD_DECAPSULATED", "FORWARD_ENCAPSULATED":
		var dst struct{ typ, ip string }
		if r.Traffic.DstInterface != nil && len(r.Traffic.DstInterface.List) > 0 {
			di := r.Traffic.DstInterface.List[0]
			dst.typ, dst.ip = di.InterfaceType, di.DstIPAddress
		}
		switch {
		case dst.typ == "TUNNEL":
			return nil, nh, dataplane.Unsupported(Name, "%s to a TUNNEL interface needs an encapsulation stock VPP's ABF cannot add", a)
		case dst.ip != "":
			ip, err := netip.ParseAddr(dst.ip)
			if err != nil || ip.Zone() != "" {
				return nil, nh, dataplane.Unsupported(Name, "dstInterface.dstIpAddress %q is not an IP address", dst.ip)
			}
			nh = ip.Unmap()
		case d.cfg.NextHop.IsValid():
			nh = d.cfg.NextHop.Unmap()
		default:
			return nil, nh, dataplane.Unsupported(Name, "%s without dstInterface.dstIpAddress, and no default next hop is configured (ABF forwards to an IP next hop)", a)
		}
		fam := 6
		if nh.Is4() {
			fam = 4
		}
		es, err := Entries(r, true, fam)
		return es, nh, err
	case "DUPLICATE_DECAPSULATED", "DUPLICATE_ENCAPSULATED":
		return nil, nh, dataplane.Unsupported(Name, "%s: stock VPP's ACL and ABF plugins cannot duplicate traffic", a)
	default:
		return nil, nh, dataplane.Unsupported(Name, "unknown action %q", a)
	}
}

// Remove takes the rule's ABF policy, its place on the interfaces and its
// ACL out. A rule the driver does not hold is removed already.
func (d *Driver) Remove(ctx context.Context, a dataplane.Applied) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(ctx); err != nil {
		return err
	}
	ra := d.v.rules[Ident(a.AppInstanceID, a.ID, identRoom(d.cfg.TagPrefix))]
	if ra == nil {
		return nil
	}
	err := d.remove(ctx, []*ruleACL{ra})
	if err != nil {
		d.v = nil
	}
	return err
}

// Sweep removes the driver's ACLs (and their ABF policies) of rules not in
// held, and duplicates of its own. It returns how many ACLs it removed.
func (d *Driver) Sweep(ctx context.Context, held []dataplane.Applied) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(ctx); err != nil {
		return 0, err
	}
	keep := make(map[string]bool, len(held))
	room := identRoom(d.cfg.TagPrefix)
	for _, a := range held {
		keep[Ident(a.AppInstanceID, a.ID, room)] = true
	}
	gone := slices.Clone(d.v.strays)
	for ident, ra := range d.v.rules {
		if !keep[ident] {
			gone = append(gone, ra)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := d.remove(ctx, gone); err != nil {
		d.v = nil
		return 0, err
	}
	d.log.Info("removed ACLs of rules the agent does not hold", "acls", len(gone))
	return len(gone), nil
}

// remove takes rules out: policies, interface lists, then the ACLs.
func (d *Driver) remove(ctx context.Context, rs []*ruleACL) error {
	for _, ra := range rs {
		if ra.policy != nil {
			if err := d.dropPolicy(ctx, ra); err != nil {
				return err
			}
		}
		if d.v.rules[ra.ident] == ra {
			delete(d.v.rules, ra.ident)
		}
		// Still in byACL, so that order does not take it for foreign.
		d.v.byACL[ra.acl] = ra
	}
	if err := d.order(ctx); err != nil {
		return err
	}
	for _, ra := range rs {
		reply := &acl.ACLDelReply{}
		if err := d.call(ctx, &acl.ACLDel{ACLIndex: ra.acl}, reply); err != nil {
			return err
		}
		delete(d.v.byACL, ra.acl)
		d.v.strays = slices.DeleteFunc(d.v.strays, func(s *ruleACL) bool { return s == ra })
	}
	return nil
}

// ownInput is the driver's input ACLs of an interface in priority order,
// without the permit-everything ACL.
func (d *Driver) ownInput() []uint32 {
	rs := make([]*ruleACL, 0, len(d.v.rules))
	for _, ra := range d.v.rules {
		rs = append(rs, ra)
	}
	slices.SortFunc(rs, func(a, b *ruleACL) int { return cmp.Or(cmp.Compare(a.prio, b.prio), strings.Compare(a.ident, b.ident)) })
	out := make([]uint32, len(rs))
	for i, ra := range rs {
		out[i] = ra.acl
	}
	return out
}

// foreignInput is an interface's input ACLs the driver did not create.
func (d *Driver) foreignInput(l lists) []uint32 {
	var out []uint32
	for _, a := range l.input {
		if d.v.byACL[a] == nil && a != d.v.permit && !d.isStray(a) {
			out = append(out, a)
		}
	}
	return out
}

func (d *Driver) isStray(a uint32) bool {
	return slices.ContainsFunc(d.v.strays, func(s *ruleACL) bool { return s.acl == a })
}

// roomForOneMore checks that every interface can take one more ACL.
func (d *Driver) roomForOneMore() error {
	own := len(d.v.rules) + 1
	for _, sw := range d.cfg.Interfaces {
		l := d.v.lists[sw]
		n := own + len(l.output)
		if f := len(d.foreignInput(l)); f > 0 {
			n += f
		} else {
			n++ // the permit-everything ACL
		}
		if n > MaxInterfaceACLs {
			return fmt.Errorf("%w: sw_if_index %d would need %d", ErrInterfaceFull, sw, n)
		}
	}
	return nil
}

// order sets every interface's input ACL list to the driver's ACLs in
// priority order, then the foreign input ACLs (or, with none, the
// permit-everything ACL), keeping the output ACLs. Lists already right are
// left alone.
func (d *Driver) order(ctx context.Context) error {
	own := d.ownInput()
	for _, sw := range d.cfg.Interfaces {
		cur := d.v.lists[sw]
		in := slices.Clone(own)
		if f := d.foreignInput(cur); len(f) > 0 {
			in = append(in, f...)
		} else if len(own) > 0 {
			if d.v.permit == none {
				reply := &acl.ACLAddReplaceReply{}
				es := anyEntries()
				if err := d.call(ctx, &acl.ACLAddReplace{ACLIndex: none, Tag: d.permitTag(), Count: uint32(len(es)), R: es}, reply); err != nil {
					return err
				}
				d.v.permit = reply.ACLIndex
			}
			in = append(in, d.v.permit)
		}
		if slices.Equal(in, cur.input) {
			continue
		}
		all := append(slices.Clone(in), cur.output...)
		if len(all) > MaxInterfaceACLs {
			return fmt.Errorf("%w: sw_if_index %d would need %d", ErrInterfaceFull, sw, len(all))
		}
		reply := &acl.ACLInterfaceSetACLListReply{}
		req := &acl.ACLInterfaceSetACLList{SwIfIndex: interface_types.InterfaceIndex(sw), Count: uint8(len(all)), NInput: uint8(len(in)), Acls: all}
		if err := d.call(ctx, req, reply); err != nil {
			return err
		}
		d.v.lists[sw] = lists{input: in, output: cur.output}
	}
	if len(own) == 0 && d.v.permit != none {
		reply := &acl.ACLDelReply{}
		if err := d.call(ctx, &acl.ACLDel{ACLIndex: d.v.permit}, reply); err != nil {
			// Still on an interface no longer configured: it stays.
			d.log.Warn("cannot delete the permit-everything ACL", "acl", d.v.permit, "err", err)
			return nil
		}
		d.v.permit = none
	}
	return nil
}

func (d *Driver) permitTag() string { return d.cfg.TagPrefix + ":permit-rest" }

// path is the FIB path to next hop nh.
func (d *Driver) path(nh netip.Addr) fib_types.FibPath {
	p := fib_types.FibPath{SwIfIndex: none, TableID: d.cfg.TableID, Weight: 1, Type: fib_types.FIB_API_PATH_TYPE_NORMAL,
		Proto: fib_types.FIB_API_PATH_NH_PROTO_IP4, Nh: fib_types.FibPathNh{Address: address(nh).Un}}
	if d.cfg.NextHopInterface != 0 {
		p.SwIfIndex = d.cfg.NextHopInterface
	}
	if nh.Is6() {
		p.Proto = fib_types.FIB_API_PATH_NH_PROTO_IP6
	}
	return p
}

// ensurePolicy makes the rule's ABF policy id with the one path to nh,
// attached to every interface at the rule's priority.
func (d *Driver) ensurePolicy(ctx context.Context, ra *ruleACL, id uint32, nh netip.Addr) error {
	want := []fib_types.FibPath{d.path(nh)}
	if p := ra.policy; p != nil && (p.id != id || !slices.Equal(p.paths, want)) {
		if err := d.dropPolicy(ctx, ra); err != nil {
			return err
		}
	}
	if ra.policy == nil {
		reply := &abf.AbfPolicyAddDelReply{}
		req := &abf.AbfPolicyAddDel{IsAdd: true, Policy: abf.AbfPolicy{PolicyID: id, ACLIndex: ra.acl, NPaths: 1, Paths: want}}
		if err := d.call(ctx, req, reply); err != nil {
			return err
		}
		ra.policy = &policy{id: id, paths: want, attached: map[attachKey]uint32{}}
	}
	p := ra.policy
	wantKeys := map[attachKey]bool{}
	for _, sw := range d.cfg.Interfaces {
		wantKeys[attachKey{sw, nh.Is6()}] = true
	}
	prio := uint32(ra.prio)
	for k, at := range p.attached {
		if !wantKeys[k] || at != prio {
			if err := d.attach(ctx, p.id, k, at, false); err != nil {
				return err
			}
			delete(p.attached, k)
		}
	}
	for _, sw := range d.cfg.Interfaces {
		k := attachKey{sw, nh.Is6()}
		if _, ok := p.attached[k]; ok {
			continue
		}
		if err := d.attach(ctx, p.id, k, prio, true); err != nil {
			return err
		}
		p.attached[k] = prio
	}
	return nil
}

// dropPolicy detaches and deletes the rule's ABF policy.
func (d *Driver) dropPolicy(ctx context.Context, ra *ruleACL) error {
	p := ra.policy
	for k, prio := range p.attached {
		if err := d.attach(ctx, p.id, k, prio, false); err != nil {
			return err
		}
		delete(p.attached, k)
	}
	reply := &abf.AbfPolicyAddDelReply{}
	req := &abf.AbfPolicyAddDel{IsAdd: false, Policy: abf.AbfPolicy{PolicyID: p.id, ACLIndex: ra.acl, NPaths: uint8(len(p.paths)), Paths: p.paths}}
	if err := d.call(ctx, req, reply); err != nil {
		return err
	}
	ra.policy = nil
	return nil
}

func (d *Driver) attach(ctx context.Context, id uint32, k attachKey, prio uint32, add bool) error {
	reply := &abf.AbfItfAttachAddDelReply{}
	req := &abf.AbfItfAttachAddDel{IsAdd: add, Attach: abf.AbfItfAttach{PolicyID: id, SwIfIndex: interface_types.InterfaceIndex(k.sw), Priority: prio, IsIPv6: k.ipv6}}
	return d.call(ctx, req, reply)
}

// call sends req, decodes reply and turns a non-zero retval into a
// *dataplane.RetvalError.
func (d *Driver) call(ctx context.Context, req, reply api.Message) error {
	if err := d.conn.Invoke(ctx, req, reply); err != nil {
		return fmt.Errorf("%s: %s: %w", Name, req.GetMessageName(), err)
	}
	if rv := retvalOf(reply); rv != 0 {
		return fmt.Errorf("%s: %w", Name, &dataplane.RetvalError{Message: req.GetMessageName(), Retval: rv})
	}
	return nil
}

// retvalOf reads the retval of the replies the driver uses.
func retvalOf(m api.Message) int32 {
	switch r := m.(type) {
	case *acl.ACLAddReplaceReply:
		return r.Retval
	case *acl.ACLDelReply:
		return r.Retval
	case *acl.ACLInterfaceSetACLListReply:
		return r.Retval
	case *abf.AbfPolicyAddDelReply:
		return r.Retval
	case *abf.AbfItfAttachAddDelReply:
		return r.Retval
	}
	return 0
}

// load reads the driver's view from VPP unless it has one.
func (d *Driver) load(ctx context.Context) error {
	if d.v != nil {
		return nil
	}
	v := &view{rules: map[string]*ruleACL{}, byACL: map[uint32]*ruleACL{}, permit: none, lists: map[uint32]lists{}, foreign: map[uint32]bool{}}
	err := d.dump(ctx, &acl.ACLDump{ACLIndex: none}, func(m api.Message) {
		a, ok := m.(*acl.ACLDetails)
		if !ok {
			return
		}
		if a.Tag == d.permitTag() {
			if v.permit == none {
				v.permit = a.ACLIndex
			} else {
				v.strays = append(v.strays, &ruleACL{acl: a.ACLIndex})
			}
			return
		}
		prio, ident, ok := parseTag(d.cfg.TagPrefix, a.Tag)
		if !ok {
			return
		}
		ra := &ruleACL{ident: ident, prio: prio, acl: a.ACLIndex}
		if v.rules[ident] != nil {
			v.strays = append(v.strays, ra)
		} else {
			v.rules[ident] = ra
			v.byACL[ra.acl] = ra
		}
	})
	if err != nil {
		return err
	}
	for _, sw := range d.cfg.Interfaces {
		err := d.dump(ctx, &acl.ACLInterfaceListDump{SwIfIndex: interface_types.InterfaceIndex(sw)}, func(m api.Message) {
			if l, ok := m.(*acl.ACLInterfaceListDetails); ok && uint32(l.SwIfIndex) == sw && int(l.NInput) <= len(l.Acls) {
				v.lists[sw] = lists{input: slices.Clone(l.Acls[:l.NInput]), output: slices.Clone(l.Acls[l.NInput:])}
			}
		})
		if err != nil {
			return err
		}
	}
	policies := map[uint32]*policy{}
	err = d.dump(ctx, &abf.AbfPolicyDump{}, func(m api.Message) {
		p, ok := m.(*abf.AbfPolicyDetails)
		if !ok {
			return
		}
		own := v.byACL[p.Policy.ACLIndex]
		if own == nil {
			for _, s := range v.strays {
				if s.acl == p.Policy.ACLIndex {
					own = s
				}
			}
		}
		if own == nil || own.policy != nil {
			v.foreign[p.Policy.PolicyID] = true
			return
		}
		own.policy = &policy{id: p.Policy.PolicyID, paths: slices.Clone(p.Policy.Paths), attached: map[attachKey]uint32{}}
		policies[p.Policy.PolicyID] = own.policy
	})
	if err != nil {
		return err
	}
	err = d.dump(ctx, &abf.AbfItfAttachDump{}, func(m api.Message) {
		if a, ok := m.(*abf.AbfItfAttachDetails); ok {
			if p := policies[a.Attach.PolicyID]; p != nil {
				p.attached[attachKey{uint32(a.Attach.SwIfIndex), a.Attach.IsIPv6}] = a.Attach.Priority
			}
		}
	})
	if err != nil {
		return err
	}
	d.v = v
	d.log.Debug("read VPP's state", "own_acls", len(v.rules), "duplicates", len(v.strays))
	return nil
}

// dump sends a dump request and a control ping and hands each details
// message to each until the ping's reply.
func (d *Driver) dump(ctx context.Context, req api.Message, each func(api.Message)) error {
	s, err := d.conn.NewStream(ctx, core.WithReplySize(dumpBuffer))
	if err != nil {
		return fmt.Errorf("%s: %s: %w", Name, req.GetMessageName(), err)
	}
	defer func() { _ = s.Close() }()
	if err := s.SendMsg(req); err != nil {
		return fmt.Errorf("%s: %s: %w", Name, req.GetMessageName(), err)
	}
	if err := s.SendMsg(&memclnt.ControlPing{}); err != nil {
		return fmt.Errorf("%s: %s: %w", Name, req.GetMessageName(), err)
	}
	for {
		m, err := s.RecvMsg()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", Name, req.GetMessageName(), err)
		}
		if _, ok := m.(*memclnt.ControlPingReply); ok {
			return nil
		}
		each(m)
	}
}
