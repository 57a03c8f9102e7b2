package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
)

// clock is a settable clock for store.Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) set(ms int64) { c.mu.Lock(); defer c.mu.Unlock(); c.t = time.UnixMilli(ms) }

func pendingIDs(t *testing.T, s *store.Store) []string {
	t.Helper()
	ids, err := s.PendingIDs(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func changeIDs(chs []store.Change) []string {
	var out []string
	for _, c := range chs {
		out = append(out, c.StreamID)
	}
	return out
}

// The pending set as the relay and its consumers use it: added before
// publication (an add never moves an existing score), acknowledged with the
// stream entry once published, touched while retried, settled when done;
// what stays past a cutoff is claimed once per timeout, earliest first,
// with the entry it came from, and an id whose entry is gone is settled.
func TestPendingSet(t *testing.T) {
	ctx := context.Background()
	clk := &clock{}
	s, err := store.New(store.Options{Client: srv.Client(t), Prefix: srv.Prefix(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	clk.set(1000)
	if err := s.EnsureGroup(ctx, "g", "0"); err != nil {
		t.Fatal(err)
	}
	var sid []string
	for _, id := range []string{"a", "b", "c"} {
		_, x, err := s.CreateService(ctx, svc(id, "app", "n-"+id, "", 0))
		if err != nil {
			t.Fatal(err)
		}
		sid = append(sid, x)
	}
	if read, err := s.ReadGroup(ctx, "g", "r", 10, -1, false); err != nil || len(read) != 3 {
		t.Fatalf("read %d, %v", len(read), err)
	}
	if err := s.AddPending(ctx, sid...); err != nil {
		t.Fatal(err)
	}
	clk.set(1500)
	if err := s.AddPending(ctx, sid[0]); err != nil { // keeps 1000
		t.Fatal(err)
	}

	// a is published at 2000: acknowledged in the group, active at 2000.
	clk.set(2000)
	if err := s.AckPublished(ctx, "g", sid[0]); err != nil {
		t.Fatal(err)
	}
	left, err := s.ReadGroup(ctx, "g", "r", 0, 0, true)
	if err != nil || !slices.Equal(changeIDs(left), sid[1:]) {
		t.Fatalf("group's pending entries %v (%v), want %v", changeIDs(left), err, sid[1:])
	}
	// b is settled; c is touched at 3000; a touch or an ack of b does not
	// bring it back.
	if err := s.Settle(ctx, sid[1]); err != nil {
		t.Fatal(err)
	}
	clk.set(3000)
	if err := s.Record(ctx, store.Progress{Touch: []string{sid[2], sid[1]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AckPublished(ctx, "g", sid[1]); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(t, s); !slices.Equal(got, []string{sid[0], sid[2]}) {
		t.Fatalf("pending %v, want %v", got, []string{sid[0], sid[2]})
	}

	clk.set(4000)
	due, gone, err := s.ClaimOverdue(ctx, time.UnixMilli(2500), 10)
	if err != nil || len(gone) != 0 || !slices.Equal(changeIDs(due), sid[:1]) {
		t.Fatalf("claim at 2500: %v gone %v (%v), want %v", changeIDs(due), gone, err, sid[:1])
	}
	if due[0].Kind != store.KindService || due[0].Service.ID != "a" || due[0].Type != store.ChangeAdded {
		t.Errorf("claimed change %+v", due[0])
	}
	if due, _, _ := s.ClaimOverdue(ctx, time.UnixMilli(2500), 10); len(due) != 0 {
		t.Fatalf("claimed twice within one timeout: %v", changeIDs(due))
	}
	// c (3000) before a (now 4000); the limit applies.
	if due, _, _ := s.ClaimOverdue(ctx, time.UnixMilli(5000), 1); !slices.Equal(changeIDs(due), sid[2:]) {
		t.Fatalf("claim of one at 5000: %v, want %v", changeIDs(due), sid[2:])
	}

	// An id whose entry is no longer in the stream.
	if err := s.AddPending(ctx, "1-1"); err != nil {
		t.Fatal(err)
	}
	clk.set(9000)
	due, gone, err = s.ClaimOverdue(ctx, time.UnixMilli(8000), 10)
	if err != nil || !slices.Equal(gone, []string{"1-1"}) || !slices.Equal(changeIDs(due), []string{sid[0], sid[2]}) {
		t.Fatalf("claim: %v gone %v (%v)", changeIDs(due), gone, err)
	}
	if err := s.Settle(ctx, sid[0], sid[2]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PendingCount(ctx); err != nil || n != 0 {
		t.Fatalf("pending count %d (%v), want 0", n, err)
	}
}

// Audiences selects for a batch of events what MatchServiceSubscriptions
// and TerminationSubscriptions select one by one, with the done markers
// Record wrote.
func TestAudiences(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	subs := []store.Subscription{
		{ID: "any", AppInstanceID: "c", Filter: store.ServiceFilter{}},
		{ID: "by-id", AppInstanceID: "c", Filter: store.ServiceFilter{SerInstanceIDs: []string{"s1"}}},
		{ID: "by-name", AppInstanceID: "c", Filter: store.ServiceFilter{SerNames: []string{"rnis"}}},
		{ID: "by-cat", AppInstanceID: "c", Filter: store.ServiceFilter{SerCategoryIDs: []string{"cat"}}},
		{ID: "inactive-only", AppInstanceID: "c", Filter: store.ServiceFilter{SerNames: []string{"rnis"}, States: []string{"INACTIVE"}}},
		{ID: "other-name", AppInstanceID: "c", Filter: store.ServiceFilter{SerNames: []string{"other"}}},
		{ID: "term", AppInstanceID: "p", Type: store.SubAppTermination},
	}
	for _, sub := range subs {
		if sub.Type == "" {
			sub.Type = store.SubServiceAvailability
		}
		sub.CallbackReference, sub.Body = "http://cb.example/"+sub.ID, []byte(`{}`)
		if _, _, err := s.CreateSubscription(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	r1 := store.ServiceRecord{ID: "s1", AppInstanceID: "p", Name: "rnis", CategoryID: "cat", State: store.StateActive}
	r2 := store.ServiceRecord{ID: "s2", AppInstanceID: "p", Name: "other", State: store.StateActive}
	if err := s.Record(ctx, store.Progress{DoneTTL: time.Minute,
		Notified: []store.Notified{{EventID: "1-0", SubscriptionID: "by-name"}, {EventID: "2-0", SubscriptionID: "by-name"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Audiences(ctx, []store.AudienceQuery{
		{EventID: "1-0", Service: &r1}, {EventID: "2-0", Service: &r2}, {EventID: "3-0", App: "p"}, {EventID: "4-0", App: "nobody"}})
	if err != nil {
		t.Fatal(err)
	}
	type sel struct {
		ids  []string
		done []bool
	}
	flat := func(a store.Audience) sel {
		var x sel
		for i, sub := range a.Subs {
			x.ids, x.done = append(x.ids, sub.ID), append(x.done, a.Done[i])
		}
		return x
	}
	for i, want := range []sel{
		{[]string{"any", "by-cat", "by-id", "by-name"}, []bool{false, false, false, true}},
		{[]string{"any", "other-name"}, []bool{false, false}},
		{[]string{"term"}, []bool{false}},
		{},
	} {
		if g := flat(got[i]); !slices.Equal(g.ids, want.ids) || !slices.Equal(g.done, want.done) {
			t.Errorf("query %d: %v %v, want %v %v", i, g.ids, g.done, want.ids, want.done)
		}
	}
	// The same selection as the one-by-one reads.
	for i, r := range []store.ServiceRecord{r1, r2} {
		one, err := s.MatchServiceSubscriptions(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, sub := range one {
			ids = append(ids, sub.ID)
		}
		if g := flat(got[i]); !slices.Equal(g.ids, ids) {
			t.Errorf("%s: Audiences %v, MatchServiceSubscriptions %v", r.ID, g.ids, ids)
		}
	}
	if got[0].Subs[0].CallbackReference != "http://cb.example/any" {
		t.Errorf("subscription not loaded: %+v", got[0].Subs[0])
	}
}

// Claims: of several deliveries of one event that select its audience at
// once, each (event, subscription) pair goes to exactly one claimant; the
// others see it busy. A release by its claimant frees it (one by another
// claimant does not), a done marker replaces it, and it expires after its
// TTL.
func TestAudienceClaims(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	var ids []string
	for i := range 20 {
		id := "sub-" + string(rune('a'+i))
		ids = append(ids, id)
		if _, _, err := s.CreateSubscription(ctx, store.Subscription{ID: id, AppInstanceID: "c", Type: store.SubServiceAvailability,
			CallbackReference: "http://cb.example/" + id, Body: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	r := store.ServiceRecord{ID: "s1", AppInstanceID: "p", Name: "rnis", State: store.StateActive}
	claim := func(event, claimant string, ttl time.Duration) store.Audience {
		t.Helper()
		got, err := s.Audiences(ctx, []store.AudienceQuery{{EventID: event, Service: &r, Claimant: claimant, ClaimTTL: ttl}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got[0].Subs) != len(ids) {
			t.Fatalf("%d subscriptions selected, want %d", len(got[0].Subs), len(ids))
		}
		return got[0]
	}
	free := func(a store.Audience) (n int) {
		for i := range a.Subs {
			if !a.Done[i] && !a.Busy[i] {
				n++
			}
		}
		return n
	}

	// Eight deliveries at once, many times over.
	for round := range 20 {
		event := "race-" + string(rune('a'+round))
		owners := make([][]string, len(ids))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for c := range 8 {
			claimant := string(rune('A' + c))
			wg.Go(func() {
				got, err := s.Audiences(ctx, []store.AudienceQuery{{EventID: event, Service: &r, Claimant: claimant, ClaimTTL: time.Minute}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for i, sub := range got[0].Subs {
					if got[0].Done[i] {
						t.Errorf("%s: %s done, never recorded", event, sub.ID)
					}
					if !got[0].Busy[i] {
						j := slices.Index(ids, sub.ID)
						owners[j] = append(owners[j], claimant)
					}
				}
			})
		}
		wg.Wait()
		for j, o := range owners {
			if len(o) != 1 {
				t.Errorf("%s: %s claimed by %v, want exactly one claimant", event, ids[j], o)
			}
		}
	}

	a := claim("e1", "first", time.Minute)
	if n := free(a); n != len(ids) {
		t.Fatalf("first claimant got %d of %d", n, len(ids))
	}
	b := claim("e1", "second", time.Minute)
	if n := free(b); n != 0 || !b.Busy[0] {
		t.Fatalf("second claimant got %d free (busy %v), want all busy", n, b.Busy)
	}
	// A read without a claimant sees the claims too, and takes none.
	plain, err := s.Audiences(ctx, []store.AudienceQuery{{EventID: "e1", Service: &r}})
	if err != nil {
		t.Fatal(err)
	}
	if free(plain[0]) != 0 {
		t.Errorf("a plain read sees %d free of claimed pairs", free(plain[0]))
	}
	// first delivers sub-a, fails sub-b and sub-c (released); second
	// tries to release sub-d, which it does not hold.
	rel := func(sub, claimant string) store.Claim {
		return store.Claim{Notified: store.Notified{EventID: "e1", SubscriptionID: sub}, Claimant: claimant}
	}
	if err := s.Record(ctx, store.Progress{DoneTTL: time.Minute, Notified: []store.Notified{{EventID: "e1", SubscriptionID: "sub-a"}},
		Release: []store.Claim{rel("sub-b", "first"), rel("sub-c", "first"), rel("sub-d", "second")}}); err != nil {
		t.Fatal(err)
	}
	c := claim("e1", "third", time.Minute)
	state := func(a store.Audience, i int) string {
		switch {
		case a.Done[i]:
			return "done"
		case a.Busy[i]:
			return "busy"
		}
		return "mine"
	}
	for i, want := range []string{"done", "mine", "mine", "busy", "busy"} {
		if got := state(c, i); got != want {
			t.Errorf("after the record, %s is %s to a third claimant, want %s", ids[i], got, want)
		}
	}

	// A claim expires: a delivery that died holding it does not block the
	// event for longer than its TTL.
	claim("e2", "dies", 500*time.Millisecond)
	if n := free(claim("e2", "later", time.Minute)); n != 0 {
		t.Fatalf("a later claimant got %d of %d while the first claim held", n, len(ids))
	}
	deadline := time.Now().Add(10 * time.Second)
	for got := 0; got < len(ids); {
		got += free(claim("e2", "later", time.Minute))
		if got > len(ids) || time.Now().After(deadline) {
			t.Fatalf("the later claimant got %d of %d (the claims did not expire, or it got some twice)", got, len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}

	if _, err := s.Audiences(ctx, []store.AudienceQuery{{EventID: "e3", Service: &r, Claimant: "x"}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a claim without a TTL: %v, want ErrInvalid", err)
	}
}
