package packages_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar/csartest"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
)

const admin = "packages-admin-token-0123456789"

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

type env struct {
	st      *store.Store
	objects *blob.Store
	h       http.Handler
}

func newEnv(t *testing.T, mio *testenv.MinIO, maxBytes int64) *env {
	t.Helper()
	st := srv.Store(t, store.Options{EncryptionKey: bytes.Repeat([]byte{7}, 32)})
	objects, err := blob.New(blob.Config{Endpoint: mio.Endpoint, AccessKey: mio.AccessKey, SecretKey: mio.SecretKey,
		Bucket: "pkgs-" + strings.ToLower(srv.Prefix())})
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
	return &env{st: st, objects: objects, h: packages.New(packages.Deps{Store: st, Objects: objects, Admin: a, MaxPackageBytes: maxBytes})}
}

// upload posts pkg as the multipart file part "package" (with a packageId
// part first when id is set).
func (e *env) upload(tenant, id string, pkg []byte) *httptest.ResponseRecorder {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if id != "" {
		_ = mw.WriteField("packageId", id)
	}
	fw, _ := mw.CreateFormFile("package", "demo.csar")
	_, _ = fw.Write(pkg)
	_ = mw.Close()
	req := httptest.NewRequest("POST", "/lcmcontroller/v1/tenants/"+tenant+"/packages", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+admin)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

func (e *env) call(method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

func (e *env) objectsUnder(t *testing.T, prefix string) []string {
	t.Helper()
	keys, err := e.objects.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: secret-token-value}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

func hostBody(ip string) string {
	b, _ := json.Marshal(packages.HostRequest{MechostIP: ip, MechostName: "edge-1", City: "Paris", Kubeconfig: kubeconfig})
	return string(b)
}

func TestPackagesAgainstMinIO(t *testing.T) {
	mio := testenv.NeedMinIO(t)
	ctx := context.Background()

	t.Run("upload, read, distribute, delete", func(t *testing.T) {
		e := newEnv(t, mio, 0)
		pkg := csartest.CSAR(csartest.Options{})
		w := e.upload("tenant-1", "pkg-1", pkg)
		if w.Code != http.StatusCreated {
			t.Fatalf("upload: %d %s", w.Code, w.Body)
		}
		if loc := w.Header().Get("Location"); !strings.HasSuffix(loc, "/lcmcontroller/v1/tenants/tenant-1/packages/pkg-1") {
			t.Errorf("Location %q", loc)
		}
		sum := sha256.Sum256(pkg)
		rec, err := e.st.GetPackage(ctx, "tenant-1", "pkg-1")
		if err != nil {
			t.Fatal(err)
		}
		if rec.Size != int64(len(pkg)) || rec.SHA256 != hex.EncodeToString(sum[:]) || rec.AppName != "demo" || len(rec.Charts) != 1 {
			t.Errorf("record %+v", rec)
		}
		if size, err := e.objects.Size(ctx, packages.ObjectKey("tenant-1", "pkg-1")); err != nil || size != int64(len(pkg)) {
			t.Errorf("object in MinIO: size %d err %v", size, err)
		}
		problemtest.Want(t, e.upload("tenant-1", "pkg-1", pkg), "/lcmcontroller/v1/tenants/tenant-1/packages", http.StatusConflict, "")

		if w := e.call("GET", "/lcmcontroller/v1/tenants/tenant-1/packages", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"packageId":"pkg-1"`) {
			t.Errorf("list: %d %s", w.Code, w.Body)
		}
		if w := e.call("GET", "/lcmcontroller/v1/tenants/tenant-2/packages/pkg-1", ""); w.Code != 404 {
			t.Errorf("another tenant's package: %d", w.Code)
		}

		dist := "/lcmcontroller/v1/tenants/tenant-1/packages/pkg-1/distribute"
		problemtest.Want(t, e.call("POST", dist, `{"hostIp":["192.0.2.1"]}`), dist, http.StatusNotFound, "")
		if w := e.call("POST", "/lcmcontroller/v1/hosts", hostBody("192.0.2.1")); w.Code != 201 {
			t.Fatalf("add host: %d %s", w.Code, w.Body)
		}
		if w := e.call("POST", dist, `{"hostIp":["192.0.2.1"]}`); w.Code != 200 || !strings.Contains(w.Body.String(), `"192.0.2.1":"Distributed"`) {
			t.Fatalf("distribute: %d %s", w.Code, w.Body)
		}
		if w := e.call("GET", dist, ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"192.0.2.1":"Distributed"`) {
			t.Errorf("distribution: %d %s", w.Code, w.Body)
		}
		problemtest.Want(t, e.call("POST", dist, `{"hostIp":["not-an-ip"]}`), dist, http.StatusBadRequest, "hostIp")
		problemtest.Want(t, e.call("POST", "/lcmcontroller/v1/tenants/tenant-1/packages/nope/distribute", `{"hostIp":["192.0.2.1"]}`),
			"/lcmcontroller/v1/tenants/tenant-1/packages/nope/distribute", http.StatusNotFound, "")

		if w := e.call("DELETE", "/lcmcontroller/v1/tenants/tenant-1/packages/pkg-1", ""); w.Code != 204 {
			t.Fatalf("delete: %d %s", w.Code, w.Body)
		}
		if keys := e.objectsUnder(t, "packages/"); len(keys) != 0 {
			t.Errorf("objects left after delete: %v", keys)
		}
		if _, err := e.st.GetPackage(ctx, "tenant-1", "pkg-1"); err == nil {
			t.Error("record left after delete")
		}
		problemtest.Want(t, e.call("DELETE", "/lcmcontroller/v1/tenants/tenant-1/packages/pkg-1", ""),
			"/lcmcontroller/v1/tenants/tenant-1/packages/pkg-1", http.StatusNotFound, "")
	})

	t.Run("generated id", func(t *testing.T) {
		e := newEnv(t, mio, 0)
		w := e.upload("tenant-1", "", csartest.CSAR(csartest.Options{}))
		var got packages.PackageInfo
		if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &got) != nil || len(got.ID) != 32 {
			t.Fatalf("upload: %d %s", w.Code, w.Body)
		}
	})

	t.Run("bad packages leave nothing behind", func(t *testing.T) {
		const limit = 64 << 10
		e := newEnv(t, mio, limit)
		path := "/lcmcontroller/v1/tenants/tenant-1/packages"
		for _, tc := range []struct {
			name   string
			pkg    []byte
			status int
			detail string
		}{
			{"not a zip", []byte("just some text, not a zip archive"), 400, "not a zip"},
			{"missing TOSCA.meta", csartest.CSAR(csartest.Options{NoMeta: true}), 400, "missing TOSCA-Metadata/TOSCA.meta"},
			{"no chart", csartest.CSAR(csartest.Options{NoChart: true}), 400, "no Helm chart"},
			{"path traversal", csartest.CSAR(csartest.Options{Extra: map[string]string{"../evil.sh": "rm -rf /"}}), 400, "climbs out"},
			{"oversize", csartest.CSAR(csartest.Options{Padding: 2 * limit}), 413, "exceeds 65536 bytes"},
			{"empty", nil, 400, "empty"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := e.upload("tenant-1", "bad", tc.pkg)
				field := "package"
				if tc.status == 413 {
					field = ""
				}
				problemtest.Want(t, w, path, tc.status, field)
				if !strings.Contains(w.Body.String(), tc.detail) {
					t.Errorf("detail does not say %q: %s", tc.detail, w.Body)
				}
				if keys := e.objectsUnder(t, "packages/"); len(keys) != 0 {
					t.Errorf("objects left behind: %v", keys)
				}
				if pkgs, _ := e.st.ListPackages(ctx, "tenant-1"); len(pkgs) != 0 {
					t.Errorf("records left behind: %+v", pkgs)
				}
			})
		}
		// Not multipart at all.
		req := httptest.NewRequest("POST", path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		problemtest.Want(t, w, path, 400, "Content-Type")
		// A declared length over the limit is refused before anything is read.
		req = httptest.NewRequest("POST", path, io.LimitReader(strings.NewReader(""), 0))
		req.ContentLength = 10 << 20
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		w = httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		problemtest.Want(t, w, path, 413, "")
	})

	t.Run("hosts", func(t *testing.T) {
		e := newEnv(t, mio, 0)
		if w := e.call("POST", "/lcmcontroller/v1/hosts", hostBody("192.0.2.9")); w.Code != 201 || strings.Contains(w.Body.String(), "secret-token-value") {
			t.Fatalf("add: %d %s", w.Code, w.Body)
		}
		problemtest.Want(t, e.call("POST", "/lcmcontroller/v1/hosts", hostBody("192.0.2.9")), "/lcmcontroller/v1/hosts", 409, "")
		// The kubeconfig is sealed at rest: its token is nowhere in Redis.
		rdb := srv.Client(t)
		keys, _ := rdb.Keys(ctx, "*").Result()
		for _, k := range keys {
			if typ, _ := rdb.Type(ctx, k).Result(); typ == "hash" {
				vals, _ := rdb.HGetAll(ctx, k).Result()
				for f, v := range vals {
					if strings.Contains(v, "secret-token-value") {
						t.Errorf("kubeconfig in the clear in %s.%s", k, f)
					}
				}
			}
		}
		h, err := e.st.GetHostKubeconfig(ctx, "192.0.2.9")
		if err != nil || string(h.Kubeconfig) != kubeconfig {
			t.Errorf("kubeconfig round trip: %v", err)
		}
		if w := e.call("GET", "/lcmcontroller/v1/hosts", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"mechostIp":"192.0.2.9"`) || strings.Contains(w.Body.String(), "secret-token") {
			t.Errorf("list: %d %s", w.Code, w.Body)
		}
		upd := strings.Replace(hostBody("192.0.2.9"), "Paris", "Lyon", 1)
		if w := e.call("PUT", "/lcmcontroller/v1/hosts/192.0.2.9", upd); w.Code != 200 || !strings.Contains(w.Body.String(), "Lyon") {
			t.Errorf("update: %d %s", w.Code, w.Body)
		}
		problemtest.Want(t, e.call("PUT", "/lcmcontroller/v1/hosts/192.0.2.10", hostBody("192.0.2.10")), "/lcmcontroller/v1/hosts/192.0.2.10", 404, "")
		problemtest.Want(t, e.call("PUT", "/lcmcontroller/v1/hosts/192.0.2.9", hostBody("192.0.2.10")), "/lcmcontroller/v1/hosts/192.0.2.9", 400, "mechostIp")
		bad := strings.Replace(hostBody("192.0.2.11"), "current-context: x", "", 1)
		problemtest.Want(t, e.call("POST", "/lcmcontroller/v1/hosts", bad), "/lcmcontroller/v1/hosts", 400, "kubeconfig")
		problemtest.Want(t, e.call("POST", "/lcmcontroller/v1/hosts", `{"mechostIp":"192.0.2.12","kubeconfig":"x","extra":1}`), "/lcmcontroller/v1/hosts", 400, "body")
		problemtest.Want(t, e.call("GET", "/lcmcontroller/v1/hosts/edge", ""), "/lcmcontroller/v1/hosts/edge", 400, "hostIp")
		if w := e.call("DELETE", "/lcmcontroller/v1/hosts/192.0.2.9", ""); w.Code != 204 {
			t.Errorf("delete: %d %s", w.Code, w.Body)
		}
		problemtest.Want(t, e.call("GET", "/lcmcontroller/v1/hosts/192.0.2.9", ""), "/lcmcontroller/v1/hosts/192.0.2.9", 404, "")
	})

	t.Run("admin only", func(t *testing.T) {
		e := newEnv(t, mio, 0)
		req := httptest.NewRequest("GET", "/lcmcontroller/v1/hosts", nil)
		req.Header.Set("Authorization", "Bearer app-token")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code != 401 && w.Code != 403 {
			t.Errorf("non-admin: %d", w.Code)
		}
	})
}

func TestS3Unavailable(t *testing.T) {
	st := srv.Store(t, store.Options{EncryptionKey: bytes.Repeat([]byte{7}, 32)})
	port, _ := testenv.FreePort()
	objects, _ := blob.New(blob.Config{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "a", SecretKey: "b"})
	a, _ := auth.NewAdmin(admin)
	e := &env{st: st, h: packages.New(packages.Deps{Store: st, Objects: objects, Admin: a})}
	w := e.upload("tenant-1", "pkg-1", csartest.CSAR(csartest.Options{}))
	problemtest.Want(t, w, "/lcmcontroller/v1/tenants/tenant-1/packages", http.StatusServiceUnavailable, "")
	if w.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if pkgs, _ := st.ListPackages(context.Background(), "tenant-1"); len(pkgs) != 0 {
		t.Errorf("record without an object: %+v", pkgs)
	}
}
