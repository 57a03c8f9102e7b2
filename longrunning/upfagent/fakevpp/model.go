package fakevpp

import (
	"maps"
	"slices"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/abf"
	"go.fd.io/govpp/binapi/acl"
	"go.fd.io/govpp/binapi/acl_types"
	"go.fd.io/govpp/binapi/fib_types"
	"go.fd.io/govpp/binapi/interface_types"
)

// ACL is an ACL the fake holds.
type ACL struct {
	Tag   string
	Rules []acl_types.ACLRule
}

// Lists are an interface's ACLs, in order.
type Lists struct{ Input, Output []uint32 }

// Policy is an ABF policy the fake holds.
type Policy struct {
	ACL   uint32
	Paths []fib_types.FibPath
}

// state is the modelled VPP state. Guarded by VPP.mu.
type state struct {
	acls     map[uint32]ACL
	nextACL  uint32
	lists    map[uint32]Lists
	policies map[uint32]Policy
	attached []abf.AbfItfAttach
}

func newState() state {
	return state{acls: map[uint32]ACL{}, lists: map[uint32]Lists{}, policies: map[uint32]Policy{}}
}

const none = ^uint32(0)

// apply carries out a request on the state, fills the reply and returns
// the retval: VPP's own error numbers (go.fd.io/govpp/api VPPApiError).
// Where VPP's own checks are unknown here, the fake is the stricter: it
// refuses to delete an ABF policy that is still attached.
func (s *state) apply(msg, reply api.Message) int32 {
	switch m := msg.(type) {
	case *acl.ACLAddReplace:
		idx := m.ACLIndex
		if idx == none {
			idx = s.nextACL
			s.nextACL++
		} else if _, ok := s.acls[idx]; !ok {
			return int32(api.NO_SUCH_ENTRY)
		}
		s.acls[idx] = ACL{Tag: m.Tag, Rules: slices.Clone(m.R)}
		reply.(*acl.ACLAddReplaceReply).ACLIndex = idx
	case *acl.ACLDel:
		if _, ok := s.acls[m.ACLIndex]; !ok {
			return int32(api.NO_SUCH_ENTRY)
		}
		for _, l := range s.lists {
			if slices.Contains(l.Input, m.ACLIndex) {
				return int32(api.ACL_IN_USE_INBOUND)
			}
			if slices.Contains(l.Output, m.ACLIndex) {
				return int32(api.ACL_IN_USE_OUTBOUND)
			}
		}
		for _, p := range s.policies {
			if p.ACL == m.ACLIndex {
				return int32(api.ACL_IN_USE_BY_LOOKUP_CONTEXT)
			}
		}
		delete(s.acls, m.ACLIndex)
	case *acl.ACLInterfaceSetACLList:
		if int(m.NInput) > len(m.Acls) {
			return int32(api.INVALID_VALUE)
		}
		for _, a := range m.Acls {
			if _, ok := s.acls[a]; !ok {
				return int32(api.NO_SUCH_ENTRY)
			}
		}
		if len(m.Acls) == 0 {
			delete(s.lists, uint32(m.SwIfIndex))
			break
		}
		s.lists[uint32(m.SwIfIndex)] = Lists{Input: slices.Clone(m.Acls[:m.NInput]), Output: slices.Clone(m.Acls[m.NInput:])}
	case *abf.AbfPolicyAddDel:
		p, exists := s.policies[m.Policy.PolicyID]
		if m.IsAdd {
			if _, ok := s.acls[m.Policy.ACLIndex]; !ok {
				return int32(api.NO_SUCH_ENTRY)
			}
			if exists && p.ACL != m.Policy.ACLIndex {
				return int32(api.INVALID_VALUE)
			}
			// VPP adds the paths to an existing policy's path list.
			p.ACL = m.Policy.ACLIndex
			p.Paths = append(p.Paths, m.Policy.Paths...)
			s.policies[m.Policy.PolicyID] = p
			break
		}
		if !exists {
			return int32(api.NO_SUCH_ENTRY)
		}
		for _, a := range s.attached {
			if a.PolicyID == m.Policy.PolicyID {
				return int32(api.INVALID_VALUE)
			}
		}
		p.Paths = slices.DeleteFunc(p.Paths, func(x fib_types.FibPath) bool { return slices.Contains(m.Policy.Paths, x) })
		if len(p.Paths) == 0 {
			delete(s.policies, m.Policy.PolicyID)
		} else {
			s.policies[m.Policy.PolicyID] = p
		}
	case *abf.AbfItfAttachAddDel:
		at := slices.IndexFunc(s.attached, func(a abf.AbfItfAttach) bool {
			return a.PolicyID == m.Attach.PolicyID && a.SwIfIndex == m.Attach.SwIfIndex && a.IsIPv6 == m.Attach.IsIPv6
		})
		if !m.IsAdd {
			if at < 0 {
				return int32(api.NO_SUCH_ENTRY)
			}
			s.attached = slices.Delete(s.attached, at, at+1)
			break
		}
		if _, ok := s.policies[m.Attach.PolicyID]; !ok {
			return int32(api.NO_SUCH_ENTRY)
		}
		if at >= 0 {
			return int32(api.ENTRY_ALREADY_EXISTS)
		}
		s.attached = append(s.attached, m.Attach)
	}
	return 0
}

