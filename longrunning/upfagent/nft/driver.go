package nft

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
)

// Name is the driver's name in configuration and errors.
const Name = "nftables"

// ErrNoNFTables is returned (wrapped) by New when the kernel has no
// nf_tables.
var ErrNoNFTables = errors.New("no nf_tables in this kernel")

// ErrForeignTable is returned (wrapped) by New when a table with the
// driver's name exists and was not made by it.
var ErrForeignTable = errors.New("nftables: the table exists and was not made by kmep")

// tableComment marks the driver's tables (NFTA_TABLE_USERDATA).
const tableComment = "kmep upfagent: traffic rules of the UPF agent; changes are undone"

// commentPrefix starts the comment of every rule the driver makes.
const commentPrefix = "kmep:"

// maxIdent is the longest rule identity in a comment (nft shows comments
// of up to 128 bytes).
const maxIdent = 96

// maxBatch bounds the messages of one netlink batch; a Batch with more is
// committed in several transactions, each rule whole in one of them.
const maxBatch = 8192

// Config configures a Driver.
type Config struct {
	// Table names the driver's two tables (families ip and ip6; nftables'
	// dup exists only there, not in the inet family). No ':'. Zero value:
	// "kmep".
	Table string
	// Interfaces are the names of the interfaces whose incoming packets the
	// rules act on (the UE side); a trailing '*' matches a prefix ("gtp*").
	// Zero value: every interface.
	Interfaces []string
	// NetNS is an open file descriptor of the network namespace to program.
	// Zero value: the process's own.
	NetNS int
	// Dial opens the netlink socket. Zero value: NETLINK_NETFILTER in NetNS.
	Dial func() (*netlink.Conn, error)
	// Log receives the driver's lines. Zero value: slog.Default().
	Log *slog.Logger
}

// Driver applies traffic rules to the Linux kernel's nftables. Its methods
// may be called concurrently; they take turns.
type Driver struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	c  *conn // nil: to be dialled
	v  *view // nil: to be read from the kernel
}

// view is what the driver made in its tables, as far as it knows.
type view struct {
	rules map[string]*ruleState // by ident
	// order holds, per chain, the intact rules that have parts there, in
	// the chain's order: by priority, then ident.
	order [numChains][]*ruleState
}

// ruleState is one traffic rule in the kernel.
type ruleState struct {
	ident string
	prio  int
	// handles are the rule's parts per chain, in part order; a 0 is a part
	// being added (its handle comes with the kernel's echo).
	handles [numChains][]uint64
	// broken: parts missing, repeated or out of order; the rule is applied
	// again (Missing) or removed (Sweep).
	broken bool
}

func (r *ruleState) less(prio int, ident string) int {
	return cmp.Or(cmp.Compare(r.prio, prio), strings.Compare(r.ident, ident))
}

// New checks cfg, makes sure the kernel has nf_tables, and creates the
// driver's tables and chains where they are missing (nothing else: a
// restart changes nothing in the kernel). It fails, saying so, on a kernel
// without nf_tables and when a table of its name exists that it did not
// make.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Table == "" {
		cfg.Table = "kmep"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if strings.ContainsAny(cfg.Table, ": \x00") || len(cfg.Table) > 64 {
		return nil, fmt.Errorf("nftables: table name %q: at most 64 bytes, no ':', space or NUL", cfg.Table)
	}
	seen := map[string]bool{}
	for _, i := range cfg.Interfaces {
		n := strings.TrimSuffix(i, "*")
		if n == "" || len(n) >= unix.IFNAMSIZ || strings.ContainsAny(n, "*/: \x00") || seen[i] {
			return nil, fmt.Errorf("nftables: interface %q is not an interface name (or a prefix with '*'), or is listed twice", i)
		}
		seen[i] = true
	}
	cfg.Interfaces = slices.Clone(cfg.Interfaces)
	slices.Sort(cfg.Interfaces)
	d := &Driver{cfg: cfg, log: cfg.Log.With("driver", Name)}
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.conn()
	if err != nil {
		return nil, err
	}
	if _, err := c.generation(ctx); err != nil {
		d.drop()
		return nil, err
	}
	if err := d.load(ctx); err != nil {
		d.drop()
		return nil, err
	}
	return d, nil
}

// Close closes the netlink socket; the rules stay in the kernel.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drop()
	return nil
}

func (d *Driver) conn() (*conn, error) {
	if d.c != nil {
		return d.c, nil
	}
	dial := d.cfg.Dial
	if dial == nil {
		dial = func() (*netlink.Conn, error) { return dialNetlink(d.cfg.NetNS) }
	}
	nl, err := dial()
	if err != nil {
		return nil, kernelError("netlink socket", err)
	}
	_ = nl.SetOption(netlink.ExtendedAcknowledge, true)
	d.c = &conn{nl: nl}
	return d.c, nil
}

