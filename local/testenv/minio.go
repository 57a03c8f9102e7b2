package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"
)

// MinIO is a real MinIO server on 127.0.0.1 with its data in a temporary
// directory.
type MinIO struct {
	// Endpoint is the S3 URL (http://127.0.0.1:port).
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	p                    *process
	dir                  string
}

// StartMinIO starts MinIO (built by make testbins). A *MissingError when
// its binary is not available.
func StartMinIO() (*MinIO, error) {
	bin, err := Binary("minio")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kmep-minio-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	m := &MinIO{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), AccessKey: "kmeptest", SecretKey: "kmeptest-secret-key", dir: dir}
	m.p, err = startProcess(dir, "minio.log", []string{"MINIO_ROOT_USER=" + m.AccessKey, "MINIO_ROOT_PASSWORD=" + m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1"},
		bin, "server", dir+"/data", "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	err = m.p.waitUntil(30*time.Second, "minio", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", m.Endpoint+"/minio/health/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// PID is the server's process id (for RSS readings in benchmarks).
func (m *MinIO) PID() int { return m.p.cmd.Process.Pid }

// Close stops the server and removes its data.
func (m *MinIO) Close() {
	m.p.stop()
	os.RemoveAll(m.dir)
}

// NeedMinIO starts MinIO for one test (closed at cleanup), or skips the
// test saying why the binary is missing.
func NeedMinIO(t testing.TB) *MinIO {
	t.Helper()
	m, err := StartMinIO()
	if err != nil {
		skipIfMissing(t, err)
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func skipIfMissing(t testing.TB, err error) {
	t.Helper()
	if me, ok := err.(*MissingError); ok {
		t.Skip("SKIPPED (real server missing): " + me.Error())
	}
}
