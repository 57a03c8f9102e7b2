package nft

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// txn builds one batch and learns the handles of the rules it adds.
//
// The kernel gives every new rule and chain of a table the next number of
// the table's handle counter, in the order of the batch's messages, and no
// other transaction runs during a batch. So the kernel is asked to echo
// only the first and the last new rule of each table: their handles give
// the others' (first's handle + how many handles were given out in the
// table between them), and the last one checks the count. When the check
// fails (or an echo is missing), the view is read again instead.
type txn struct {
	table string
	msgs  []netlink.Message
	err   error
	// per family (0: ip, 1: ip6): handles given out so far, new rules.
	alloc [2]int
	slots [2][]slot
}

// slot is a new rule whose handle goes to dst.
type slot struct {
	msg     int // index in msgs
	alloc   int // handles given out in the table before it
	comment string
	dst     *uint64
}

func famIdx(f byte) int {
	if f == unix.NFPROTO_IPV6 {
		return 1
	}
	return 0
}

func (t *txn) add(m netlink.Message, err error) int {
	t.msgs = append(t.msgs, m)
	t.err = cmp.Or(t.err, err)
	return len(t.msgs) - 1
}

// rule adds a rule; its handle is written to dst after the commit.
func (t *txn) rule(fam byte, chain string, exprs []expr.Any, comment string, at where, dst *uint64) {
	i := famIdx(fam)
	k := t.add(newRule(fam, t.table, chain, exprs, comment, at))
	t.slots[i] = append(t.slots[i], slot{msg: k, alloc: t.alloc[i], comment: comment, dst: dst})
	t.alloc[i]++
}

// chain adds a regular chain (it takes a handle too).
func (t *txn) chain(fam byte, name string) {
	t.add(newChain(fam, t.table, name, nil))
	t.alloc[famIdx(fam)]++
}

func (t *txn) delRule(fam byte, chain string, h uint64) { t.add(delRule(fam, t.table, chain, h)) }
func (t *txn) delChain(fam byte, name string)           { t.add(delChain(fam, t.table, name)) }

// commit sends the batch and fills in the new rules' handles. known is
// false when they could not all be learnt (the view must be read again).
func (t *txn) commit(ctx context.Context, c *conn) (known bool, err error) {
	if t.err != nil {
		return false, fmt.Errorf("encode: %w", t.err)
	}
	if len(t.msgs) == 0 {
		return true, nil
	}
	for i := range t.slots {
		if n := len(t.slots[i]); n > 0 {
			t.msgs[t.slots[i][0].msg].Header.Flags |= unix.NLM_F_ECHO
			t.msgs[t.slots[i][n-1].msg].Header.Flags |= unix.NLM_F_ECHO
		}
	}
	echoed, err := c.commit(ctx, t.msgs)
	if err != nil {
		return false, err
	}
	got := map[string]uint64{}
	for _, r := range echoed {
		got[famName(r.family)+" "+r.comment] = r.handle
	}
	known = true
	for i, fam := range families4and6 {
		ss := t.slots[i]
		if len(ss) == 0 {
			continue
		}
		first, ok1 := got[famName(fam)+" "+ss[0].comment]
		last, ok2 := got[famName(fam)+" "+ss[len(ss)-1].comment]
		base := first - uint64(ss[0].alloc)
		if !ok1 || !ok2 || last-uint64(ss[len(ss)-1].alloc) != base {
			known = false
			continue
		}
		for _, s := range ss {
			*s.dst = base + uint64(s.alloc)
		}
	}
	return known, nil
}

// commitOps makes ps in one transaction: first the parts of the rules that
// are replaced or removed go, then the new parts are appended to the
// chains of their priorities (created, with their jump in priority order,
// when missing), and priority chains left empty go. On any failure the
// view is dropped (it is read again).
func (d *Driver) commitOps(ctx context.Context, ps []prepared) error {
	v := d.v
	t := &txn{table: d.cfg.Table}
	type pk struct {
		ch   chainRef
		prio int
	}
	touched := map[pk]bool{}
	for _, p := range ps {
		st := v.rules[p.ident]
		if st == nil {
			continue
		}
		for ch, hs := range st.handles {
			c := chainRef(ch)
			for _, h := range hs {
				t.delRule(c.family(), prioName(c.name(), h.prio), h.h)
				if pc := v.prio[c][h.prio]; pc != nil {
					pc.own--
					touched[pk{c, h.prio}] = true
				}
			}
		}
		delete(v.rules, p.ident)
	}
	ins := slices.DeleteFunc(slices.Clone(ps), func(p prepared) bool { return p.remove })
	slices.SortFunc(ins, func(a, b prepared) int { return cmp.Or(cmp.Compare(a.prio, b.prio), strings.Compare(a.ident, b.ident)) })
	for _, p := range ins {
		st := &ruleState{ident: p.ident, prio: p.prio}
		v.rules[p.ident] = st
		for _, x := range p.parts {
			st.handles[x.ch] = append(st.handles[x.ch], href{prio: p.prio}) // sized first: slots point into them
		}
		k := [numChains]int{}
		for i, x := range p.parts {
			pc := v.prio[x.ch][p.prio]
			if pc == nil {
				pc = &prioChain{}
				v.prio[x.ch][p.prio] = pc
				t.chain(x.ch.family(), prioName(x.ch.name(), p.prio))
			}
			if pc.jump == 0 {
				t.rule(x.ch.family(), x.ch.name(), jumpTo(prioName(x.ch.name(), p.prio)), jumpComment(p.prio),
					where{before: v.nextJump(x.ch, p.prio)}, &pc.jump)
				pc.jump = pendingHandle // not 0: one jump per chain; filled in by commit
			}
			pc.own++
			touched[pk{x.ch, p.prio}] = true
			t.rule(x.ch.family(), prioName(x.ch.name(), p.prio), x.exprs, Comment(p.prio, p.ident, i, len(p.parts)),
				where{}, &st.handles[x.ch][k[x.ch]].h)
			k[x.ch]++
		}
	}
	for key := range touched {
		pc := v.prio[key.ch][key.prio]
		if pc != nil && pc.own+pc.foreign == 0 && pc.jump != pendingHandle {
			if pc.jump != 0 {
				t.delRule(key.ch.family(), key.ch.name(), pc.jump)
			}
			t.delChain(key.ch.family(), prioName(key.ch.name(), key.prio))
			v.prio[key.ch][key.prio] = nil
		}
	}
	d.gen = 0 // the view is the driver's, no longer one read from the kernel
	known, err := t.commit(ctx, d.c)
	if err != nil {
		d.drop()
		return fmt.Errorf("nftables: %w", err)
	}
	if !known {
		d.log.Warn("nftables: the handles of new rules could not all be learnt: reading the tables again")
		d.v = nil
	}
	return nil
}

// pendingHandle marks a jump being added in the current batch.
const pendingHandle = ^uint64(0)

// nextJump is the handle of the jump to the next higher existing priority
// chain of ch, 0 (the end) when there is none.
func (v *view) nextJump(ch chainRef, prio int) uint64 {
	for _, pc := range v.prio[ch][prio+1:] {
		if pc != nil && pc.jump != 0 && pc.jump != pendingHandle {
			return pc.jump
		}
	}
	return 0
}
