package upfagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/retry"
	"github.com/kmep-io/kmep/store/mec"
)

// item is one rule to reconcile: what the store wants (nil: deleted) and
// what the agent recorded as applied (nil: nothing).
type item struct {
	key     store.RuleKey
	desired *store.Rule
	applied *store.RuleStatus
	// orphan: an allocated index with neither rule nor status.
	orphan bool
}

type action int

const (
	actNone   action = iota
	actApply         // put the desired version into the data plane
	actRemove        // take what the data plane may hold out
	actForget        // nothing in the data plane: fix the record, free the index
)

// step is an item's plan and outcome.
type step struct {
	item
	act    action
	digest string
	rule   dataplane.Rule
	index  uint32
	handle dataplane.Handle
	err    error
	// unsupported: Apply refused the rule; removedOld: and the version the
	// data plane held was taken out.
	unsupported bool
}

const activeState = "ACTIVE"

// plan decides what an item needs.
func plan(it item, force bool) step {
	s := step{item: it}
	ap := it.applied
	if it.desired != nil && it.desired.State == activeState {
		s.digest = Digest(it.desired)
		if !force && ap != nil && ap.Digest == s.digest && (ap.State == store.RuleApplied || ap.State == store.RuleFailed && ap.Permanent) {
			return s
		}
		s.act = actApply
		return s
	}
	if it.desired != nil {
		s.digest = Digest(it.desired)
	}
	switch {
	case ap == nil:
	case mayHold(ap):
		s.act = actRemove
	case it.desired == nil || ap.State != store.RuleInactive || ap.Digest != s.digest:
		s.act = actForget
	}
	return s
}

// mayHold reports whether the data plane may hold a version of the rule:
// it was applied, or a transient failure came after an apply.
func mayHold(ap *store.RuleStatus) bool {
	return ap.State == store.RuleApplied || ap.State == store.RuleFailed && !ap.Permanent && ap.Index != 0
}

// reconcile brings the data plane and the records of items in line with
// the desired state: first what leaves the data plane (so its indexes are
// free for what enters), then what enters or changes. Data-plane errors
// are recorded and retried later; store errors are returned.
func (a *Agent) reconcile(ctx context.Context, items []item, force bool) error {
	var out, in []step
	for _, it := range items {
		s := plan(it, force)
		switch s.act {
		case actNone:
			delete(a.retry, it.key)
		case actApply:
			in = append(in, s)
		default:
			out = append(out, s)
		}
	}
	if len(out) > 0 {
		if err := a.execute(ctx, out, force); err != nil {
			return err
		}
	}
	if len(in) > 0 {
		return a.execute(ctx, in, force)
	}
	return nil
}

