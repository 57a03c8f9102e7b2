package nft

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"context"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// view is what the driver made in its tables, as far as it knows.
type view struct {
	rules map[string]*ruleState // by ident
	// prio holds, per parent chain, the priority chains that exist.
	prio [numChains][256]*prioChain
}

// prioChain is the chain of the parts of one priority (rules_007 ...).
type prioChain struct {
	// jump is the handle of the rule of the parent chain that jumps to it;
	// 0: none (yet).
	jump uint64
	// own and foreign count the driver's parts in it, and the rules
	// without its comment (an operator's: left alone; the chain and its
	// jump stay while they are there).
	own, foreign int
}

// ruleState is one traffic rule in the kernel.
type ruleState struct {
	ident string
	prio  int
	// handles are the rule's parts per chain kind, in part order.
	handles [numChains][]href
	// broken: parts missing, repeated, out of order or in the chain of
	// another priority; the rule is applied again (Missing) or removed
	// (Sweep).
	broken bool
}

// href is a part: its handle and the priority chain it is in.
type href struct {
	h    uint64
	prio int
}

// prioName is the name of the priority chain of parent for prio.
func prioName(parent string, prio int) string { return fmt.Sprintf("%s_%03d", parent, prio) }

// parsePrioName reads a priority chain's name.
func parsePrioName(parent, name string) (int, bool) {
	s, ok := strings.CutPrefix(name, parent+"_")
	if !ok || len(s) != 3 {
		return 0, false
	}
	p, err := strconv.Atoi(s)
	return p, err == nil && p >= 0 && p <= 255
}

func jumpComment(prio int) string { return commentPrefix + "prio:" + strconv.Itoa(prio) }

var families4and6 = []byte{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6}

func famName(f byte) string {
	if f == unix.NFPROTO_IPV6 {
		return "ip6"
	}
	return "ip"
}

func famNum(f byte) int {
	if f == unix.NFPROTO_IPV6 {
		return 6
	}
	return 4
}

// load reads the driver's tables into a new view, after making (one
// batch) what is missing or out of place: tables, chains, dispatch rules,
// jumps to the priority chains in priority order, and taking out the
// priority chains left empty. When everything is in place it sends
// nothing.
func (d *Driver) load(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		c, err := d.conn()
		if err != nil {
			return err
		}
		gen, err := c.generation(ctx) // before reading: a change during the read makes it differ
		if err != nil {
			d.drop()
			return err
		}
		v, msgs, err := d.read(ctx, c)
		if err != nil {
			d.drop()
			return err
		}
		if len(msgs) == 0 {
			d.v, d.gen = v, gen
			return nil
		}
		if attempt > 0 {
			return errors.New("nftables: the tables are not as they should be right after being set up")
		}
		if _, err := c.commit(ctx, msgs); err != nil {
			d.drop()
			return fmt.Errorf("nftables: set up table %s: %w", d.cfg.Table, err)
		}
		d.log.Info("nftables tables set up", "table", d.cfg.Table, "interfaces", d.cfg.Interfaces, "messages", len(msgs))
	}
}

