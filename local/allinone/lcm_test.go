package allinone_test

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/csar/csartest"
)

// A DNS rule configured through Mm5 is answered by the in-process mesh DNS
// server, with nothing else started.
func TestDNSRuleAnsweredLocally(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	base, _ := platform(t, allinone.Config{RedisURL: r.URL(), DNSAddr: dnsAddr})
	c := client{t, base}
	res, b := c.do("POST", "/mepcfg/app_lcm/v1/applications/app-1/appd_configuration", admin,
		`{"appName":"demo","appSupportMp1":true,"appTrafficRule":[],"appDNSRule":[{"dnsRuleId":"d1","domainName":"demo.example","ipAddressType":"IP_V4","ipAddress":"10.0.0.5","ttl":30}]}`)
	c.expect(res, b, http.StatusCreated)

	q := new(dns.Msg)
	q.SetQuestion("demo.example.", dns.TypeA)
	var answer *dns.Msg
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m, _, err := new(dns.Client).Exchange(q, dnsAddr)
		if err == nil && len(m.Answer) > 0 {
			answer = m
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if answer == nil {
		t.Fatal("no answer for the DNS rule from the all-in-one's DNS server")
	}
	a, ok := answer.Answer[0].(*dns.A)
	if !ok || a.A.String() != "10.0.0.5" || a.Hdr.Ttl != 30 {
		t.Errorf("answer: %v", answer.Answer)
	}
}

// Packages go to the embedded S3 server when no S3_ENDPOINT is set.
func TestPackagesOnEmbeddedS3(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, logs := platform(t, allinone.Config{RedisURL: r.URL()})
	if !strings.Contains(logs.String(), "embedded S3 server") {
		t.Error("the embedded S3 server is not announced in the log")
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("packageId", "demo-pkg")
	fw, _ := mw.CreateFormFile("package", "demo.csar")
	_, _ = fw.Write(csartest.CSAR(csartest.Options{}))
	_ = mw.Close()
	req, _ := http.NewRequest("POST", base+"/lcmcontroller/v1/tenants/tenant-1/packages", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d", res.StatusCode)
	}
	c := client{t, base}
	res, b := c.do("GET", "/lcmcontroller/v1/tenants/tenant-1/packages/demo-pkg", admin, "")
	c.expect(res, b, 200)
	if !bytes.Contains(b, []byte(`"appName":"demo"`)) {
		t.Errorf("package: %s", b)
	}
	// The instantiate API is mounted beside it.
	res, b = c.do("GET", "/lcmcontroller/v1/tenants/tenant-1/app_instances/nope", admin, "")
	c.expect(res, b, 404)
}
