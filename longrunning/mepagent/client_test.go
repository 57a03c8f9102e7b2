package mepagent_test

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/kmep-io/kmep/longrunning/mepagent"
)

func TestNewHTTPClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		opts             mepagent.ClientOptions
		newErr, callFail bool
	}{
		{name: "system roots refuse a private CA", opts: mepagent.ClientOptions{}, callFail: true},
		{name: "MEP_CA_CERT", opts: mepagent.ClientOptions{CAFile: ca}},
		{name: "MEP_TLS_INSECURE", opts: mepagent.ClientOptions{InsecureSkipVerify: true}},
		{name: "missing CA file", opts: mepagent.ClientOptions{CAFile: filepath.Join(dir, "none.pem")}, newErr: true},
		{name: "CA file without PEM", opts: mepagent.ClientOptions{CAFile: notPEM}, newErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := mepagent.NewHTTPClient(tc.opts)
			if (err != nil) != tc.newErr {
				t.Fatalf("NewHTTPClient: %v", err)
			}
			if err != nil {
				return
			}
			res, err := c.Get(srv.URL)
			if err == nil {
				res.Body.Close()
			}
			if (err != nil) != tc.callFail {
				t.Fatalf("GET: %v", err)
			}
		})
	}
}
