package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
)

func TestUPFRuleStatusesFencedByLease(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	a := store.RuleStatus{AppInstanceID: "app1", RuleID: "r1", State: store.RuleApplied, Rev: 2, Digest: "d", Index: 7, Handle: []uint32{3}}
	b := store.RuleStatus{AppInstanceID: "app1", RuleID: "r2", State: store.RuleFailed, Reason: "cannot express", Permanent: true}

	// Not holding the lease: nothing is written.
	if err := s.PutRuleStatuses(ctx, "upf1", "upfagent:upf1", "agentA", []store.RuleStatus{a}, nil); !errors.Is(err, store.ErrForbidden) {
		t.Fatalf("put without the lease: %v; want ErrForbidden", err)
	}
	if ok, err := s.AcquireLease(ctx, "upfagent:upf1", "agentA", time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.PutRuleStatuses(ctx, "upf1", "upfagent:upf1", "agentA", []store.RuleStatus{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRuleStatuses(ctx, "upf1", "upfagent:upf1", "agentB", []store.RuleStatus{b}, nil); !errors.Is(err, store.ErrForbidden) {
		t.Fatalf("put by another holder: %v; want ErrForbidden", err)
	}
	got, err := s.RuleStatuses(ctx, "upf1", []store.RuleKey{{AppInstanceID: "app1", ID: "r1"}, {AppInstanceID: "app1", ID: "nope"}, b.Key()})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] == nil || got[0].Index != 7 || got[0].Handle[0] != 3 || got[0].Digest != "d" || got[1] != nil || got[2] == nil || !got[2].Permanent {
		t.Fatalf("RuleStatuses = %+v %+v %+v", got[0], got[1], got[2])
	}
	one, err := s.RuleStatus(ctx, "upf1", "app1", "r2")
	if err != nil || one.Reason != "cannot express" {
		t.Fatalf("RuleStatus = %+v, %v", one, err)
	}
	// Delete one, unfenced (holder ""), and list.
	if err := s.PutRuleStatuses(ctx, "upf1", "", "", nil, []store.RuleKey{a.Key()}); err != nil {
		t.Fatal(err)
	}
	all, err := s.AllRuleStatuses(ctx, "upf1")
	if err != nil || len(all) != 1 || all[0].RuleID != "r2" {
		t.Fatalf("AllRuleStatuses = %+v, %v", all, err)
	}
	if _, err := s.RuleStatus(ctx, "upf1", "app1", "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted status: %v; want ErrNotFound", err)
	}
	if _, err := s.AllRuleStatuses(ctx, "bad:name"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad upf name: %v", err)
	}
	if k, ok := store.ParseRuleKey("app1:r1"); !ok || k != a.Key() {
		t.Fatalf("ParseRuleKey = %v, %v", k, ok)
	}
}

func TestGetTrafficRules(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	body := []byte(`{"trafficRuleId":"r1"}`)
	if _, err := s.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: []store.Rule{{Kind: store.RuleTraffic, ID: "r1", State: "ACTIVE", Body: body}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTrafficRules(ctx, []store.RuleKey{{AppInstanceID: "app1", ID: "r1"}, {AppInstanceID: "app1", ID: "r2"}, {AppInstanceID: "a:b", ID: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] == nil || string(got[0].Body) != string(body) || got[0].Rev != 1 || got[0].State != "ACTIVE" || got[1] != nil || got[2] != nil {
		t.Fatalf("GetTrafficRules = %+v %+v %+v", got[0], got[1], got[2])
	}
}

// TestUPFRuleStatusesMany writes and deletes more statuses in one call
// than the script handles per HSET or HDEL (1000), and one key both put and
// deleted in a call ends deleted.
func TestUPFRuleStatusesMany(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	put := make([]store.RuleStatus, 2500)
	for i := range put {
		put[i] = store.RuleStatus{AppInstanceID: "app1", RuleID: fmt.Sprint("r", i), State: store.RuleApplied, Index: uint32(i + 1)}
	}
	if err := s.PutRuleStatuses(ctx, "upf1", "", "", put, nil); err != nil {
		t.Fatal(err)
	}
	del := make([]store.RuleKey, 0, 1500)
	for i := range 1500 {
		del = append(del, put[i].Key())
	}
	last := put[2499]
	last.State = store.RuleFailed
	if err := s.PutRuleStatuses(ctx, "upf1", "", "", []store.RuleStatus{last, put[0]}, del); err != nil {
		t.Fatal(err)
	}
	all, err := s.AllRuleStatuses(ctx, "upf1")
	if err != nil || len(all) != 1000 {
		t.Fatalf("AllRuleStatuses: %d records, %v; want 1000", len(all), err)
	}
	got, err := s.RuleStatuses(ctx, "upf1", []store.RuleKey{put[0].Key(), put[1500].Key(), last.Key()})
	if err != nil || got[0] != nil || got[1] == nil || got[1].Index != 1501 || got[2] == nil || got[2].State != store.RuleFailed {
		t.Fatalf("RuleStatuses = %+v %+v %+v, %v", got[0], got[1], got[2], err)
	}
}

// TestAllTrafficRules reads every app's traffic rules at once: the same as
// RuleApps and ListRules per app, DNS rules left out, deleted rules gone.
func TestAllTrafficRules(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	if got, err := s.AllTrafficRules(ctx); err != nil || len(got) != 0 {
		t.Fatalf("AllTrafficRules of an empty store = %+v, %v", got, err)
	}
	for a := range 3 {
		app := fmt.Sprint("app", a)
		var tr []store.Rule
		for i := range a + 2 {
			id := fmt.Sprint("r", 9-i) // configuration order is not the ids' order
			tr = append(tr, store.Rule{Kind: store.RuleTraffic, ID: id, State: "ACTIVE", Body: []byte(`{"trafficRuleId":"` + id + `"}`)})
		}
		dns := []store.Rule{{Kind: store.RuleDNS, ID: "d1", State: "ACTIVE", Body: []byte(`{"dnsRuleId":"d1"}`)}}
		if _, err := s.CreateAppD(ctx, store.AppD{AppInstanceID: app, Traffic: tr, DNS: dns}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteAppD(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	var want []string
	apps, err := s.RuleApps(ctx, store.RuleTraffic)
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range apps {
		rs, err := s.ListRules(ctx, store.RuleTraffic, app)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			want = append(want, fmt.Sprintf("%s/%s %s %d %s", r.AppInstanceID, r.ID, r.State, r.Rev, r.Body))
		}
	}
	got, err := s.AllTrafficRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, r := range got {
		if r.Kind != store.RuleTraffic {
			t.Errorf("rule %s/%s of kind %q", r.AppInstanceID, r.ID, r.Kind)
		}
		have = append(have, fmt.Sprintf("%s/%s %s %d %s", r.AppInstanceID, r.ID, r.State, r.Rev, r.Body))
	}
	if len(want) != 2+4 || strings.Join(have, "\n") != strings.Join(want, "\n") {
		t.Fatalf("AllTrafficRules:\n%s\nwant (RuleApps, ListRules):\n%s", strings.Join(have, "\n"), strings.Join(want, "\n"))
	}
}
