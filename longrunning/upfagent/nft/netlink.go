package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftaTableUserdata is NFTA_TABLE_USERDATA (Linux 5.13), which x/sys/unix
// does not name.
const nftaTableUserdata = 6

// socketBuffer is the send and receive buffer forced on the netlink
// socket: a batch is one sendmsg, and the kernel queues every echo and
// acknowledgement of it before that returns, so both must fit.
const socketBuffer = 64 << 20

// ioTimeout bounds one netlink exchange when ctx has no deadline.
const ioTimeout = 10 * time.Second

// conn is one NETLINK_NETFILTER socket, used by one goroutine at a time.
type conn struct {
	nl *netlink.Conn
}

// dialNetlink opens the socket in the network namespace netns (0: the
// process's own) with buffers for big batches (SO_*BUFFORCE needs
// CAP_NET_ADMIN, which nf_tables needs anyway; without it the system's
// maximum applies).
func dialNetlink(netns int) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, err
	}
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer)
				}
			}
		})
	}
	return c, nil
}

func (c *conn) close() error { return c.nl.Close() }

func nftType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// nfgenmsg is the header of every nf_tables message.
func nfgenmsg(family byte, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

func (c *conn) deadline(ctx context.Context) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(ioTimeout)
	}
	_ = c.nl.SetDeadline(d)
}

// kernelError turns a netlink error into one that says what it means for
// the driver: ErrNoNFTables when the kernel lacks nf_tables.
func kernelError(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPROTONOSUPPORT):
		return fmt.Errorf("nftables: %s: %w: the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK): %w", what, ErrNoNFTables, err)
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("nftables: %s: nf_tables needs CAP_NET_ADMIN: %w", what, err)
	}
	return fmt.Errorf("nftables: %s: %w", what, err)
}

// generation is the ruleset's generation id (NFT_MSG_GETGEN): every
// commit of any table in the namespace increments it.
func (c *conn) generation(ctx context.Context) (uint32, error) {
	c.deadline(ctx)
	msgs, err := c.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, 0),
	})
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("nftables: %w: the kernel does not answer nf_tables requests (CONFIG_NF_TABLES; modprobe nf_tables): %w", ErrNoNFTables, err)
		}
		return 0, kernelError("nf_tables generation", err)
	}
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return 0, err
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, fmt.Errorf("nftables: %w: no generation id in the kernel's answer", ErrNoNFTables)
}

func decoder(m netlink.Message) (*netlink.AttributeDecoder, error) {
	if len(m.Data) < 4 {
		return nil, errors.New("short netlink message")
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	return ad, nil
}

// tableInfo is a table as the kernel describes it.
type tableInfo struct {
	comment string
}

// table reads one table; found is false when it does not exist.
func (c *conn) table(ctx context.Context, family byte, name string) (t tableInfo, found bool, err error) {
	ae := encoder()
	ae.String(unix.NFTA_TABLE_NAME, name)
	data, err := ae.Encode()
	if err != nil {
		return t, false, err
	}
	c.deadline(ctx)
	msgs, err := c.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETTABLE), Flags: netlink.Request},
		Data:   append(nfgenmsg(family, 0), data...),
	})
	if errors.Is(err, unix.ENOENT) {
		return t, false, nil
	}
	if err != nil {
		return t, false, kernelError("read table "+name, err)
	}
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return t, false, err
		}
		for ad.Next() {
			if ad.Type() == nftaTableUserdata {
				t.comment = comment(ad.Bytes())
			}
		}
	}
	return t, true, nil
}

// chains lists the names of a table's chains.
func (c *conn) chains(ctx context.Context, family byte, table string) (map[string]bool, error) {
	c.deadline(ctx)
	msgs, err := c.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETCHAIN), Flags: netlink.Request | netlink.Dump},
		Data:   nfgenmsg(family, 0),
	})
	if err != nil {
		return nil, kernelError("list chains", err)
	}
	out := map[string]bool{}
	for _, m := range msgs {
		ad, err := decoder(m)
		if err != nil {
			return nil, err
		}
		var tname, cname string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				tname = ad.String()
			case unix.NFTA_CHAIN_NAME:
				cname = ad.String()
			}
		}
		if tname == table {
			out[cname] = true
		}
	}
	return out, nil
}