// dump returns the details messages answering a dump request.
func (s *state) dump(req api.Message) []api.Message {
	var out []api.Message
	switch m := req.(type) {
	case *acl.ACLDump:
		for _, idx := range slices.Sorted(maps.Keys(s.acls)) {
			if m.ACLIndex != none && m.ACLIndex != idx {
				continue
			}
			a := s.acls[idx]
			out = append(out, &acl.ACLDetails{ACLIndex: idx, Tag: a.Tag, Count: uint32(len(a.Rules)), R: slices.Clone(a.Rules)})
		}
	case *acl.ACLInterfaceListDump:
		ifs := slices.Sorted(maps.Keys(s.lists))
		if m.SwIfIndex != interface_types.InterfaceIndex(none) {
			ifs = []uint32{uint32(m.SwIfIndex)} // VPP answers for the one interface, lists or not
		}
		for _, sw := range ifs {
			l := s.lists[sw]
			all := append(slices.Clone(l.Input), l.Output...)
			out = append(out, &acl.ACLInterfaceListDetails{SwIfIndex: interface_types.InterfaceIndex(sw),
				Count: uint8(len(all)), NInput: uint8(len(l.Input)), Acls: all})
		}
	case *abf.AbfPolicyDump:
		for _, id := range slices.Sorted(maps.Keys(s.policies)) {
			p := s.policies[id]
			out = append(out, &abf.AbfPolicyDetails{Policy: abf.AbfPolicy{PolicyID: id, ACLIndex: p.ACL,
				NPaths: uint8(len(p.Paths)), Paths: slices.Clone(p.Paths)}})
		}
	case *abf.AbfItfAttachDump:
		for _, a := range s.attached {
			out = append(out, &abf.AbfItfAttachDetails{Attach: a})
		}
	}
	return out
}

// ACLs returns a copy of the ACLs by index.
func (v *VPP) ACLs() map[uint32]ACL {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[uint32]ACL, len(v.state.acls))
	for k, a := range v.state.acls {
		out[k] = ACL{Tag: a.Tag, Rules: slices.Clone(a.Rules)}
	}
	return out
}

// InterfaceACLs returns an interface's ACL lists.
func (v *VPP) InterfaceACLs(swIfIndex uint32) Lists {
	v.mu.Lock()
	defer v.mu.Unlock()
	l := v.state.lists[swIfIndex]
	return Lists{Input: slices.Clone(l.Input), Output: slices.Clone(l.Output)}
}

// Policies returns a copy of the ABF policies by id.
func (v *VPP) Policies() map[uint32]Policy {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[uint32]Policy, len(v.state.policies))
	for k, p := range v.state.policies {
		out[k] = Policy{ACL: p.ACL, Paths: slices.Clone(p.Paths)}
	}
	return out
}

// Attachments returns the ABF interface attachments, in the order made.
func (v *VPP) Attachments() []abf.AbfItfAttach {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.state.attached)
}

// Restart forgets every ACL, list, policy and attachment, like a VPP that
// restarted (ACL indexes start again at 0).
func (v *VPP) Restart() {
	v.mu.Lock()
	v.state = newState()
	v.mu.Unlock()
}
