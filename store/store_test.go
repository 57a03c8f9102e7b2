package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{AOF: true}, &srv) }

// newStore returns a Store with a prefix of its own on the shared server.
func newStore(t *testing.T) (*store.Store, *redis.Client, string) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := srv.Client(t)
	prefix := srv.Prefix()
	s, err := store.New(store.Options{Client: c, Prefix: prefix, EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, prefix
}

func svc(id, app, name, cat string, live int) store.ServiceRecord {
	return store.ServiceRecord{ID: id, AppInstanceID: app, Name: name, CategoryID: cat, State: store.StateActive,
		LivenessInterval: live, Info: []byte(`{"serInstanceId":"` + id + `","serName":"` + name + `"}`)}
}

func ids(rs []store.ServiceRecord) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.ID)
	}
	return strings.Join(sortStrings(s), ",")
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestServiceLifecycleAndIndexes(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	for _, r := range []store.ServiceRecord{
		svc("s1", "appA", "rni", "cat1", 0),
		svc("s2", "appA", "loc", "cat2", 10),
		svc("s3", "appB", "rni", "", 0),
	} {
		got, sid, err := s.CreateService(ctx, r)
		if err != nil {
			t.Fatalf("create %s: %v", r.ID, err)
		}
		if got.Rev != 1 || sid == "" {
			t.Fatalf("create %s: rev %d sid %q", r.ID, got.Rev, sid)
		}
	}
	if _, _, err := s.CreateService(ctx, svc("s1", "appA", "x", "", 0)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate id: want ErrConflict, got %v", err)
	}

	tests := []struct {
		name string
		list func() ([]store.ServiceRecord, error)
		want string
	}{
		{"by app", func() ([]store.ServiceRecord, error) { return s.ServicesByApp(ctx, "appA") }, "s1,s2"},
		{"by name", func() ([]store.ServiceRecord, error) { return s.ServicesByName(ctx, "rni") }, "s1,s3"},
		{"by names", func() ([]store.ServiceRecord, error) { return s.ServicesByName(ctx, "rni", "loc") }, "s1,s2,s3"},
		{"by category", func() ([]store.ServiceRecord, error) { return s.ServicesByCategory(ctx, "cat2") }, "s2"},
		{"by ids", func() ([]store.ServiceRecord, error) { return s.ServicesByID(ctx, "s3", "nope") }, "s3"},
		{"all", func() ([]store.ServiceRecord, error) { return s.AllServices(ctx) }, "s1,s2,s3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := tc.list()
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(rs); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}

	// Rename and recategorise: the indexes follow.
	up := svc("s1", "appA", "loc", "cat2", 0)
	got, sid, err := s.UpdateService(ctx, up, 1)
	if err != nil || got.Rev != 2 || sid == "" {
		t.Fatalf("update: rev %d sid %q err %v", got.Rev, sid, err)
	}
	if rs, _ := s.ServicesByName(ctx, "rni"); ids(rs) != "s3" {
		t.Fatalf("old name index still holds s1: %q", ids(rs))
	}
	if rs, _ := s.ServicesByCategory(ctx, "cat1"); len(rs) != 0 {
		t.Fatalf("old category index still holds %q", ids(rs))
	}
	if rs, _ := s.ServicesByCategory(ctx, "cat2"); ids(rs) != "s1,s2" {
		t.Fatalf("new category index: %q", ids(rs))
	}
	// Stale If-Match, other app, unknown id.
	if _, _, err := s.UpdateService(ctx, up, 1); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("stale rev: %v", err)
	}
	if _, _, err := s.UpdateService(ctx, svc("s1", "appB", "loc", "", 0), 0); !errors.Is(err, store.ErrForbidden) {
		t.Fatalf("foreign update: %v", err)
	}
	if _, _, err := s.UpdateService(ctx, svc("zz", "appA", "loc", "", 0), 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown update: %v", err)
	}
	// A no-op update keeps the revision and appends nothing.
	got, sid, err = s.UpdateService(ctx, up, 0)
	if err != nil || got.Rev != 2 || sid != "" {
		t.Fatalf("no-op update: rev %d sid %q err %v", got.Rev, sid, err)
	}

	if _, err := s.DeleteService(ctx, "appB", "s1"); !errors.Is(err, store.ErrForbidden) {
		t.Fatalf("foreign delete: %v", err)
	}
	if _, err := s.DeleteService(ctx, "appA", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetService(ctx, "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if rs, _ := s.AllServices(ctx); ids(rs) != "s2,s3" {
		t.Fatalf("all after delete: %q", ids(rs))
	}
	if _, err := s.DeleteService(ctx, store.AnyApp, "s3"); err != nil {
		t.Fatalf("platform delete: %v", err)
	}
}

func TestChangeStreamRecordsEveryMutation(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	start, err := s.LastChangeID(ctx)
	if err != nil || start != "0-0" {
		t.Fatalf("empty stream: %q %v", start, err)
	}
	mustCreate(t, s, svc("a", "app", "n", "", 0))
	r := svc("a", "app", "n", "", 0)
	r.State = store.StateInactive
	if _, _, err := s.UpdateService(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	r.Info = []byte(`{"serName":"n","version":"2"}`)
	if _, _, err := s.UpdateService(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteService(ctx, "app", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app", AccessKeyID: "AK1", SecretKey: []byte("sk")}); err != nil {
		t.Fatal(err)
	}
	chs, err := s.ReadChanges(ctx, start, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range chs {
		got = append(got, fmt.Sprintf("%s/%s/%s@%d", c.Kind, c.Type, c.Service.State, c.Service.Rev))
	}
	want := "service/ADDED/ACTIVE@1 service/STATE_CHANGED/INACTIVE@2 service/ATTRIBUTES_CHANGED/INACTIVE@3 service/REMOVED/INACTIVE@4 appconf/PUT/@0"
	if strings.Join(got, " ") != want {
		t.Fatalf("changes:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if string(chs[2].Service.Info) != `{"serName":"n","version":"2"}` {
		t.Fatalf("change carries info %s", chs[2].Service.Info)
	}
	// Blocking read wakes on a new entry.
	last := chs[len(chs)-1].StreamID
	created := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _, err := s.CreateService(ctx, svc("b", "app", "n", "", 0))
		created <- err
	}()
	chs, err = s.ReadChanges(ctx, last, 10, 5*time.Second)
	if cerr := <-created; cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil || len(chs) != 1 || chs[0].Service.ID != "b" {
		t.Fatalf("blocking read: %v %+v", err, chs)
	}
}

func mustCreate(t *testing.T, s *store.Store, r store.ServiceRecord) string {
	t.Helper()
	_, sid, err := s.CreateService(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

func TestHeartbeatMovesDeadline(t *testing.T) {
	ctx := context.Background()
	key := make([]byte, 32)
	now := time.UnixMilli(1_700_000_000_000)
	c := srv.Client(t)
	s, _ := store.New(store.Options{Client: c, Prefix: "hb", EncryptionKey: key, Now: func() time.Time { return now }})
	mustCreate(t, s, svc("h1", "app", "n", "", 10))
	mustCreate(t, s, svc("h0", "app", "n", "", 0))
	d, err := s.LivenessDeadline(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	// grace = min(ceil(5% of 10 s), 5 s) = 500 ms
	if want := now.Add(10*time.Second + 500*time.Millisecond); !d.Equal(want) {
		t.Fatalf("deadline %v, want %v", d, want)
	}
	now = now.Add(7 * time.Second)
	l, err := s.Heartbeat(ctx, "app", "h1")
	if err != nil || l.Interval != 10 || l.StreamID != "" {
		t.Fatalf("heartbeat: %+v %v", l, err)
	}
	d, _ = s.LivenessDeadline(ctx, "h1")
	if want := now.Add(10500 * time.Millisecond); !d.Equal(want) {
		t.Fatalf("deadline after heartbeat %v, want %v", d, want)
	}
	r, _ := s.GetService(ctx, "h1")
	if !r.LastHeartbeat.Equal(now) {
		t.Fatalf("last heartbeat %v want %v", r.LastHeartbeat, now)
	}
	for _, tc := range []struct {
		app, id string
		want    error
	}{{"app", "h0", store.ErrInvalid}, {"other", "h1", store.ErrForbidden}, {"app", "nope", store.ErrNotFound}} {
		if _, err := s.Heartbeat(ctx, tc.app, tc.id); !errors.Is(err, tc.want) {
			t.Errorf("heartbeat %s/%s: got %v want %v", tc.app, tc.id, err, tc.want)
		}
	}
	// A SUSPENDED service comes back to ACTIVE with STATE_CHANGED.
	sus := svc("h1", "app", "n", "", 10)
	sus.State = store.StateSuspended
	if _, _, err := s.UpdateService(ctx, sus, 0); err != nil {
		t.Fatal(err)
	}
	l, err = s.Heartbeat(ctx, "app", "h1")
	if err != nil || l.State != store.StateActive || l.StreamID == "" {
		t.Fatalf("resume: %+v %v", l, err)
	}
	for _, g := range []struct{ in, want time.Duration }{
		{10 * time.Second, 500 * time.Millisecond}, {1 * time.Second, 50 * time.Millisecond},
		{3 * time.Minute, 5 * time.Second}, {33 * time.Millisecond, 2 * time.Millisecond},
	} {
		if got := store.Grace(g.in); got != g.want {
			t.Errorf("Grace(%v) = %v, want %v", g.in, got, g.want)
		}
	}
}

func TestAppConfSealedAtRest(t *testing.T) {
	ctx := context.Background()
	s, c, prefix := newStore(t)
	secret := []byte("very-secret-sk-0123456789")
	if _, err := s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app1", AccessKeyID: "AK1", SecretKey: secret, AppName: "demo", RequiredServices: []string{"rni"}}); err != nil {
		t.Fatal(err)
	}
	raw, err := c.HGetAll(ctx, prefix+":conf:app1").Result()
	if err != nil {
		t.Fatal(err)
	}
	for f, v := range raw {
		if strings.Contains(v, string(secret)) {
			t.Fatalf("field %s holds the secret in the clear", f)
		}
	}
	if !strings.HasPrefix(raw["sk"], "v1:") {
		t.Fatalf("sk not sealed: %q", raw["sk"])
	}
	got, err := s.GetAppConf(ctx, "app1")
	if err != nil || got.AccessKeyID != "AK1" || got.AppName != "demo" || len(got.SecretKey) != 0 || got.RequiredServices[0] != "rni" {
		t.Fatalf("get conf: %+v %v", got, err)
	}
	cred, err := s.CredentialByAK(ctx, "AK1")
	if err != nil || cred.AppInstanceID != "app1" || !bytes.Equal(cred.SecretKey, secret) {
		t.Fatalf("credential: %+v %v", cred, err)
	}
	// Another app may not take the AK.
	if _, err := s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app2", AccessKeyID: "AK1", SecretKey: []byte("x")}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("AK reuse: %v", err)
	}
	// Rotating app1's AK frees the old one.
	if _, err := s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app1", AccessKeyID: "AK2", SecretKey: secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CredentialByAK(ctx, "AK1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old AK still valid: %v", err)
	}
	// A sealed secret moved to another record does not open.
	sk2, _ := c.HGet(ctx, prefix+":conf:app1", "sk").Result()
	if _, err := s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app3", AccessKeyID: "AK3", SecretKey: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	c.HSet(ctx, prefix+":conf:app3", "sk", sk2)
	if _, err := s.CredentialByAK(ctx, "AK3"); err == nil {
		t.Fatal("a secret sealed for app1 opened for app3")
	}
	// A store with another key cannot open it.
	other, _ := store.New(store.Options{Client: c, Prefix: prefix, EncryptionKey: make([]byte, 32)})
	if _, err := other.CredentialByAK(ctx, "AK2"); err == nil {
		t.Fatal("wrong encryption key opened the secret")
	}
	if err := s.DeleteAppConf(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAppConf(ctx, "app1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := s.DeleteAppConf(ctx, "app1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestUnavailableIsTyped(t *testing.T) {
	port, _ := testenv.FreePort()
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	s, _ := store.New(store.Options{Client: c, EncryptionKey: make([]byte, 32)})
	ctx := context.Background()
	_, _, err := s.CreateService(ctx, svc("x", "a", "n", "", 0))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("create against dead redis: %v", err)
	}
	if _, err := s.CredentialByAK(ctx, "AK"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("credential against dead redis: %v", err)
	}
	if errors.Is(err, store.ErrNotFound) {
		t.Fatal("unavailable must not look like not found")
	}
}

func TestParseEncryptionKey(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{strings.Repeat("ab", 32), true},
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", true},
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", true},
		{"short", false},
		{strings.Repeat("zz", 32), false},
	} {
		_, err := store.ParseEncryptionKey(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseEncryptionKey(%q): err %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestCompareStreamIDs(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"1-0", "1-0", 0}, {"1-1", "1-0", 1}, {"2-0", "10-0", -1}, {"0-0", "0-1", -1}} {
		if got := store.CompareStreamIDs(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%s,%s)=%d want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
