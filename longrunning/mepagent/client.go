package mepagent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// ClientOptions configure NewHTTPClient.
type ClientOptions struct {
	// CAFile is a PEM file of the CA certificates that the platform's
	// certificate must chain to, instead of the system roots. Zero value:
	// the system roots.
	CAFile string
	// InsecureSkipVerify accepts any certificate (MEP_TLS_INSECURE=true):
	// for a laptop only. It wins over CAFile. Zero value: verify.
	InsecureSkipVerify bool
}

// NewHTTPClient returns the client the agent calls the platform with: a
// clone of http.DefaultTransport (proxy from the environment, keep-alives)
// with TLS 1.2 or later and the roots o names. The agent bounds each call
// itself (Config.RequestTimeout).
func NewHTTPClient(o ClientOptions) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.InsecureSkipVerify:
		tr.TLSClientConfig.InsecureSkipVerify = true
	case o.CAFile != "":
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mepagent: CA certificates: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("mepagent: CA certificates: " + o.CAFile + " holds no PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr}, nil
}
