package store_test

import (
	"context"
	"crypto/rand"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// TestOnlyKmepChangeAppends reads the store's sources: the only Lua that
// calls XADD on the change stream is kmep_change (changeLua), and no Go code
// appends to it directly, so every entry has the fields changeFields
// defines and no other.
func TestOnlyKmepChangeAppends(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for _, id := range n.Names {
					if id.Name == "changeLua" {
						return false // the one place allowed to XADD
					}
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING && strings.Contains(strings.ToUpper(n.Value), "XADD") {
					t.Errorf("%s: a script calls XADD itself; append changes with kmep_change (changeLua)", fset.Position(n.Pos()))
				}
			case *ast.KeyValueExpr:
				// XAddArgs{Stream: s.streamKey(), ...}
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Stream" {
					if c, ok := n.Value.(*ast.CallExpr); ok {
						if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "streamKey" {
							t.Errorf("%s: Go code appends to the change stream; use a script with kmep_change", fset.Position(n.Pos()))
						}
					}
				}
			}
			return true
		})
	}
	if checked < 10 {
		t.Fatalf("checked %d source files: wrong directory?", checked)
	}
}

// TestChangeFieldsMatchParser runs every store operation that appends to
// the change stream against a real Redis and reads the raw entries: each
// field a script wrote is one changeFields defines (what the Go parser
// reads), and each field changeFields defines was written by some script,
// so neither side can gain a field the other does not know. The writes are
// made on behalf of a traced request: every change but the platform's own
// (the reaper's expiries, an app's purge) carries its traceparent and
// tracestate.
func TestChangeFieldsMatchParser(t *testing.T) {
	const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const traceState = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	ctx, ok := trace.Extract(context.Background(), traceParent, traceState)
	if !ok {
		t.Fatal("test traceparent refused")
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := srv.Client(t)
	prefix := srv.Prefix()
	now := time.UnixMilli(1_700_000_000_000)
	s, err := store.New(store.Options{Client: c, Prefix: prefix, EncryptionKey: key, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ok2 := func(_ any, err error) { t.Helper(); must(err) }
	ok3 := func(_, _ any, err error) { t.Helper(); must(err) }
	// platform runs f, whose changes are the platform's own, and records
	// the stream ids they got: (after, upTo].
	var own [][2]string
	last := func() string {
		t.Helper()
		id, err := s.LastChangeID(ctx)
		must(err)
		return id
	}
	platform := func(f func()) {
		t.Helper()
		after := last()
		f()
		own = append(own, [2]string{after, last()})
	}

	// Services: ADDED, ATTRIBUTES_CHANGED, STATE_CHANGED (update, reaper,
	// heartbeat), REMOVED (delete, purge).
	ok3(s.CreateService(ctx, svc("s1", "app", "n", "cat", 10)))
	ok3(s.CreateService(ctx, svc("s2", "app", "n", "", 0)))
	ok3(s.CreateService(ctx, svc("s3", "other", "n", "", 0)))
	r := svc("s2", "app", "n", "", 0)
	r.Info = []byte(`{"serName":"n","version":"2"}`)
	ok3(s.UpdateService(ctx, r, 0))
	r.State = store.StateInactive
	ok3(s.UpdateService(ctx, r, 0))
	platform(func() { ok2(s.ClaimExpired(ctx, now.Add(time.Hour), 10)) })
	ok2(s.Heartbeat(ctx, "app", "s1"))
	ok2(s.DeleteService(ctx, "other", "s3"))
	// Subscriptions, app configuration (an AK change revokes), rules, AppD,
	// registration, lifecycle, purge, instances.
	ok3(s.CreateSubscription(ctx, store.Subscription{ID: "sub1", AppInstanceID: "app", Type: store.SubAppTermination, Body: []byte(`{}`)}))
	ok3(s.CreateSubscription(ctx, store.Subscription{ID: "sub2", AppInstanceID: "app", Type: store.SubServiceAvailability, Body: []byte(`{}`)}))
	ok2(s.DeleteSubscription(ctx, "app", "sub2"))
	ok2(s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app", AccessKeyID: "AK1", SecretKey: []byte("sk")}))
	ok2(s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app", AccessKeyID: "AK2", SecretKey: []byte("sk")}))
	ok2(s.PutAppConf(ctx, store.AppConf{AppInstanceID: "other", AccessKeyID: "AK3", SecretKey: []byte("sk")}))
	must(s.DeleteAppConf(ctx, "other"))
	rule := func(id string) store.Rule {
		return store.Rule{Kind: store.RuleTraffic, AppInstanceID: "app", ID: id, State: store.StateActive, Body: []byte(`{"trafficRuleId":"` + id + `"}`)}
	}
	ok2(s.CreateAppD(ctx, store.AppD{AppInstanceID: "app", Traffic: []store.Rule{rule("t1"), rule("t2")},
		DNS: []store.Rule{{Kind: store.RuleDNS, AppInstanceID: "app", ID: "d1", State: store.StateActive, Body: []byte(`{}`)}}}))
	ok2(s.ReplaceAppD(ctx, store.AppD{AppInstanceID: "app", Traffic: []store.Rule{rule("t1")}}))
	upd := rule("t1")
	upd.State = store.StateInactive
	ok3(s.UpdateRule(ctx, upd, 0))
	ok2(s.CreateAppD(ctx, store.AppD{AppInstanceID: "other", Traffic: []store.Rule{{Kind: store.RuleTraffic, AppInstanceID: "other", ID: "o1", State: store.StateActive, Body: []byte(`{}`)}}}))
	must(s.DeleteAppD(ctx, "other"))
	ok2(s.CreateRegistration(ctx, store.Registration{AppInstanceID: "app", Body: []byte(`{"appName":"x"}`)}))
	ok2(s.UpdateRegistration(ctx, store.Registration{AppInstanceID: "app", Body: []byte(`{"appName":"y"}`)}, 0))
	ok2(s.CreateRegistration(ctx, store.Registration{AppInstanceID: "other", Body: []byte(`{}`)}))
	must(s.DeleteRegistration(ctx, "other"))
	ok2(s.ConfirmReady(ctx, "app"))
	ok3(s.StartTermination(ctx, "app", 3*time.Second))
	ok2(s.ConfirmTermination(ctx, "app"))
	platform(func() { ok2(s.PurgeApp(ctx, "app")) })
	// Instances the installer trigger works on.
	inst := store.Instance{AppInstanceID: "inst1", State: "INSTANTIATING"}
	ok2(s.StartInstance(ctx, inst, store.InstallSpec{Object: "o", Size: 1}))
	inst.State = "TERMINATING"
	ok2(s.RequestTermination(ctx, inst, 2*time.Second))

	msgs, err := c.XRange(ctx, prefix+":events", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	known := store.ChangeFieldNames
	written := map[string]bool{}
	kinds := map[string]bool{}
	for _, m := range msgs {
		for f := range m.Values {
			written[f] = true
			if !slices.Contains(known, f) {
				t.Errorf("entry %s (%v/%v) has field %q, which changeFields does not define", m.ID, m.Values["kind"], m.Values["change"], f)
			}
		}
		kinds[m.Values["kind"].(string)+"/"+m.Values["change"].(string)] = true
	}
	for _, f := range known {
		if !written[f] {
			t.Errorf("changeFields defines %q but no script wrote it", f)
		}
	}
	for _, k := range []string{"service/ADDED", "service/ATTRIBUTES_CHANGED", "service/STATE_CHANGED", "service/REMOVED",
		"subscription/CREATED", "subscription/DELETED", "appconf/PUT", "appconf/DELETED", "trafficrule/ADDED",
		"trafficrule/REMOVED", "trafficrule/UPDATED", "dnsrule/ADDED", "appd/CREATED", "appd/UPDATED", "appd/DELETED",
		"registration/CREATED", "registration/UPDATED", "registration/DELETED", "app/READY", "app/TERMINATING",
		"app/TERMINATION_CONFIRMED", "app/TERMINATED", "instance/INSTANTIATE", "instance/TERMINATE"} {
		if !kinds[k] {
			t.Errorf("no %s entry: the test no longer exercises every writer", k)
		}
	}
	chs, err := s.ReadChanges(ctx, "0", int64(len(msgs)+1), 0)
	if err != nil || len(chs) != len(msgs) {
		t.Fatalf("ReadChanges: %d changes, %v; raw entries %d", len(chs), err, len(msgs))
	}
	ownChanges := 0
	for _, c := range chs {
		want, wantState := traceParent, traceState
		for _, r := range own {
			if store.CompareStreamIDs(c.StreamID, r[0]) > 0 && store.CompareStreamIDs(c.StreamID, r[1]) <= 0 {
				want, wantState = "", ""
				ownChanges++
			}
		}
		if c.TraceParent != want || c.TraceState != wantState {
			t.Errorf("change %s (%s/%s): TraceParent %q, TraceState %q; want %q, %q", c.StreamID, c.Kind, c.Type,
				c.TraceParent, c.TraceState, want, wantState)
		}
	}
	if ownChanges < 2 {
		t.Fatalf("%d changes of the platform's own: the test no longer exercises the reaper and the purge", ownChanges)
	}
}

// TestChangeLuaRejectsUnknownField: a script that tries to write a field
// changeFields does not define fails and appends nothing.
func TestChangeLuaRejectsUnknownField(t *testing.T) {
	ctx := context.Background()
	c := srv.Client(t)
	stream := srv.Prefix() + ":events"
	script := redis.NewScript(store.ChangeLua + `
return kmep_change(KEYS[1], 100, {kind = 'service', change = 'ADDED', id = 'x', colour = ARGV[1]})`)
	err := script.Run(ctx, c, []string{stream}, "red").Err()
	if err == nil || !strings.Contains(err.Error(), "unknown change-stream field colour") {
		t.Fatalf("unknown field: err %v", err)
	}
	if n, err := c.XLen(ctx, stream).Result(); err != nil || n != 0 {
		t.Fatalf("stream has %d entries (%v) after a refused write", n, err)
	}
	good := redis.NewScript(store.ChangeLua + `
return kmep_change(KEYS[1], 100, {data = 'd', kind = 'app', change = 'READY', app = 'a', id = '', tp = ''})`)
	if err := good.Run(ctx, c, []string{stream}).Err(); err != nil {
		t.Fatal(err)
	}
	m, err := c.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(m) != 1 {
		t.Fatalf("%v %v", m, err)
	}
	// Fields in changeFields order, empty strings kept (but an empty tp:
	// no traceparent): read back raw.
	raw, err := c.Do(ctx, "XRANGE", stream, "-", "+").Slice()
	if err != nil {
		t.Fatal(err)
	}
	got := raw[0].([]any)[1].([]any)
	var names []string
	for i := 0; i < len(got); i += 2 {
		names = append(names, got[i].(string))
	}
	if strings.Join(names, ",") != "kind,change,id,app,data" {
		t.Fatalf("field order %v", names)
	}
}

// TestLivenessDeadlineGoAndLuaAgree: the deadline the service scripts set
// (create, heartbeat, an update that changes the interval) is Go's
// DeadlineAfter, for intervals from the smallest (1 s) to the largest
// (86400 s) and around the point where the grace reaches its cap.
func TestLivenessDeadlineGoAndLuaAgree(t *testing.T) {
	ctx := context.Background()
	c := srv.Client(t)
	now := time.UnixMilli(1_764_000_000_123)
	s, err := store.New(store.Options{Client: c, Prefix: srv.Prefix(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	deadline := redis.NewScript(store.LivenessLua + `return tostring(kmep_deadline(ARGV[1], ARGV[2]))`)
	for _, live := range []int{1, 2, 7, 19, 20, 99, 100, 101, 3599, 86399, 86400} {
		iv := time.Duration(live) * time.Second
		t.Run(iv.String(), func(t *testing.T) {
			id := "live-" + iv.String()
			check := func(what string, hb time.Time) {
				t.Helper()
				got, err := s.LivenessDeadline(ctx, id)
				if want := store.DeadlineAfter(hb, iv); err != nil || !got.Equal(want) {
					t.Errorf("%s: Lua deadline %v (%v), Go %v", what, got.UnixMilli(), err, want.UnixMilli())
				}
			}
			start := now
			if _, _, err := s.CreateService(ctx, svc(id, "app", "n", "", live)); err != nil {
				t.Fatal(err)
			}
			check("create", start)
			now = now.Add(1234 * time.Millisecond)
			if _, err := s.Heartbeat(ctx, "app", id); err != nil {
				t.Fatal(err)
			}
			check("heartbeat", now)
			now = now.Add(time.Second)
			other := live%86400 + 1
			if _, _, err := s.UpdateService(ctx, svc(id, "app", "n", "", other), 0); err != nil {
				t.Fatal(err)
			}
			iv2 := time.Duration(other) * time.Second
			if got, err := s.LivenessDeadline(ctx, id); err != nil || !got.Equal(store.DeadlineAfter(now, iv2)) {
				t.Errorf("update to %v: Lua deadline %v (%v), Go %v", iv2, got.UnixMilli(), err, store.DeadlineAfter(now, iv2).UnixMilli())
			}
			// kmep_deadline itself, at the bounds of the clock too.
			for _, at := range []time.Time{time.UnixMilli(0), now, time.UnixMilli(4_102_444_800_000)} {
				v, err := deadline.Run(ctx, c, nil, at.UnixMilli(), live).Text()
				if want := store.DeadlineAfter(at, iv).UnixMilli(); err != nil || v != strconv.FormatInt(want, 10) {
					t.Errorf("kmep_deadline(%d, %d) = %s (%v), want %d", at.UnixMilli(), live, v, err, want)
				}
			}
		})
	}
}

// A traced request's change carries its tracestate in the field ts only
// when the span context has one: the entry of a request with a bare
// traceparent has tp and no ts.
func TestTraceStateOnlyWhenThere(t *testing.T) {
	const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	c := srv.Client(t)
	prefix := srv.Prefix()
	s, err := store.New(store.Options{Client: c, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	for i, ts := range []string{"", "vendor=opaque-value"} {
		ctx, ok := trace.Extract(context.Background(), traceParent, ts)
		if !ok {
			t.Fatal("test traceparent refused")
		}
		if _, _, err := s.CreateService(ctx, svc("s"+strconv.Itoa(i), "app", "n", "", 0)); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := c.XRange(context.Background(), prefix+":events", "-", "+").Result()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d entries, %v", len(msgs), err)
	}
	if v, has := msgs[0].Values["ts"]; has || msgs[0].Values["tp"] != traceParent {
		t.Errorf("without tracestate: tp %v, ts %v (present %v)", msgs[0].Values["tp"], v, has)
	}
	if msgs[1].Values["ts"] != "vendor=opaque-value" || msgs[1].Values["tp"] != traceParent {
		t.Errorf("with tracestate: tp %v, ts %v", msgs[1].Values["tp"], msgs[1].Values["ts"])
	}
	chs, err := s.ReadChanges(context.Background(), "0", 10, 0)
	if err != nil || len(chs) != 2 || chs[0].TraceState != "" || chs[1].TraceState != "vendor=opaque-value" {
		t.Fatalf("ReadChanges: %+v, %v", chs, err)
	}
}
