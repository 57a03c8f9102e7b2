package packages_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/local/s3server"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar/csartest"
	"github.com/kmep-io/kmep/store/kit/auth"
)

// A Redis stall (SIGSTOP, 5 s: longer than a fresh connection's dial and
// read timeouts) that begins once the package is in the
// bucket and lasts through recording it: the answer is a 503, and Redis
// applies the record when it resumes. The record must then name an object
// that exists: the upload's clean-up may not remove the object of a record
// that may have been written. A retry with the same packageId finds it.
func TestUploadDuringRedisStallKeepsRecordedObject(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	st := r.Store(t, store.Options{EncryptionKey: bytes.Repeat([]byte{7}, 32)})
	s3, err := s3server.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s3.Close() })
	// The bucket's proxy pauses Redis at the first read of the uploaded
	// object (the CSAR check), so the stall hits the record that follows.
	target, _ := url.Parse(s3.Endpoint)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var once sync.Once
	resumed := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, ".csar") {
			once.Do(func() {
				if err := r.Pause(); err != nil {
					t.Error(err)
				}
				go func() {
					defer close(resumed)
					time.Sleep(5 * time.Second)
					if err := r.Resume(); err != nil {
						t.Error(err)
					}
				}()
			})
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(front.Close)
	objects, err := blob.New(blob.Config{Endpoint: front.URL, AccessKey: "k", SecretKey: "s", Bucket: "pkgs"})
	if err != nil {
		t.Fatal(err)
	}
	if err := objects.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAdmin(admin)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, objects: objects, h: packages.New(packages.Deps{Store: st, Objects: objects, Admin: a})}

	w := e.upload("tenant-1", "pkg-1", csartest.CSAR(csartest.Options{}))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("upload during the stall: %d %v %s, want 503 with Retry-After", w.Code, w.Header(), w.Body)
	}
	<-resumed
	var p store.Package
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err = st.GetPackage(context.Background(), "tenant-1", "pkg-1")
		if err == nil || !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		t.Log("Redis did not apply the record after the stall: nothing to check")
		return
	case err != nil:
		t.Fatal(err)
	}
	if ok, err := objects.Exists(context.Background(), p.Object); err != nil || !ok {
		t.Fatalf("package %s is recorded, its object %s exists=%v (%v): the 503's clean-up removed it", p.ID, p.Object, ok, err)
	}
	pkgs, err := st.ListPackages(context.Background(), "tenant-1")
	if err != nil || len(pkgs) != 1 {
		t.Fatalf("packages listed: %v %v, want the one recorded", pkgs, err)
	}
	if w := e.upload("tenant-1", "pkg-1", csartest.CSAR(csartest.Options{})); w.Code != http.StatusConflict {
		t.Fatalf("retry with the same packageId: %d %s, want 409 (the package exists)", w.Code, w.Body)
	}
}