// read reads the kernel's state of the driver's tables and returns it
// with the messages that would make the tables as they should be.
func (d *Driver) read(ctx context.Context, c *conn) (*view, []netlink.Message, error) {
	v := &view{rules: map[string]*ruleState{}}
	var msgs []netlink.Message
	var merr error
	add := func(m netlink.Message, err error) {
		msgs = append(msgs, m)
		merr = errors.Join(merr, err)
	}
	parts := map[*ruleState]map[int]bool{}
	counts := map[*ruleState]int{}
	for _, fam := range families4and6 {
		t, found, err := c.table(ctx, fam, d.cfg.Table)
		if err != nil {
			return nil, nil, err
		}
		chains := map[string]bool{}
		byChain := map[string][]ruleInfo{}
		if found {
			if chains, err = c.chains(ctx, fam, d.cfg.Table); err != nil {
				return nil, nil, err
			}
			if err := d.checkOwner(fam, t, chains); err != nil {
				return nil, nil, err
			}
			for name := range chains {
				if byChain[name], err = c.rules(ctx, fam, d.cfg.Table, name); err != nil {
					return nil, nil, err
				}
			}
		} else {
			add(newTable(fam, d.cfg.Table, tableComment))
		}
		for _, parent := range []string{RulesChain, NATChain} {
			if !chains[parent] {
				add(newChain(fam, d.cfg.Table, parent, nil))
			}
		}
		for _, b := range []struct {
			name, to string
			hook     hook
		}{
			{BaseFilter, RulesChain, hook{unix.NF_INET_PRE_ROUTING, -150, "filter"}},
			{BaseNAT, NATChain, hook{unix.NF_INET_PRE_ROUTING, -100, "nat"}},
		} {
			if !chains[b.name] {
				add(newChain(fam, d.cfg.Table, b.name, &b.hook))
			}
			d.dispatchMsgs(fam, b.name, b.to, byChain[b.name], add)
		}
		for _, nat := range []bool{false, true} {
			ch := chainOf(famNum(fam), nat)
			for name := range chains {
				if p, ok := parsePrioName(ch.name(), name); ok {
					pc := &prioChain{}
					v.prio[ch][p] = pc
					readPrio(v, ch, p, pc, byChain[name], parts, counts)
				}
			}
			d.jumpMsgs(v, ch, byChain[ch.name()], add)
		}
	}
	for st, ps := range parts {
		if len(ps) != counts[st] {
			st.broken = true
		}
	}
	if merr != nil {
		return nil, nil, fmt.Errorf("nftables: encode: %w", merr)
	}
	return v, msgs, nil
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
			_, p1 := parsePrioName(RulesChain, name)
			_, p2 := parsePrioName(NATChain, name)
			foreign = foreign || !p1 && !p2 && !slices.Contains([]string{BaseFilter, BaseNAT, RulesChain, NATChain}, name)
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
func (d *Driver) dispatchMsgs(fam byte, chain, to string, cur []ruleInfo, add func(netlink.Message, error)) {
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
		return
	}
	for _, h := range handles {
		add(delRule(fam, d.cfg.Table, chain, h))
	}
	for _, iface := range want {
		add(newRule(fam, d.cfg.Table, chain, dispatch(iface, to), dispatchComment(iface), where{}))
	}
}

// readPrio adds the parts in priority chain p of ch (in kernel order) to
// v, marking as broken the rules whose parts are out of place.
func readPrio(v *view, ch chainRef, p int, pc *prioChain, rs []ruleInfo, parts map[*ruleState]map[int]bool, counts map[*ruleState]int) {
	var prev *ruleState
	prevPart := -1
	done := map[*ruleState]bool{} // rules whose run of parts in this chain ended
	for _, r := range rs {
		prio, ident, i, n, ok := parseComment(r.comment)
		if !ok {
			pc.foreign++ // not the driver's: left alone
			continue
		}
		pc.own++
		st := v.rules[ident]
		if st == nil {
			st = &ruleState{ident: ident, prio: prio}
			v.rules[ident] = st
			parts[st] = map[int]bool{}
			counts[st] = n
		}
		st.handles[ch] = append(st.handles[ch], href{r.handle, p})
		switch {
		case prio != p, st.prio != prio, counts[st] != n, parts[st][i], done[st]:
			st.broken = true
		case st == prev && i < prevPart:
			st.broken = true
		}
		parts[st][i] = true
		if st != prev && prev != nil {
			done[prev] = true
		}
		prev, prevPart = st, i
	}
}

// jumpMsgs reads the jumps of parent chain ch to its priority chains and
// adds the messages that make them one per non-empty priority chain, in
// priority order, and delete the priority chains left empty.
func (d *Driver) jumpMsgs(v *view, ch chainRef, cur []ruleInfo, add func(netlink.Message, error)) {
	type jump struct {
		prio   int
		handle uint64
	}
	var have []jump
	for _, r := range cur {
		if s, ok := strings.CutPrefix(r.comment, commentPrefix+"prio:"); ok {
			p, err := strconv.Atoi(s)
			if err != nil || p < 0 || p > 255 {
				p = -1
			}
			have = append(have, jump{p, r.handle})
		}
	}
	var want []int
	for p, pc := range v.prio[ch] {
		if pc != nil && pc.own+pc.foreign > 0 {
			want = append(want, p)
		}
	}
	ok := len(have) == len(want)
	for i := 0; ok && i < len(have); i++ {
		ok = have[i].prio == want[i]
	}
	fam, table := ch.family(), d.cfg.Table
	if ok {
		for _, j := range have {
			v.prio[ch][j.prio].jump = j.handle
		}
	} else {
		for _, j := range have {
			add(delRule(fam, table, ch.name(), j.handle))
		}
		for _, p := range want {
			add(newRule(fam, table, ch.name(), jumpTo(prioName(ch.name(), p)), jumpComment(p), where{}))
		}
	}
	for p, pc := range v.prio[ch] {
		if pc != nil && pc.own+pc.foreign == 0 {
			add(delChain(fam, table, prioName(ch.name(), p)))
			v.prio[ch][p] = nil
		}
	}
}
