package nft

import (
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
	// gen is the ruleset generation the view was read at, while no commit
	// of the driver's came after (0: unknown); stale asks the next call to
	// read the view again unless the generation is still gen.
	gen   uint32
	stale bool
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
	d.v, d.gen = nil, 0
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
//
// A view read since the last change anywhere in the namespace's ruleset
// (the kernel's generation is the one it was read at, e.g. by New just
// before the agent's first resync) is kept: the kernel holds what it says.
func (d *Driver) Forget() {
	d.mu.Lock()
	d.stale = true
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

// prepared is one Op, translated.
type prepared struct {
	at     int // index in the Batch
	ident  string
	prio   int
	parts  []part // nil for a removal
	remove bool
}

func (p prepared) size(v *view) int {
	n := 3 * len(p.parts) // a part, perhaps its priority chain and that chain's jump
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
// When the kernel refuses a transaction, its rules are tried again in
// halves (bisect), down to a transaction per rule, so that a refused rule
// fails alone. Rules that
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
		d.log.Warn("nftables refused a batch: applying its rules in halves", "rules", len(group), "err", err)
		d.bisect(ctx, group, res)
	}
	return res
}

// bisect commits the ops of a refused transaction again in two halves,
// and each half the kernel refuses in two halves again, down to one rule
// per transaction: a refused rule still fails alone, but one bad rule
// among n costs about 2·log2(n) transactions rather than n (each of which
// makes the kernel rebuild the chains it touches).
func (d *Driver) bisect(ctx context.Context, group []prepared, res []dataplane.Result) {
	for _, half := range [][]prepared{group[:len(group)/2], group[len(group)/2:]} {
		err := d.ready(ctx)
		if err == nil {
			err = d.commitOps(ctx, half)
		}
		if err == nil || len(half) == 1 || ctx.Err() != nil {
			for _, p := range half {
				res[p.at].Err = err
			}
			continue
		}
		d.bisect(ctx, half, res)
	}
}

// ready makes sure the socket is open and the view read (again, after
// Forget, unless the ruleset did not change since it was read).
func (d *Driver) ready(ctx context.Context) error {
	if d.stale && d.v != nil && d.c != nil && d.gen != 0 {
		if g, err := d.c.generation(ctx); err != nil || g != d.gen {
			d.v = nil
		}
	} else if d.stale {
		d.v = nil
	}
	d.stale = false
	if d.v != nil && d.c != nil {
		return nil
	}
	return d.load(ctx)
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
