package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/local/s3server"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/blob"
)

// exercise runs the package's operations against a real S3-protocol server.
func exercise(t *testing.T, cfg blob.Config) {
	ctx := context.Background()
	s, err := blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatalf("second EnsureBucket: %v", err)
	}
	// 13 MiB + a bit: two parts of the multipart upload and a short one.
	data := make([]byte, 13<<20+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if err := s.Put(ctx, "a/big.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a/small.txt", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size(ctx, "a/big.bin"); err != nil || n != int64(len(data)) {
		t.Fatalf("size %d %v", n, err)
	}
	ra := s.ReaderAt(ctx, "a/big.bin", int64(len(data)))
	for _, c := range []struct{ off, n int64 }{{0, 10}, {5, 300 << 10}, {int64(len(data)) - 7, 7}, {1 << 20, 3 << 20}, {100, 1}} {
		buf := make([]byte, c.n)
		n, err := ra.ReadAt(buf, c.off)
		if err != nil || int64(n) != c.n || !bytes.Equal(buf, data[c.off:c.off+c.n]) {
			t.Fatalf("ReadAt(%d, %d): n=%d err=%v equal=%v", c.off, c.n, n, err, bytes.Equal(buf[:n], data[c.off:c.off+int64(n)]))
		}
	}
	buf := make([]byte, 10)
	if n, err := ra.ReadAt(buf, int64(len(data))-4); n != 4 || err != io.EOF {
		t.Errorf("read past the end: n=%d err=%v", n, err)
	}
	keys, err := s.List(ctx, "a/")
	if err != nil || fmt.Sprint(keys) != "[a/big.bin a/small.txt]" {
		t.Errorf("list: %v %v", keys, err)
	}
	if err := s.Delete(ctx, "a/big.bin"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a/big.bin"); err != nil {
		t.Errorf("deleting a missing object: %v", err)
	}
	if _, err := s.Size(ctx, "a/big.bin"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("size after delete: %v", err)
	}
	// A body that fails midway leaves no object.
	failing := io.MultiReader(bytes.NewReader(data[:9<<20]), &errReader{})
	if err := s.Put(ctx, "a/cut.bin", failing); err == nil {
		t.Fatal("upload of a failing body succeeded")
	}
	if ok, err := s.Exists(ctx, "a/cut.bin"); ok || err != nil {
		t.Errorf("cut upload left an object (%v, %v)", ok, err)
	}
}

type errReader struct{}

func (*errReader) Read([]byte) (int, error) { return 0, errors.New("client went away") }

func TestMinIO(t *testing.T) {
	m := testenv.NeedMinIO(t)
	exercise(t, blob.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: "blob-test"})
}

func TestEmbeddedServer(t *testing.T) {
	s, err := s3server.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exercise(t, blob.Config{Endpoint: s.Endpoint, AccessKey: "local", SecretKey: "local", Bucket: "blob-test"})
}

func TestUnavailable(t *testing.T) {
	port, _ := testenv.FreePort()
	s, _ := blob.New(blob.Config{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "a", SecretKey: "b"})
	err := s.Put(context.Background(), "k", strings.NewReader("x"))
	if !errors.Is(err, blob.ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable", err)
	}
}
