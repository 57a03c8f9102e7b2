package packages_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/csar/csartest"
)

// BenchmarkUpload200MB uploads a 200 MB package through the packages
// function's own binary (a separate process, so its memory can be read)
// and, in the same run, PUTs the same file straight to the same MinIO with
// the SDK's PutObject (what `aws s3 cp` amounts to). It reports both
// throughputs, their ratio, and the function's peak RSS above its idle RSS.
func BenchmarkUpload200MB(b *testing.B) {
	mio := testenv.NeedMinIO(b)
	dir := b.TempDir()
	pkgPath := filepath.Join(dir, "big.csar")
	f, err := os.Create(pkgPath)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := csartest.Write(w, csartest.Options{Padding: 200 << 20}); err != nil {
		b.Fatal(err)
	}
	_ = w.Flush()
	_ = f.Close()
	st, _ := os.Stat(pkgPath)
	size := st.Size()

	bin := filepath.Join(dir, "packages")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kmep-io/kmep/functions/packages/cmd").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	port, _ := testenv.FreePort()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "REDIS_URL="+srv.URL(), "KMEP_ADMIN_TOKEN="+admin,
		"KMEP_ENCRYPTION_KEY="+strings.Repeat("ab", 32), "S3_ENDPOINT="+mio.Endpoint, "S3_ACCESS_KEY="+mio.AccessKey,
		"S3_SECRET_KEY="+mio.SecretKey, "S3_BUCKET=bench", "KMEP_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			b.Fatal("packages binary did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
	idle := procKB(b, cmd.Process.Pid, "VmRSS")

	raw := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(mio.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(mio.AccessKey, mio.SecretKey, "")})
	if _, err := raw.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("raw")}); err != nil {
		b.Fatal(err)
	}
	var ours, direct time.Duration
	run := time.Now().UnixNano() // ids unique across the benchmark's runs (b.N = 1, then more)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		uploadFile(b, base, fmt.Sprintf("big-%d-%d", run, i), pkgPath)
		ours += time.Since(start)

		f, _ := os.Open(pkgPath)
		start = time.Now()
		_, err := raw.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("raw"), Key: aws.String(fmt.Sprintf("big-%d-%d", run, i)), Body: f})
		direct += time.Since(start)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	peak := procKB(b, cmd.Process.Pid, "VmHWM")
	mb := float64(size) / (1 << 20)
	oursMBs := mb * float64(b.N) / ours.Seconds()
	directMBs := mb * float64(b.N) / direct.Seconds()
	b.ReportMetric(oursMBs, "MB/s-function")
	b.ReportMetric(directMBs, "MB/s-PutObject")
	b.ReportMetric(oursMBs/directMBs, "ratio")
	b.ReportMetric(float64(peak-idle)/1024, "MB-peakRSS-above-idle")
	b.ReportMetric(float64(idle)/1024, "MB-idleRSS")
}

func uploadFile(b *testing.B, base, id, path string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		_ = mw.WriteField("packageId", id)
		fw, _ := mw.CreateFormFile("package", "big.csar")
		f, err := os.Open(path)
		if err == nil {
			_, err = io.Copy(fw, f)
			f.Close()
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequest("POST", base+"/lcmcontroller/v1/tenants/bench/packages", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		b.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
}

// procKB reads a "Vm...: N kB" line of /proc/pid/status.
func procKB(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
