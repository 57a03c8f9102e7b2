package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/kmep-io/kmep/store"
)

func TestDeadLetters(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for i := range 3 {
		if err := s.RecordDeadLetter(ctx, fmt.Sprintf("ev-%d", i), []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	dls, err := s.ListDeadLetters(ctx, 10)
	if err != nil || len(dls) != 3 {
		t.Fatalf("ListDeadLetters = %d, %v; want 3", len(dls), err)
	}
	if dls[0].EventID != "ev-2" || string(dls[0].Payload) != `{"n":2}` || dls[2].EventID != "ev-0" {
		t.Errorf("ListDeadLetters = %+v; want newest first", dls)
	}
	got, err := s.GetDeadLetter(ctx, dls[1].StreamID)
	if err != nil || got.EventID != "ev-1" || string(got.Payload) != `{"n":1}` {
		t.Errorf("GetDeadLetter(%s) = %+v, %v", dls[1].StreamID, got, err)
	}
	if err := s.DeleteDeadLetter(ctx, dls[1].StreamID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDeadLetter(ctx, dls[1].StreamID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDeadLetter after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteDeadLetter(ctx, dls[1].StreamID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteDeadLetter: %v, want ErrNotFound", err)
	}
	if n, _ := s.ListDeadLetters(ctx, 10); len(n) != 2 {
		t.Errorf("after delete: %d dead letters, want 2", len(n))
	}
	for _, bad := range []string{"", "-", "1", "1-", "-1", "1-x", "+", "1-1 ", "999999999999999999999-1"} {
		if _, err := s.GetDeadLetter(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("GetDeadLetter(%q) = %v, want ErrInvalid", bad, err)
		}
		if err := s.DeleteDeadLetter(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("DeleteDeadLetter(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestListAppConfs(t *testing.T) {
	s, _, _ := newStore(t)
	other, _, _ := newStore(t) // another prefix: not listed
	ctx := context.Background()
	for _, c := range []store.AppConf{{AppInstanceID: "b", AccessKeyID: "AKB", SecretKey: []byte("skb"), AppName: "bee"},
		{AppInstanceID: "a", AccessKeyID: "AKA", SecretKey: []byte("ska")}} {
		if _, err := s.PutAppConf(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.PutAppConf(ctx, store.AppConf{AppInstanceID: "z", AccessKeyID: "AKZ", SecretKey: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.ListAppConfs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].AppInstanceID != "a" || cs[0].AccessKeyID != "AKA" || cs[1].AppName != "bee" {
		t.Fatalf("ListAppConfs = %+v; want a then b", cs)
	}
	for _, c := range cs {
		if c.SecretKey != nil {
			t.Errorf("ListAppConfs returned %s's secret key", c.AppInstanceID)
		}
	}
	if err := s.DeleteAppConf(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if cs, _ := s.ListAppConfs(ctx); len(cs) != 1 || cs[0].AppInstanceID != "b" {
		t.Errorf("after deleting a: %+v", cs)
	}
}