// ruleInfo is a rule as a dump or an echo describes it: what the driver
// needs, not its expressions.
type ruleInfo struct {
	family  byte
	chain   string
	handle  uint64
	comment string
}

func parseRule(m netlink.Message) (ruleInfo, error) {
	r := ruleInfo{family: m.Data[0]}
	ad, err := decoder(m)
	if err != nil {
		return r, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			r.chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			r.handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.comment = comment(ad.Bytes())
		}
	}
	return r, ad.Err()
}

// rules dumps the rules of one chain of a table, in their order. (One
// dump per chain: the kernel resumes a dump by walking the rules it
// already sent, so a dump of a whole table costs the square of its size.)
func (c *conn) rules(ctx context.Context, family byte, table, chain string) ([]ruleInfo, error) {
	ae := encoder()
	ae.String(unix.NFTA_RULE_TABLE, table)
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	data, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	c.deadline(ctx)
	msgs, err := c.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		Data:   append(nfgenmsg(family, 0), data...),
	})
	if err != nil {
		return nil, kernelError("list rules of "+chain, err)
	}
	out := make([]ruleInfo, 0, len(msgs))
	for _, m := range msgs {
		if m.Header.Type != nftType(unix.NFT_MSG_NEWRULE) {
			continue
		}
		r, err := parseRule(m)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// commit sends msgs as one nf_tables batch (one transaction: all of it
// takes effect or none) and returns the rules the kernel echoed (those of
// NEWRULE messages flagged NLM_F_ECHO, with their handles). Only the last
// message asks for an acknowledgement: the kernel reports every error of a
// batch anyway, before that acknowledgement. A refused batch is an error
// the kernel's first complaint explains; the socket may then hold more
// replies and must be closed.
func (c *conn) commit(ctx context.Context, msgs []netlink.Message) ([]ruleInfo, error) {
	batch := make([]netlink.Message, 0, len(msgs)+2)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	for i, m := range msgs {
		m.Header.Flags |= netlink.Request
		if i == len(msgs)-1 {
			m.Header.Flags |= netlink.Acknowledge
		}
		batch = append(batch, m)
	}
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	c.deadline(ctx)
	sent, err := c.nl.SendMessages(batch)
	if err != nil {
		return nil, fmt.Errorf("send batch: %w", err)
	}
	last := sent[len(sent)-2].Header.Sequence
	var echoed []ruleInfo
	for {
		replies, err := c.nl.Receive()
		if err != nil {
			var oe *netlink.OpError
			if errors.As(err, &oe) && oe.Message != "" {
				return nil, fmt.Errorf("the kernel refused the batch: %s: %w", oe.Message, oe.Err)
			}
			return nil, fmt.Errorf("the kernel refused the batch: %w", err)
		}
		for _, m := range replies {
			switch {
			case m.Header.Type == netlink.Error && m.Header.Sequence == last:
				return echoed, nil
			case m.Header.Type == nftType(unix.NFT_MSG_NEWRULE):
				r, err := parseRule(m)
				if err != nil {
					return nil, err
				}
				echoed = append(echoed, r)
			}
		}
	}
}

func encoder() *netlink.AttributeEncoder {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	return ae
}

// comment is the comment in a table's or rule's user data (the TLV nft
// writes and shows), "" when there is none.
func comment(udata []byte) string {
	for len(udata) >= 2 {
		typ, n := udata[0], int(udata[1])
		if len(udata) < 2+n {
			return ""
		}
		if userdata.Type(typ) == userdata.TypeComment {
			b := udata[2 : 2+n]
			if len(b) > 0 && b[len(b)-1] == 0 {
				b = b[:len(b)-1]
			}
			return string(b)
		}
		udata = udata[2+n:]
	}
	return ""
}

func commentData(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// newTable creates a table (or leaves it as it is: no NLM_F_EXCL).
func newTable(family byte, name, cmt string) (netlink.Message, error) {
	ae := encoder()
	ae.String(unix.NFTA_TABLE_NAME, name)
	ae.Uint32(unix.NFTA_TABLE_FLAGS, 0)
	ae.Bytes(nftaTableUserdata, commentData(cmt))
	data, err := ae.Encode()
	return netlink.Message{Header: netlink.Header{Type: nftType(unix.NFT_MSG_NEWTABLE), Flags: netlink.Create},
		Data: append(nfgenmsg(family, 0), data...)}, err
}

// hook makes a base chain.
type hook struct {
	num      uint32
	priority int32
	typ      string
}

// newChain creates a chain (a base chain with h, policy accept; a regular
// one with h nil), or leaves an existing one as it is.
func newChain(family byte, table, name string, h *hook) (netlink.Message, error) {
	ae := encoder()
	ae.String(unix.NFTA_CHAIN_TABLE, table)
	ae.String(unix.NFTA_CHAIN_NAME, name)
	if h != nil {
		ae.Nested(unix.NFTA_CHAIN_HOOK, func(n *netlink.AttributeEncoder) error {
			n.Uint32(unix.NFTA_HOOK_HOOKNUM, h.num)
			n.Uint32(unix.NFTA_HOOK_PRIORITY, uint32(h.priority))
			return nil
		})
		ae.Uint32(unix.NFTA_CHAIN_POLICY, 1) // NF_ACCEPT
		ae.String(unix.NFTA_CHAIN_TYPE, h.typ)
	}
	data, err := ae.Encode()
	return netlink.Message{Header: netlink.Header{Type: nftType(unix.NFT_MSG_NEWCHAIN), Flags: netlink.Create},
		Data: append(nfgenmsg(family, 0), data...)}, err
}

// where places a new rule in its chain.
type where struct {
	// before is the handle of the rule it goes before; 0: at the end.
	before uint64
}

// newRule adds a rule with exprs and a comment (the kernel echoes it with
// its handle when the message is flagged NLM_F_ECHO).
func newRule(family byte, table, chain string, exprs []expr.Any, cmt string, at where) (netlink.Message, error) {
	ae := encoder()
	ae.String(unix.NFTA_RULE_TABLE, table)
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	var eerr error
	ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(n *netlink.AttributeEncoder) error {
		for _, e := range exprs {
			b, err := expr.Marshal(family, e)
			if err != nil {
				eerr = err
				return err
			}
			n.Bytes(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, b)
		}
		return nil
	})
	ae.Bytes(unix.NFTA_RULE_USERDATA, commentData(cmt))
	flags := netlink.Create
	if at.before != 0 {
		ae.Uint64(unix.NFTA_RULE_POSITION, at.before)
	} else {
		flags |= unix.NLM_F_APPEND
	}
	data, err := ae.Encode()
	if eerr != nil {
		err = eerr
	}
	return netlink.Message{Header: netlink.Header{Type: nftType(unix.NFT_MSG_NEWRULE), Flags: flags},
		Data: append(nfgenmsg(family, 0), data...)}, err
}

// delRule deletes the rule with handle h.
func delRule(family byte, table, chain string, h uint64) (netlink.Message, error) {
	ae := encoder()
	ae.String(unix.NFTA_RULE_TABLE, table)
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	ae.Uint64(unix.NFTA_RULE_HANDLE, h)
	data, err := ae.Encode()
	return netlink.Message{Header: netlink.Header{Type: nftType(unix.NFT_MSG_DELRULE)},
		Data: append(nfgenmsg(family, 0), data...)}, err
}

// delChain deletes a chain (empty and unreferenced by then).
func delChain(family byte, table, name string) (netlink.Message, error) {
	ae := encoder()
	ae.String(unix.NFTA_CHAIN_TABLE, table)
	ae.String(unix.NFTA_CHAIN_NAME, name)
	data, err := ae.Encode()
	return netlink.Message{Header: netlink.Header{Type: nftType(unix.NFT_MSG_DELCHAIN)},
		Data: append(nfgenmsg(family, 0), data...)}, err
}
