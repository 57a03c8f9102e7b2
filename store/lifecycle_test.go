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

func subIDs(subs []store.Subscription) string {
	var s []string
	for _, x := range subs {
		s = append(s, x.ID)
	}
	return strings.Join(s, ",")
}

func TestSubscriptionSelection(t *testing.T) {
	ctx := context.Background()
	s, c, prefix := newStore(t)
	f := false
	for _, sub := range []store.Subscription{
		{ID: "any", AppInstanceID: "a", Type: store.SubServiceAvailability},
		{ID: "byname", AppInstanceID: "a", Type: store.SubServiceAvailability, Filter: store.ServiceFilter{SerNames: []string{"rni", "loc"}}},
		{ID: "byid", AppInstanceID: "b", Type: store.SubServiceAvailability, Filter: store.ServiceFilter{SerInstanceIDs: []string{"s1"}}},
		{ID: "bycat", AppInstanceID: "b", Type: store.SubServiceAvailability, Filter: store.ServiceFilter{SerCategoryIDs: []string{"c1"}}},
		{ID: "inactive-only", AppInstanceID: "b", Type: store.SubServiceAvailability, Filter: store.ServiceFilter{SerNames: []string{"rni"}, States: []string{"INACTIVE"}}},
		{ID: "not-local", AppInstanceID: "b", Type: store.SubServiceAvailability, Filter: store.ServiceFilter{IsLocal: &f}},
		{ID: "term", AppInstanceID: "a", Type: store.SubAppTermination},
	} {
		sub.CallbackReference = "http://10.0.0.1/cb"
		sub.Body = []byte(`{"id":"` + sub.ID + `"}`)
		if _, _, err := s.CreateSubscription(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CreateSubscription(ctx, store.Subscription{ID: "any", AppInstanceID: "a", Type: store.SubServiceAvailability}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	for _, tc := range []struct {
		name string
		rec  store.ServiceRecord
		want string
	}{
		{"name and id", store.ServiceRecord{ID: "s1", Name: "rni", State: "ACTIVE"}, "any,byid,byname"},
		{"category", store.ServiceRecord{ID: "s2", Name: "other", CategoryID: "c1", State: "ACTIVE"}, "any,bycat"},
		{"state filter", store.ServiceRecord{ID: "s3", Name: "rni", State: "INACTIVE"}, "any,byname,inactive-only"},
		{"nothing specific", store.ServiceRecord{ID: "s4", Name: "zzz", State: "ACTIVE"}, "any"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.MatchServiceSubscriptions(ctx, tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			if subIDs(got) != tc.want {
				t.Fatalf("got %s, want %s", subIDs(got), tc.want)
			}
		})
	}
	// Selection reads only the indexes that can match: a subscription for
	// another name is never loaded. Count the hashes read with MONITOR-free
	// means: delete the "bycat" hash behind the store's back; a selection
	// that does not need it must not notice.
	c.Del(ctx, prefix+":sub:bycat")
	if got, _ := s.MatchServiceSubscriptions(ctx, store.ServiceRecord{ID: "s1", Name: "rni", State: "ACTIVE"}); subIDs(got) != "any,byid,byname" {
		t.Fatalf("after removing an unrelated hash: %s", subIDs(got))
	}
	term, err := s.TerminationSubscriptions(ctx, "a")
	if err != nil || subIDs(term) != "term" {
		t.Fatalf("termination subs: %s %v", subIDs(term), err)
	}
	list, _ := s.ListSubscriptions(ctx, "a", store.SubServiceAvailability)
	if subIDs(list) != "any,byname" {
		t.Fatalf("list: %s", subIDs(list))
	}
	if _, err := s.DeleteSubscription(ctx, "b", "byname"); !errors.Is(err, store.ErrForbidden) {
		t.Fatalf("foreign delete: %v", err)
	}
	if _, err := s.DeleteSubscription(ctx, "a", "byname"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MatchServiceSubscriptions(ctx, store.ServiceRecord{ID: "s9", Name: "loc", State: "ACTIVE"}); subIDs(got) != "any" {
		t.Fatalf("deleted subscription still selected: %s", subIDs(got))
	}
	if n, _ := c.Exists(ctx, prefix+":subs:svc:name:loc").Result(); n != 0 { // rni still holds inactive-only
		t.Fatalf("index sets left behind: %d", n)
	}
}

func TestAppDRulesLifecycle(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	start, _ := s.LastChangeID(ctx)
	rule := func(kind, id, state string) store.Rule {
		return store.Rule{Kind: kind, AppInstanceID: "app", ID: id, State: state, Body: []byte(`{"id":"` + id + `","state":"` + state + `"}`)}
	}
	d := store.AppD{AppInstanceID: "app", AppName: "demo", AppSupportMp1: true,
		Traffic: []store.Rule{rule(store.RuleTraffic, "t1", "ACTIVE"), rule(store.RuleTraffic, "t2", "ACTIVE")},
		DNS:     []store.Rule{rule(store.RuleDNS, "d1", "ACTIVE")}}
	if _, err := s.ReplaceAppD(ctx, d); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replace before create: %v", err)
	}
	if _, err := s.CreateAppD(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAppD(ctx, d); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	// Replace: t1 changes, t2 goes, t3 comes, d1 stays the same.
	d.Traffic = []store.Rule{rule(store.RuleTraffic, "t3", "ACTIVE"), rule(store.RuleTraffic, "t1", "INACTIVE")}
	if _, err := s.ReplaceAppD(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAppD(ctx, "app")
	if err != nil || got.AppName != "demo" || !got.AppSupportMp1 || got.Rev != 2 || len(got.Traffic) != 2 || got.Traffic[0].ID != "t3" || got.Traffic[1].State != "INACTIVE" || len(got.DNS) != 1 {
		t.Fatalf("appd: %+v %v", got, err)
	}
	// Mp1 PUT of one rule, conditional.
	r := rule(store.RuleDNS, "d1", "INACTIVE")
	if _, _, err := s.UpdateRule(ctx, r, 7); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("stale update: %v", err)
	}
	r, sid, err := s.UpdateRule(ctx, r, 1)
	if err != nil || r.Rev != 2 || sid == "" {
		t.Fatalf("update rule: %+v %q %v", r, sid, err)
	}
	if _, _, err := s.UpdateRule(ctx, rule(store.RuleDNS, "nope", "ACTIVE"), 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown rule: %v", err)
	}
	// Ids that would make keys ambiguous are refused.
	if _, _, err := s.UpdateRule(ctx, store.Rule{Kind: store.RuleDNS, AppInstanceID: "app", ID: "b:c", State: "ACTIVE"}, 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("rule id with ':': %v", err)
	}
	if _, err := s.CreateAppD(ctx, store.AppD{AppInstanceID: "a:b", DNS: []store.Rule{{Kind: store.RuleDNS, ID: "c"}}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("app id with ':': %v", err)
	}
	if _, err := s.GetRule(ctx, store.RuleDNS, "a", "b:c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get with ':': %v", err)
	}
	apps, _ := s.RuleApps(ctx, store.RuleDNS)
	if fmt.Sprint(apps) != "[app]" {
		t.Fatalf("rule apps: %v", apps)
	}
	if err := s.DeleteAppD(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if rs, _ := s.ListRules(ctx, store.RuleTraffic, "app"); len(rs) != 0 {
		t.Fatalf("rules after delete: %v", rs)
	}
	chs, _ := s.ReadChanges(ctx, start, 100, 0)
	var seq []string
	for _, c := range chs {
		seq = append(seq, c.Kind+"/"+c.Type+"/"+c.ID)
	}
	want := "trafficrule/ADDED/t1 trafficrule/ADDED/t2 dnsrule/ADDED/d1 appd/CREATED/app " +
		"trafficrule/REMOVED/t2 trafficrule/ADDED/t3 trafficrule/UPDATED/t1 appd/UPDATED/app " +
		"dnsrule/UPDATED/d1 " +
		"trafficrule/REMOVED/t3 trafficrule/REMOVED/t1 dnsrule/REMOVED/d1 appd/DELETED/app"
	if strings.Join(seq, " ") != want {
		t.Fatalf("changes:\n got %s\nwant %s", strings.Join(seq, " "), want)
	}
}

func TestTerminationAndPurge(t *testing.T) {
	ctx := context.Background()
	s, c, prefix := newStore(t)
	if _, err := s.ConfirmTermination(ctx, "app"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("confirm without termination: %v", err)
	}
	mustCreate(t, s, svc("p1", "app", "rni", "cat", 10))
	mustCreate(t, s, svc("other", "app2", "rni", "", 0))
	s.CreateSubscription(ctx, store.Subscription{ID: "sub1", AppInstanceID: "app", Type: store.SubServiceAvailability, Filter: store.ServiceFilter{SerNames: []string{"rni"}}})
	s.CreateSubscription(ctx, store.Subscription{ID: "sub2", AppInstanceID: "app", Type: store.SubAppTermination})
	s.CreateAppD(ctx, store.AppD{AppInstanceID: "app", Traffic: []store.Rule{{Kind: store.RuleTraffic, ID: "t1", State: "ACTIVE", Body: []byte("{}")}}})
	s.CreateRegistration(ctx, store.Registration{AppInstanceID: "app", Body: []byte(`{"appName":"x"}`)})
	s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app", AccessKeyID: "AKP", SecretKey: []byte("s")})
	if _, err := s.ConfirmReady(ctx, "app"); err != nil {
		t.Fatal(err)
	}

	term, sid, err := s.StartTermination(ctx, "app", 3*time.Second)
	if err != nil || sid == "" || term.MaxGracefulTimeout != 3 || term.Confirmed {
		t.Fatalf("start: %+v %q %v", term, sid, err)
	}
	again, sid2, _ := s.StartTermination(ctx, "app", time.Minute)
	if sid2 != "" || again.MaxGracefulTimeout != 3 {
		t.Fatalf("second start must return the one in progress: %+v %q", again, sid2)
	}
	if _, err := s.ConfirmTermination(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetTermination(ctx, "app"); !got.Confirmed {
		t.Fatal("not confirmed")
	}
	before, _ := s.LastChangeID(ctx)
	if _, err := s.PurgeApp(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	keys, _ := c.Keys(ctx, prefix+":*").Result()
	for _, k := range keys {
		if strings.Contains(k, "app") && !strings.Contains(k, "app2") && !strings.HasSuffix(k, ":lock") {
			t.Errorf("key left after purge: %s", k)
		}
	}
	if _, err := s.GetService(ctx, "other"); err != nil {
		t.Fatalf("another app's service was purged: %v", err)
	}
	if got, _ := s.MatchServiceSubscriptions(ctx, store.ServiceRecord{ID: "x", Name: "rni", State: "ACTIVE"}); len(got) != 0 {
		t.Fatalf("purged subscription still selected: %s", subIDs(got))
	}
	chs, _ := s.ReadChanges(ctx, before, 100, 0)
	var seq []string
	for _, ch := range chs {
		seq = append(seq, ch.Kind+"/"+ch.Type)
		// The services' removals are bulk changes; the rest is not.
		if ch.Bulk != (ch.Kind == store.KindService) {
			t.Errorf("%s/%s: Bulk %v", ch.Kind, ch.Type, ch.Bulk)
		}
	}
	want := "service/REMOVED subscription/DELETED subscription/DELETED trafficrule/REMOVED appd/DELETED registration/DELETED appconf/DELETED app/TERMINATED"
	if strings.Join(seq, " ") != want {
		t.Fatalf("purge changes:\n got %s\nwant %s", strings.Join(seq, " "), want)
	}
}

func TestRegistrations(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	r, err := s.CreateRegistration(ctx, store.Registration{AppInstanceID: "a", Body: []byte(`{"v":1}`)})
	if err != nil || r.Rev != 1 {
		t.Fatalf("create: %+v %v", r, err)
	}
	if _, err := s.CreateRegistration(ctx, r); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := s.UpdateRegistration(ctx, store.Registration{AppInstanceID: "a", Body: []byte(`{"v":2}`)}, 5); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("stale: %v", err)
	}
	if r, err = s.UpdateRegistration(ctx, store.Registration{AppInstanceID: "a", Body: []byte(`{"v":2}`)}, 1); err != nil || r.Rev != 2 {
		t.Fatalf("update: %+v %v", r, err)
	}
	if got, _ := s.GetRegistration(ctx, "a"); string(got.Body) != `{"v":2}` {
		t.Fatalf("get: %s", got.Body)
	}
	if err := s.DeleteRegistration(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRegistration(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestGroupsLeasesAndDoneMarkers(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	mustCreate(t, s, svc("before", "a", "n", "", 0)) // before the group: not delivered
	if err := s.EnsureGroup(ctx, "g", "$"); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureGroup(ctx, "g", "$"); err != nil {
		t.Fatalf("second EnsureGroup: %v", err)
	}
	mustCreate(t, s, svc("x1", "a", "n", "", 0))
	mustCreate(t, s, svc("x2", "a", "n", "", 0))
	got, err := s.ReadGroup(ctx, "g", "c", 10, 100*time.Millisecond, false)
	if err != nil || len(got) != 2 || got[0].Service.ID != "x1" {
		t.Fatalf("read group: %d %v", len(got), err)
	}
	// Unacked entries come back as pending after a "restart".
	if err := s.Ack(ctx, "g", got[0].StreamID); err != nil {
		t.Fatal(err)
	}
	pend, err := s.ReadGroup(ctx, "g", "c", 10, 0, true)
	if err != nil || len(pend) != 1 || pend[0].Service.ID != "x2" {
		t.Fatalf("pending: %+v %v", pend, err)
	}
	// Leases.
	ok, _ := s.AcquireLease(ctx, "l", "h1", time.Second)
	ok2, _ := s.AcquireLease(ctx, "l", "h2", time.Second)
	if !ok || ok2 {
		t.Fatalf("lease: h1 %v h2 %v", ok, ok2)
	}
	if ok, _ := s.AcquireLease(ctx, "l", "h1", time.Second); !ok {
		t.Fatal("holder cannot renew")
	}
	s.ReleaseLease(ctx, "l", "h2") // not the holder: no effect
	if ok2, _ := s.AcquireLease(ctx, "l", "h2", time.Second); ok2 {
		t.Fatal("release by a non-holder freed the lease")
	}
	s.ReleaseLease(ctx, "l", "h1")
	if ok2, _ := s.AcquireLease(ctx, "l", "h2", time.Second); !ok2 {
		t.Fatal("lease not free after release")
	}
	// Done markers.
	if err := s.MarkDone(ctx, "e1/s1", time.Minute); err != nil {
		t.Fatal(err)
	}
	done, err := s.Done(ctx, "e1/s1", "e1/s2")
	if err != nil || !done[0] || done[1] {
		t.Fatalf("done: %v %v", done, err)
	}
}