// drop closes the socket and forgets the view: after a failure, what the
// socket holds and what the kernel holds are unknown.
func (d *Driver) drop() {
	if d.c != nil {
		_ = d.c.close()
		d.c = nil
	}
	d.v = nil
}

// Generation is the kernel's ruleset generation: every commit to any table
// of the namespace changes it (for tests: a restart of the agent must not).
func (d *Driver) Generation(ctx context.Context) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.conn()
	if err != nil {
		return 0, err
	}
	g, err := c.generation(ctx)
	if err != nil {
		d.drop()
	}
	return g, err
}

// Forget drops the driver's view: the next call reads the kernel again.
func (d *Driver) Forget() {
	d.mu.Lock()
	d.v = nil
	d.mu.Unlock()
}

// Ident is how a rule is named in its comments: "<app>:<rule>", cut and
// followed by "~" and 16 hex digits of its SHA-256 when longer than 96 bytes.
func Ident(app, rule string) string {
	id := app + ":" + rule
	if len(id) <= maxIdent {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return id[:maxIdent-17] + "~" + hex.EncodeToString(sum[:8])
}

// Comment is the comment of part i of n of a rule: "kmep:<prio>:<ident>#<i>/<n>".
func Comment(prio int, ident string, i, n int) string {
	return commentPrefix + strconv.Itoa(prio) + ":" + ident + "#" + strconv.Itoa(i) + "/" + strconv.Itoa(n)
}

// parseComment reads a rule part's comment.
func parseComment(s string) (prio int, ident string, i, n int, ok bool) {
	rest, found := strings.CutPrefix(s, commentPrefix)
	if !found {
		return
	}
	p, rest, found := strings.Cut(rest, ":")
	if !found {
		return
	}
	h := strings.LastIndexByte(rest, '#')
	if h < 0 {
		return
	}
	ident = rest[:h]
	is, ns, found := strings.Cut(rest[h+1:], "/")
	var e1, e2, e3 error
	prio, e1 = strconv.Atoi(p)
	i, e2 = strconv.Atoi(is)
	n, e3 = strconv.Atoi(ns)
	ok = found && e1 == nil && e2 == nil && e3 == nil && ident != "" && i >= 0 && i < n
	return
}

func dispatchComment(iface string) string {
	if iface == "" {
		iface = "*"
	}
	return commentPrefix + "jump:" + iface
}

var families4and6 = []byte{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6}

func famName(f byte) string {
	if f == unix.NFPROTO_IPV6 {
		return "ip6"
	}
	return "ip"
}

// load makes the tables, chains and dispatch rules that are missing (one
// batch), then reads the driver's rules into a new view.
func (d *Driver) load(ctx context.Context) error {
	c, err := d.conn()
	if err != nil {
		return err
	}
	var msgs []netlink.Message
	add := func(m netlink.Message, err error) error {
		msgs = append(msgs, m)
		return err
	}
	type base struct {
		name, to string
		hook     hook
	}
	bases := []base{
		{BaseFilter, RulesChain, hook{unix.NF_INET_PRE_ROUTING, -150, "filter"}},
		{BaseNAT, NATChain, hook{unix.NF_INET_PRE_ROUTING, -100, "nat"}},
	}
	v := &view{rules: map[string]*ruleState{}}
	parts := map[*ruleState]map[int]bool{}
	counts := map[*ruleState]int{}
	for _, fam := range families4and6 {
		t, found, err := c.table(ctx, fam, d.cfg.Table)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		if found {
			if have, err = c.chains(ctx, fam, d.cfg.Table); err != nil {
				return err
			}
			if err := d.checkOwner(fam, t, have); err != nil {
				return err
			}
		} else if err := add(newTable(fam, d.cfg.Table, tableComment)); err != nil {
			return err
		}
		for _, name := range []string{RulesChain, NATChain} {
			if !have[name] {
				if err := add(newChain(fam, d.cfg.Table, name, nil)); err != nil {
					return err
				}
			}
		}
		for _, b := range bases {
			var cur []ruleInfo
			if have[b.name] {
				if cur, err = c.rules(ctx, fam, d.cfg.Table, b.name); err != nil {
					return err
				}
			} else if err := add(newChain(fam, d.cfg.Table, b.name, &b.hook)); err != nil {
				return err
			}
			if err := d.dispatchMsgs(fam, b.name, b.to, cur, add); err != nil {
				return err
			}
		}
		for _, ch := range []chainRef{chainOf(famNum(fam), false), chainOf(famNum(fam), true)} {
			if !have[ch.name()] {
				continue
			}
			rs, err := c.rules(ctx, fam, d.cfg.Table, ch.name())
			if err != nil {
				return err
			}
			d.readChain(v, ch, rs, parts, counts)
		}
	}
	for st, ps := range parts {
		if len(ps) != counts[st] {
			st.broken = true
		}
	}
	for ch := range v.order {
		v.order[ch] = slices.DeleteFunc(v.order[ch], func(st *ruleState) bool { return st.broken })
	}
	if len(msgs) > 0 {
		if _, err := c.commit(ctx, msgs); err != nil {
			d.drop()
			return fmt.Errorf("nftables: create table %s: %w", d.cfg.Table, err)
		}
		d.log.Info("nftables tables and chains created", "table", d.cfg.Table, "interfaces", d.cfg.Interfaces, "messages", len(msgs))
	}
	d.v = v
	return nil
}

func famNum(f byte) int {
	if f == unix.NFPROTO_IPV6 {
		return 6
	}
	return 4
}

// checkOwner refuses a table the driver did not make: one with another
// comment, or (on kernels before 5.13, which keep no table comment) with a
// chain of another name.
func (d *Driver) checkOwner(fam byte, t tableInfo, chains map[string]bool) error {
	if t.comment == tableComment {
		return nil
	}
	if t.comment == "" {
		foreign := false
		for name := range chains {
			foreign = foreign || !slices.Contains([]string{BaseFilter, BaseNAT, RulesChain, NATChain}, name)
		}
		if !foreign {
			return nil
		}
	}
	return fmt.Errorf("%w: table %s %s (comment %q): set another table name (KMEP_NFT_TABLE)", ErrForeignTable,
		famName(fam), d.cfg.Table, t.comment)
}

// dispatchMsgs adds the messages that make a base chain's dispatch rules
// (its rules with a "kmep:jump:" comment) what the configuration says,
// leaving them alone when they are.
func (d *Driver) dispatchMsgs(fam byte, chain, to string, cur []ruleInfo, add func(netlink.Message, error) error) error {
	want := []string{""}
	if len(d.cfg.Interfaces) > 0 {
		want = d.cfg.Interfaces
	}
	var have []string
	var handles []uint64
	for _, r := range cur {
		if iface, ok := strings.CutPrefix(r.comment, commentPrefix+"jump:"); ok {
			if iface == "*" {
				iface = ""
			}
			have = append(have, iface)
			handles = append(handles, r.handle)
		}
	}
	slices.Sort(have)
	if slices.Equal(have, want) {
		return nil
	}
	for _, h := range handles {
		if err := add(delRule(fam, d.cfg.Table, chain, h)); err != nil {
			return err
		}
	}
	for _, iface := range want {
		if err := add(newRule(fam, d.cfg.Table, chain, dispatch(iface, to), dispatchComment(iface), where{})); err != nil {
			return err
		}
	}
	return nil
}

// readChain adds the rules of chain ch (in kernel order) to v, marking as
// broken the rules whose parts are out of order.
func (d *Driver) readChain(v *view, ch chainRef, rs []ruleInfo, parts map[*ruleState]map[int]bool, counts map[*ruleState]int) {
	var prev *ruleState
	prevPart := -1
	done := map[*ruleState]bool{} // rules whose run of parts in this chain ended
	for _, r := range rs {
		prio, ident, i, n, ok := parseComment(r.comment)
		if !ok {
			continue // not the driver's: left alone
		}
		st := v.rules[ident]
		if st == nil {
			st = &ruleState{ident: ident, prio: prio}
			v.rules[ident] = st
			parts[st] = map[int]bool{}
			counts[st] = n
		}
		st.handles[ch] = append(st.handles[ch], r.handle)
		switch {
		case st.prio != prio || counts[st] != n || parts[st][i]:
			st.broken = true
		case st == prev:
			if i < prevPart {
				st.broken = true
			}
		case done[st], prev != nil && !prev.broken && prev.less(prio, ident) > 0:
			st.broken = true // not where its priority puts it
		}
		parts[st][i] = true
		if st != prev {
			if prev != nil {
				done[prev] = true
			}
			if !st.broken {
				v.order[ch] = append(v.order[ch], st)
			}
		}
		prev, prevPart = st, i
	}
}

// prepared is one Op, translated.
type prepared struct {
	at     int // index in the Batch
	ident  string
	prio   int
	parts  []part // nil for a removal
	remove bool
}

func (p prepared) size(v *view) int {
	n := len(p.parts)
	if st := v.rules[p.ident]; st != nil {
		for _, hs := range st.handles {
			n += len(hs)
		}
	}
	return n
}

// Apply creates or replaces the rule's nftables rules in one transaction.
func (d *Driver) Apply(ctx context.Context, r dataplane.Rule, prev dataplane.Handle) (dataplane.Handle, error) {
	res := d.Batch(ctx, []dataplane.Op{{Apply: &r, Prev: prev}})
	return res[0].Handle, res[0].Err
}

// Remove takes the rule's nftables rules out in one transaction; a rule
// the driver does not hold is removed already.
func (d *Driver) Remove(ctx context.Context, a dataplane.Applied) error {
	return d.Batch(ctx, []dataplane.Op{{Remove: &a}})[0].Err
}

// Batch applies and removes rules in one netlink transaction (several when
// they need more than maxBatch messages; a rule is always whole in one).
// When the kernel refuses a transaction, each rule of it is tried in a
// transaction of its own, so that a refused rule fails alone. Rules that
// cannot be expressed get a *dataplane.UnsupportedError and change nothing.
// The handles returned are nil: the driver finds its rules by their
// comments.
func (d *Driver) Batch(ctx context.Context, ops []dataplane.Op) []dataplane.Result {
	res := make([]dataplane.Result, len(ops))
	var todo []prepared
	for i, op := range ops {
		switch {
		case op.Apply != nil:
			parts, err := translate(*op.Apply)
			if err != nil {
				res[i].Err = err
				continue
			}
			prio := 0
			if op.Apply.Traffic.Priority != nil {
				prio = *op.Apply.Traffic.Priority
			}
			todo = append(todo, prepared{at: i, ident: Ident(op.Apply.AppInstanceID, op.Apply.ID), prio: prio, parts: parts})
		case op.Remove != nil:
			todo = append(todo, prepared{at: i, ident: Ident(op.Remove.AppInstanceID, op.Remove.ID), remove: true})
		default:
			res[i].Err = errors.New("nftables: an Op with neither Apply nor Remove")
		}
	}
	if len(todo) == 0 {
		return res
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fail := func(ps []prepared, err error) {
		for _, p := range ps {
			res[p.at].Err = err
		}
	}
	for len(todo) > 0 {
		if err := d.ready(ctx); err != nil {
			fail(todo, err)
			return res
		}
		// A transaction: as many ops as fit, each rule once.
		n, size, in := 0, 0, map[string]bool{}
		for n < len(todo) && !in[todo[n].ident] && (n == 0 || size+todo[n].size(d.v) <= maxBatch) {
			in[todo[n].ident] = true
			size += todo[n].size(d.v)
			n++
		}
		group := todo[:n]
		todo = todo[n:]
		err := d.commitOps(ctx, group)
		if err == nil || len(group) == 1 || ctx.Err() != nil {
			fail(group, err)
			continue
		}
		d.log.Warn("nftables refused a batch: applying its rules one by one", "rules", len(group), "err", err)
		for _, p := range group {
			if err := d.ready(ctx); err != nil {
				res[p.at].Err = err
				continue
			}
			res[p.at].Err = d.commitOps(ctx, []prepared{p})
		}
	}
	return res
}

// ready makes sure the socket is open and the view read.
func (d *Driver) ready(ctx context.Context) error {
	if d.v != nil && d.c != nil {
		return nil
	}
	return d.load(ctx)
}

// commitOps makes ps in one transaction: first the parts of the rules that
// are replaced or removed go, then the new parts are inserted, in priority
// order, before the first rule that comes after them and is already in the
// kernel. On any failure the view is dropped (it is read again).
func (d *Driver) commitOps(ctx context.Context, ps []prepared) error {
	v := d.v
	var msgs []netlink.Message
	var merr error
	add := func(m netlink.Message, err error) {
		msgs = append(msgs, m)
		merr = cmp.Or(merr, err)
	}
	for _, p := range ps {
		st := v.rules[p.ident]
		if st == nil {
			continue
		}
		for ch, hs := range st.handles {
			c := chainRef(ch)
			for _, h := range hs {
				add(delRule(c.family(), d.cfg.Table, c.name(), h))
			}
		}
		v.forget(st)
	}
	ins := slices.DeleteFunc(slices.Clone(ps), func(p prepared) bool { return p.remove })
	slices.SortFunc(ins, func(a, b prepared) int { return cmp.Or(cmp.Compare(a.prio, b.prio), strings.Compare(a.ident, b.ident)) })
	type slot struct {
		st *ruleState
		ch chainRef
		i  int
	}
	pending := map[string]slot{}
	for _, p := range ins {
		st := &ruleState{ident: p.ident, prio: p.prio}
		v.rules[p.ident] = st
		var before [numChains]uint64
		for ch := range numChains {
			if slices.ContainsFunc(p.parts, func(x part) bool { return x.ch == ch }) {
				before[ch] = v.insert(ch, st)
			}
		}
		for i, x := range p.parts {
			cmt := Comment(p.prio, p.ident, i, len(p.parts))
			pending[cmt] = slot{st, x.ch, len(st.handles[x.ch])}
			st.handles[x.ch] = append(st.handles[x.ch], 0)
			add(newRule(x.ch.family(), d.cfg.Table, x.ch.name(), x.exprs, cmt, where{before: before[x.ch]}))
		}
	}
	if merr != nil {
		d.v = nil
		return fmt.Errorf("nftables: encode: %w", merr)
	}
	if len(msgs) == 0 {
		return nil
	}
	echoed, err := d.c.commit(ctx, msgs)
	if err != nil {
		d.drop()
		return fmt.Errorf("nftables: %w", err)
	}
	for _, r := range echoed {
		if s, ok := pending[r.comment]; ok && r.handle != 0 {
			s.st.handles[s.ch][s.i] = r.handle
			delete(pending, r.comment)
		}
	}
	if len(pending) > 0 {
		d.log.Warn("nftables did not echo every new rule: reading the tables again", "missing", len(pending))
		d.v = nil
	}
	return nil
}

// insert puts st in the order of chain ch and returns the handle of the
// rule it goes before: the first part of the next rule already in the
// kernel, 0 (the end) when there is none.
func (v *view) insert(ch chainRef, st *ruleState) uint64 {
	o := v.order[ch]
	i, _ := slices.BinarySearchFunc(o, st, func(a, b *ruleState) int { return a.less(b.prio, b.ident) })
	v.order[ch] = slices.Insert(o, i, st)
	for _, next := range v.order[ch][i+1:] {
		if hs := next.handles[ch]; len(hs) > 0 && hs[0] != 0 {
			return hs[0]
		}
	}
	return 0
}

// forget takes st out of the view.
func (v *view) forget(st *ruleState) {
	if v.rules[st.ident] == st {
		delete(v.rules, st.ident)
	}
	for ch := range v.order {
		if len(st.handles[ch]) == 0 || st.broken {
			continue
		}
		o := v.order[ch]
		if i, found := slices.BinarySearchFunc(o, st, func(a, b *ruleState) int { return a.less(b.prio, b.ident) }); found && o[i] == st {
			v.order[ch] = slices.Delete(o, i, i+1)
		}
	}
}

// Missing returns the rules of held the kernel lacks, or holds broken
// (parts missing or out of order): the agent applies them again.
func (d *Driver) Missing(ctx context.Context, held []dataplane.Applied) ([]dataplane.Applied, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ready(ctx); err != nil {
		return nil, err
	}
	var out []dataplane.Applied
	for _, a := range held {
		if st := d.v.rules[Ident(a.AppInstanceID, a.ID)]; st == nil || st.broken {
			out = append(out, a)
		}
	}
	return out, nil
}

// Sweep removes the driver's rules of traffic rules not in held, and
// broken ones; rules without the driver's comments are left alone. It
// returns how many traffic rules it removed.
func (d *Driver) Sweep(ctx context.Context, held []dataplane.Applied) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ready(ctx); err != nil {
		return 0, err
	}
	keep := make(map[string]bool, len(held))
	for _, a := range held {
		keep[Ident(a.AppInstanceID, a.ID)] = true
	}
	var gone []prepared
	for ident, st := range d.v.rules {
		if !keep[ident] || st.broken {
			gone = append(gone, prepared{ident: ident, remove: true})
		}
	}
	slices.SortFunc(gone, func(a, b prepared) int { return strings.Compare(a.ident, b.ident) })
	removed := 0
	for len(gone) > 0 {
		if err := d.ready(ctx); err != nil {
			return removed, err
		}
		n, size := 0, 0
		for n < len(gone) && (n == 0 || size+gone[n].size(d.v) <= maxBatch) {
			size += gone[n].size(d.v)
			n++
		}
		if err := d.commitOps(ctx, gone[:n]); err != nil {
			return removed, err
		}
		removed += n
		gone = gone[n:]
	}
	if removed > 0 {
		d.log.Info("removed nftables rules of traffic rules the agent does not hold", "rules", removed)
	}
	return removed, nil
}