// execute allocates indexes for the applies among steps, makes the
// data-plane calls and records the outcome.
func (a *Agent) execute(ctx context.Context, steps []step, force bool) error {
	decodeSteps(steps)
	var allocKeys []string
	var allocAt []int
	for i := range steps {
		s := &steps[i]
		if s.act != actApply || s.err != nil {
			continue
		}
		allocKeys = append(allocKeys, s.key.String())
		allocAt = append(allocAt, i)
	}
	if len(allocKeys) > 0 {
		as, err := a.st.AllocateMany(ctx, a.space, a.cfg.IndexSpace, allocKeys...)
		if err != nil {
			return err
		}
		for i, x := range as {
			s := &steps[allocAt[i]]
			s.index, s.err = x.Index, x.Err
			s.rule.Index = x.Index
		}
	}
	a.runDriver(ctx, steps, force)
	if ctx.Err() == nil {
		return a.record(ctx, steps)
	}
	// The active period ended mid-batch (shutdown or lease loss) after the
	// driver ran: what the data plane did is still recorded, or the next
	// agent would find the data plane ahead of the records (rules applied
	// or removed without a status). The record is fenced by the lease, so
	// a lost lease refuses it; steps cut short by the ending are left
	// unrecorded, for the next resync to redo.
	done := steps[:0:0]
	for _, s := range steps {
		if !errors.Is(s.err, context.Canceled) && !errors.Is(s.err, context.DeadlineExceeded) {
			done = append(done, s)
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := a.record(rctx, done); err != nil {
		return err
	}
	return context.Cause(ctx)
}

// decodeSteps reads the stored bodies of the applies among steps into
// their rules; a body that does not decode makes its step fail as
// unsupported.
func decodeSteps(steps []step) {
	for i := range steps {
		s := &steps[i]
		if s.act != actApply {
			continue
		}
		tr, err := decodeStored(s.desired.Body)
		if err != nil {
			s.err, s.unsupported = dataplane.Unsupported("upfagent", "stored rule body is invalid: %v", err), true
			continue
		}
		s.rule = dataplane.Rule{AppInstanceID: s.key.AppInstanceID, ID: s.key.ID, Traffic: tr}
	}
}

// decodeStored reads a traffic rule body from the store. Every writer
// stores the canonical JSON of a rule it validated (mec.DecodeTrafficRule
// at Mp1, store/lifecycle for Mm5 and an APPD's rules), so json.Unmarshal
// and the validation suffice: mec.DecodeTrafficRule's checks of a client's
// raw input (wrapper object, trailing data, text) and its re-encoding cost
// as much again, and the agent decodes every rule at every apply. A body
// that is not such JSON still fails here.
func decodeStored(body []byte) (mec.TrafficRule, error) {
	var tr mec.TrafficRule
	if err := json.Unmarshal(body, &tr); err != nil {
		return tr, err
	}
	return tr, mec.ValidateTrafficRule(&tr, "", false)
}

// recordTimeout bounds the record of a batch whose active period ended
// after its data-plane calls.
const recordTimeout = 2 * time.Second

// runDriver makes the data-plane calls of steps, Workers at a time, or
// in one Batch call for a Batcher.
func (a *Agent) runDriver(ctx context.Context, steps []step, force bool) {
	if b, ok := a.driver.(Batcher); ok {
		a.runBatch(ctx, b, steps, force)
		return
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(a.cfg.Workers, len(steps)) {
		wg.Go(func() {
			for i := range next {
				a.drive(ctx, &steps[i], force)
			}
		})
	}
	for i := range steps {
		if steps[i].err == nil && steps[i].act != actForget {
			next <- i
		}
	}
	close(next)
	wg.Wait()
}

func (a *Agent) drive(ctx context.Context, s *step, force bool) {
	if err := ctx.Err(); err != nil {
		// The active period ended: no new data-plane call (govpp would
		// still send it), for the next active agent's resync to make.
		s.err = err
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
	defer cancel()
	switch s.act {
	case actApply:
		s.applyDone(a.driver.Apply(cctx, s.rule, s.prev(force)))
		if s.keepsOld() {
			s.oldRemoved(a.driver.Remove(cctx, applied(s.key, s.applied)))
		}
	case actRemove:
		s.removeDone(a.driver.Remove(cctx, applied(s.key, s.applied)))
	}
}

// runBatch makes the data-plane calls of steps in one Batch (and a second
// one for the versions to take out because their successor cannot be
// expressed).
func (a *Agent) runBatch(ctx context.Context, b Batcher, steps []step, force bool) {
	var at []int
	var ops []dataplane.Op
	for i := range steps {
		s := &steps[i]
		if s.err != nil || s.act == actForget || s.act == actNone {
			continue
		}
		if err := ctx.Err(); err != nil {
			s.err = err // as drive: no new data-plane call once the active period ended
			continue
		}
		at = append(at, i)
		if s.act == actApply {
			ops = append(ops, dataplane.Op{Apply: &s.rule, Prev: s.prev(force)})
		} else {
			ap := applied(s.key, s.applied)
			ops = append(ops, dataplane.Op{Remove: &ap})
		}
	}
	if len(ops) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
	defer cancel()
	res := b.Batch(cctx, ops)
	var olds []dataplane.Op
	var oldAt []int
	for j, i := range at {
		s := &steps[i]
		r := dataplane.Result{Err: errors.New("upfagent: the driver returned no result for this rule")}
		if j < len(res) {
			r = res[j]
		}
		if s.act == actRemove {
			s.removeDone(r.Err)
			continue
		}
		s.applyDone(r.Handle, r.Err)
		if s.keepsOld() {
			ap := applied(s.key, s.applied)
			olds = append(olds, dataplane.Op{Remove: &ap})
			oldAt = append(oldAt, i)
		}
	}
	if len(olds) == 0 {
		return
	}
	res = b.Batch(cctx, olds)
	for j, i := range oldAt {
		var err error = errors.New("upfagent: the driver returned no result for this rule")
		if j < len(res) {
			err = res[j].Err
		}
		steps[i].oldRemoved(err)
	}
}

// prev is the handle to give Apply: what the data plane may hold of the
// rule, unless a forced resync reapplies everything.
func (s *step) prev(force bool) dataplane.Handle {
	if s.applied != nil && !force && mayHold(s.applied) {
		return s.applied.Handle
	}
	return nil
}

// applyDone records Apply's outcome.
func (s *step) applyDone(h dataplane.Handle, err error) {
	s.handle, s.err = h, err
	switch {
	case errors.Is(err, dataplane.ErrUnsupported):
		s.unsupported = true
	case err != nil && s.applied != nil:
		s.handle = s.applied.Handle // what the data plane may still hold
	}
}

// keepsOld reports whether the new version cannot be expressed while the
// data plane may hold an old one, which must not stay.
func (s *step) keepsOld() bool { return s.unsupported && s.applied != nil && mayHold(s.applied) }

// oldRemoved records the outcome of taking the old version out.
func (s *step) oldRemoved(err error) {
	if err != nil {
		s.err = fmt.Errorf("%w; removing the version applied before failed: %w", s.err, err)
		s.unsupported = false
		s.handle = s.applied.Handle
	}
}

// removeDone records Remove's outcome.
func (s *step) removeDone(err error) {
	s.err = err
	var rv *dataplane.RetvalError
	if s.orphan && errors.As(err, &rv) {
		s.err = nil // best effort: the data plane most likely never had it
	}
}

func applied(k store.RuleKey, ap *store.RuleStatus) dataplane.Applied {
	return dataplane.Applied{Index: ap.Index, AppInstanceID: k.AppInstanceID, ID: k.ID, Handle: ap.Handle}
}

// record writes the outcome of steps (one fenced store call), frees the
// indexes of rules that left the data plane, schedules retries, then logs
// and counts: Stats count only outcomes the store holds.
func (a *Agent) record(ctx context.Context, steps []step) error {
	now := time.Now()
	var put []store.RuleStatus
	var del []store.RuleKey
	var release []store.RuleKey
	var logs []func()
	var nApplied, nRemoved, nFailed, nUnsupported uint64
	retries := map[store.RuleKey]retryState{}
	var settled []store.RuleKey
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	for i := range steps {
		s := &steps[i]
		st := store.RuleStatus{AppInstanceID: s.key.AppInstanceID, RuleID: s.key.ID, Digest: s.digest,
			Agent: a.cfg.AgentID, UpdatedAt: now.UTC()}
		if s.desired != nil {
			st.Rev = s.desired.Rev
		}
		gone := s.desired == nil
		switch {
		case s.err == nil && s.act == actApply:
			st.State, st.Index, st.Handle = store.RuleApplied, s.index, s.handle
			put = append(put, st)
			settled = append(settled, s.key)
			nApplied++
			logs = append(logs, func() {
				a.log.Debug("traffic rule applied", "app", s.key.AppInstanceID, "rule", s.key.ID, "rev", st.Rev, "index", s.index)
			})
		case s.err == nil: // removed or forgotten
			if gone {
				del = append(del, s.key)
			} else {
				st.State = store.RuleInactive
				put = append(put, st)
			}
			release = append(release, s.key)
			settled = append(settled, s.key)
			if s.act == actRemove {
				nRemoved++
				logs = append(logs, func() { a.log.Debug("traffic rule removed", "app", s.key.AppInstanceID, "rule", s.key.ID) })
			}
		case s.unsupported:
			st.State, st.Reason, st.Permanent = store.RuleFailed, s.err.Error(), true
			put = append(put, st)
			release = append(release, s.key)
			settled = append(settled, s.key)
			nFailed++
			nUnsupported++
			logs = append(logs, func() {
				a.log.Warn("traffic rule cannot be applied", "app", s.key.AppInstanceID, "rule", s.key.ID, "rev", st.Rev, "err", s.err)
			})
		default: // transient: keep what the data plane may hold, retry later
			r := a.retry[s.key]
			d := backoff.Delay(r.attempts)
			retries[s.key] = retryState{at: now.Add(d), attempts: r.attempts + 1}
			st.State, st.Reason, st.Attempts = store.RuleFailed, s.err.Error(), r.attempts+1
			st.Index, st.Handle = s.index, s.handle
			if s.applied != nil && s.index == 0 {
				st.Index = s.applied.Index
			}
			if s.act != actApply && s.applied != nil {
				st.Digest, st.Rev = s.applied.Digest, s.applied.Rev // still the applied version
			}
			put = append(put, st)
			nFailed++
			logs = append(logs, func() {
				a.log.Warn("traffic rule failed: will retry", "app", s.key.AppInstanceID, "rule", s.key.ID,
					"attempt", st.Attempts, "retry_in", d.String(), "err", s.err)
			})
		}
	}
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	err := a.st.PutRuleStatuses(ctx, a.cfg.UPF, a.lease, a.cfg.AgentID, put, del)
	if errors.Is(err, store.ErrForbidden) {
		return errLeaseLost
	}
	if err != nil {
		return err
	}
	if a.records != nil {
		for i := range put {
			a.records[put[i].Key()] = &put[i]
		}
		for _, k := range del {
			delete(a.records, k)
		}
	}
	for _, k := range settled {
		delete(a.retry, k)
	}
	for k, r := range retries {
		a.retry[k] = r
	}
	a.applied.Add(nApplied)
	a.removed.Add(nRemoved)
	a.failed.Add(nFailed)
	a.unsupported.Add(nUnsupported)
	for _, l := range logs {
		l()
	}
	if len(release) > 0 {
		keys := make([]string, len(release))
		for i, k := range release {
			keys[i] = k.String()
		}
		if _, err := a.st.ReleaseMany(ctx, a.space, keys...); err != nil {
			return err
		}
	}
	return nil
}
