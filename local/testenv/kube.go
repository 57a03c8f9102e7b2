package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Kube is a real Kubernetes control plane on 127.0.0.1: etcd and
// kube-apiserver (both built by make testbins), with generated
// certificates and an admin token. There is no kubelet and no controller
// manager: objects are stored and served, pods never run.
type Kube struct {
	// URL is the API server's https URL.
	URL string
	// Kubeconfig reaches the API server as a cluster admin.
	Kubeconfig []byte
	etcd, api  *process
	dir        string
}

// StartKube starts etcd and kube-apiserver and waits until the API server
// is ready (~2 s). A *MissingError when a binary is not available.
func StartKube() (*Kube, error) {
	etcdBin, err := Binary("etcd")
	if err != nil {
		return nil, err
	}
	apiBin, err := Binary("kube-apiserver")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kmep-kube-")
	if err != nil {
		return nil, err
	}
	k := &Kube{dir: dir}
	if err := k.start(etcdBin, apiBin); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

func (k *Kube) start(etcdBin, apiBin string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	k.etcd, err = startProcess(k.dir, "etcd.log", nil, etcdBin, "--name", "kmep", "--data-dir", filepath.Join(k.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kmep="+peerURL, "--log-level", "warn", "--unsafe-no-fsync")
	if err != nil {
		return err
	}
	if err := k.etcd.waitUntil(20*time.Second, "etcd", func() error { return httpOK(http.DefaultClient, etcdURL+"/health", "") }); err != nil {
		return err
	}
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	token := base64.RawURLEncoding.EncodeToString(randomBytes(24))
	files := map[string][]byte{
		"tls.crt":    certPEM,
		"tls.key":    keyPEM,
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
		"tokens.csv": []byte(token + ",admin,admin-uid,system:masters\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(k.dir, name), b, 0o600); err != nil {
			return err
		}
	}
	k.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	f := func(n string) string { return filepath.Join(k.dir, n) }
	k.api, err = startProcess(k.dir, "kube-apiserver.log", nil, apiBin,
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[2]),
		"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--tls-cert-file="+f("tls.crt"), "--tls-private-key-file="+f("tls.key"),
		"--service-account-issuer="+k.URL, "--service-account-key-file="+f("sa.key"),
		"--service-account-signing-key-file="+f("sa.key"), "--authorization-mode=AlwaysAllow",
		"--token-auth-file="+f("tokens.csv"), "--service-cluster-ip-range=10.96.0.0/16",
		"--cert-dir="+f("certs"), "--v=0")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if err := k.api.waitUntil(60*time.Second, "kube-apiserver", func() error { return httpOK(client, k.URL+"/readyz", token) }); err != nil {
		return err
	}
	k.Kubeconfig = []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kmep-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kmep-test
  context:
    cluster: kmep-test
    user: admin
current-context: kmep-test
`, k.URL, base64.StdEncoding.EncodeToString(certPEM), token))
	return nil
}

func httpOK(c *http.Client, url, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// selfSigned makes a serving certificate for 127.0.0.1 that is its own CA.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "kmep-test-apiserver"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// Stop kills the API server (the cluster becomes unreachable) and etcd.
func (k *Kube) Stop() {
	k.api.stop()
	k.etcd.stop()
}

// Close stops both servers and removes their data.
func (k *Kube) Close() {
	k.Stop()
	os.RemoveAll(k.dir)
}

// NeedKube starts a control plane for one test (closed at cleanup), or
// skips the test saying why a binary is missing.
func NeedKube(t testing.TB) *Kube {
	t.Helper()
	k, err := StartKube()
	if err != nil {
		skipIfMissing(t, err)
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}
