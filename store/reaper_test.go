package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/store"
)

// newClockStore is newStore with a clock the test moves.
func newClockStore(t *testing.T, now *time.Time) (*store.Store, *redis.Client, string) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := srv.Client(t)
	prefix := srv.Prefix()
	s, err := store.New(store.Options{Client: c, Prefix: prefix, EncryptionKey: key, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, prefix
}

// streamFields are the field names, in order, of every service entry.
const streamFields = "kind change id app name cat state rev live info hb"

func entryFields(m redis.XMessage) string {
	var ks []string
	for k := range m.Values {
		ks = append(ks, k)
	}
	return strings.Join(sortStrings(ks), " ")
}

func TestClaimExpired(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	s, c, prefix := newClockStore(t, &now)

	if _, ok, err := s.NextDeadline(ctx); ok || err != nil {
		t.Fatalf("next deadline of an empty set: ok %v err %v", ok, err)
	}
	mustCreate(t, s, svc("act", "app", "rni", "cat1", 10))
	inact := svc("inact", "app", "rni", "", 10)
	inact.State = store.StateInactive
	mustCreate(t, s, inact)
	susp := svc("susp", "app", "rni", "", 10)
	susp.State = store.StateSuspended
	mustCreate(t, s, susp)
	mustCreate(t, s, svc("gone", "app", "rni", "", 10))
	mustCreate(t, s, svc("later", "app", "rni", "", 30))
	mustCreate(t, s, svc("none", "app", "rni", "", 0))
	// A record that vanished without its deadline (not possible through the
	// store's own scripts, which remove both): the claim skips it.
	if err := c.Del(ctx, prefix+":svc:gone").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := now.Add(10*time.Second + store.Grace(10*time.Second))
	if next, ok, err := s.NextDeadline(ctx); !ok || err != nil || !next.Equal(deadline) {
		t.Fatalf("next deadline: %v %v %v, want %v", next, ok, err, deadline)
	}
	start, _ := s.LastChangeID(ctx)

	// One millisecond early: nothing is due.
	if got, err := s.ClaimExpired(ctx, deadline.Add(-time.Millisecond), 100); err != nil || len(got) != 0 {
		t.Fatalf("early claim: %+v %v", got, err)
	}
	got, err := s.ClaimExpired(ctx, deadline, 100)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]store.Expiry{}
	for _, e := range got {
		byID[e.ID] = e
		if !e.Deadline.Equal(deadline) {
			t.Errorf("%s: deadline %v, want %v", e.ID, e.Deadline, deadline)
		}
	}
	tests := []struct {
		id, state string
		rev       int64
		suspended bool
	}{
		{"act", store.StateSuspended, 2, true},
		{"inact", store.StateInactive, 1, false},
		{"susp", store.StateSuspended, 1, false},
		{"gone", "", 0, false},
	}
	if len(got) != len(tests) {
		t.Fatalf("claimed %d deadlines, want %d: %+v", len(got), len(tests), got)
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			e, ok := byID[tc.id]
			if !ok {
				t.Fatalf("not claimed")
			}
			if e.State != tc.state || e.Rev != tc.rev || e.Suspended() != tc.suspended {
				t.Fatalf("got %+v, want state %q rev %d suspended %v", e, tc.state, tc.rev, tc.suspended)
			}
			if tc.state == "" {
				return
			}
			r, err := s.GetService(ctx, tc.id)
			if err != nil || r.State != tc.state || r.Rev != tc.rev {
				t.Fatalf("stored %+v %v", r, err)
			}
			if _, err := s.LivenessDeadline(ctx, tc.id); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("deadline still set: %v", err)
			}
		})
	}
	if _, err := s.LivenessDeadline(ctx, "later"); err != nil {
		t.Fatalf("a deadline not yet due was taken: %v", err)
	}
	if r, _ := s.GetService(ctx, "later"); r.State != store.StateActive || r.Rev != 1 {
		t.Fatalf("a service not yet due changed: %+v", r)
	}

	// Exactly one entry: STATE_CHANGED to SUSPENDED, with every field the
	// other service scripts write, in the bulk lane.
	msgs, err := c.XRange(ctx, prefix+":events", "("+start, "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d stream entries, want 1: %v", len(msgs), msgs)
	}
	if f := entryFields(msgs[0]); f != strings.Join(sortStrings(strings.Fields(streamFields+" lane")), " ") {
		t.Fatalf("entry fields %q, want %q", f, streamFields+" lane")
	}
	if msgs[0].ID != byID["act"].StreamID {
		t.Fatalf("entry %s, claim says %s", msgs[0].ID, byID["act"].StreamID)
	}
	chs, _ := s.ReadChanges(ctx, start, 10, 0)
	ch := chs[0]
	if ch.Kind != store.KindService || ch.Type != store.ChangeStateChanged || ch.Service.ID != "act" ||
		ch.AppInstanceID != "app" || ch.Service.Name != "rni" || ch.Service.CategoryID != "cat1" ||
		ch.Service.State != store.StateSuspended || ch.Service.Rev != 2 || ch.Service.LivenessInterval != 10 ||
		!ch.Service.LastHeartbeat.Equal(now) || string(ch.Service.Info) != string(svc("act", "app", "rni", "cat1", 10).Info) ||
		!ch.Bulk {
		t.Fatalf("change %+v", ch)
	}
	if got, err := s.ClaimExpired(ctx, deadline.Add(time.Second), 100); err != nil || len(got) != 0 {
		t.Fatalf("second claim: %+v %v", got, err)
	}

	// A heartbeat brings the suspended service back: ACTIVE, STATE_CHANGED,
	// and a new deadline that the next claim acts on again.
	now = deadline.Add(time.Second)
	l, err := s.Heartbeat(ctx, "app", "act")
	if err != nil || l.State != store.StateActive || l.Rev != 3 || l.StreamID == "" {
		t.Fatalf("heartbeat after suspension: %+v %v", l, err)
	}
	chs, _ = s.ReadChanges(ctx, msgs[0].ID, 10, 0)
	if len(chs) != 1 || chs[0].Type != store.ChangeStateChanged || chs[0].Service.State != store.StateActive || chs[0].Service.Rev != 3 ||
		chs[0].Bulk {
		t.Fatalf("changes after heartbeat: %+v", chs)
	}
	again := now.Add(10*time.Second + store.Grace(10*time.Second))
	if next, ok, _ := s.NextDeadline(ctx); !ok || !next.Equal(again) {
		t.Fatalf("next deadline %v %v, want %v", next, ok, again)
	}
	if got, err := s.ClaimExpired(ctx, again, 100); err != nil || len(got) != 1 || !got[0].Suspended() || got[0].Rev != 4 {
		t.Fatalf("claim after heartbeat: %+v %v", got, err)
	}
	if _, err := s.ClaimExpired(ctx, again, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func TestClaimExpiredLimitEarliestFirst(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	s, _, _ := newClockStore(t, &now)
	for i := range 10 {
		mustCreate(t, s, svc(fmt.Sprintf("s%d", i), "app", "n", "", 1))
		now = now.Add(time.Millisecond)
	}
	var order []string
	for _, want := range []int{3, 3, 3, 1, 0} {
		got, err := s.ClaimExpired(ctx, now.Add(time.Hour), 3)
		if err != nil || len(got) != want {
			t.Fatalf("claim: %d %v, want %d", len(got), err, want)
		}
		for _, e := range got {
			order = append(order, e.ID)
		}
	}
	if got := strings.Join(order, ","); got != "s0,s1,s2,s3,s4,s5,s6,s7,s8,s9" {
		t.Fatalf("claim order %s", got)
	}
	if _, ok, err := s.NextDeadline(ctx); ok || err != nil {
		t.Fatalf("deadlines left: %v %v", ok, err)
	}
}

// Two claimers race over 1,000 expired services: every one is claimed, and
// suspended, exactly once.
func TestClaimExpiredConcurrentlyOncePerExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	s, _, _ := newClockStore(t, &now)
	const n = 1000
	for i := range n {
		mustCreate(t, s, svc(fmt.Sprintf("c%04d", i), "app", "n", "", 1+i%3))
	}
	start, _ := s.LastChangeID(ctx)
	later := now.Add(time.Hour)
	claimed := make([][]string, 2)
	var wg sync.WaitGroup
	for w := range claimed {
		wg.Go(func() {
			for {
				got, err := s.ClaimExpired(ctx, later, 7)
				if err != nil {
					t.Error(err)
					return
				}
				for _, e := range got {
					claimed[w] = append(claimed[w], e.ID)
				}
				if len(got) < 7 {
					return
				}
			}
		})
	}
	wg.Wait()
	times := map[string]int{}
	for _, c := range claimed {
		for _, id := range c {
			times[id]++
		}
	}
	if len(times) != n || len(claimed[0])+len(claimed[1]) != n {
		t.Fatalf("claimed %d distinct of %d, %d+%d claims", len(times), n, len(claimed[0]), len(claimed[1]))
	}
	t.Logf("claimer 0 took %d, claimer 1 took %d", len(claimed[0]), len(claimed[1]))
	events := map[string]int{}
	for after := start; ; {
		chs, err := s.ReadChanges(ctx, after, 500, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(chs) == 0 {
			break
		}
		for _, c := range chs {
			if c.Type == store.ChangeStateChanged && c.Service.State == store.StateSuspended {
				events[c.Service.ID]++
			}
		}
		after = chs[len(chs)-1].StreamID
	}
	for i := range n {
		id := fmt.Sprintf("c%04d", i)
		if events[id] != 1 {
			t.Errorf("%s: %d SUSPENDED entries, want 1", id, events[id])
		}
	}
}

// An INACTIVE service whose deadline the reaper dropped gets one again
// when the app sets it back to ACTIVE, so it cannot escape the reaper.
func TestUpdateRestoresDroppedDeadline(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	r := svc("esc", "app", "n", "", 1)
	r.State = store.StateInactive
	mustCreate(t, s, r)
	if _, err := s.ClaimExpired(ctx, time.Now().Add(time.Minute), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LivenessDeadline(ctx, "esc"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deadline of an expired INACTIVE service: %v", err)
	}
	r.State = store.StateActive
	if _, _, err := s.UpdateService(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LivenessDeadline(ctx, "esc"); err != nil {
		t.Fatalf("no deadline after the service became ACTIVE again: %v", err)
	}
}
