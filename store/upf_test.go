package store_test

import (
	"context"
	"errors"
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
