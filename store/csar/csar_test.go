package csar_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/csar"
	"github.com/kmep-io/kmep/store/csar/csartest"
)

func open(b []byte) (*csar.Package, error) { return csar.Open(bytes.NewReader(b), int64(len(b))) }

func TestOpenValid(t *testing.T) {
	p, err := open(csartest.CSAR(csartest.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if p.AppName != "demo" || p.AppVersion != "1.0" || p.Provider != "kmep" {
		t.Errorf("manifest: got %q %q %q", p.AppName, p.AppVersion, p.Provider)
	}
	if p.AppD != "APPD/demo.yaml" || p.EntryDefinitions != "APPD/demo.yaml" || p.Manifest != "demo.mf" {
		t.Errorf("paths: appd %q entry %q manifest %q", p.AppD, p.EntryDefinitions, p.Manifest)
	}
	if len(p.Charts) != 1 || p.Charts[0] != "Artifacts/Deployment/Charts/demo.tgz" {
		t.Errorf("charts: %v", p.Charts)
	}
	chart, err := p.Chart("")
	if err != nil || !bytes.Equal(chart, csartest.Chart("demo", csartest.ChartFiles("demo"))) {
		t.Errorf("chart bytes differ from the fixture's (err %v)", err)
	}
	rules, err := p.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Traffic) != 1 || len(rules.DNS) != 1 {
		t.Fatalf("rules: %d traffic, %d dns", len(rules.Traffic), len(rules.DNS))
	}
	var dns map[string]any
	if err := json.Unmarshal(rules.DNS[0], &dns); err != nil || dns["domainName"] != "demo.mec.example" || dns["ttl"] != float64(30) {
		t.Errorf("dns rule: %s (%v)", rules.DNS[0], err)
	}
}

func TestOpenRefuses(t *testing.T) {
	brokenChart := []byte("not gzip at all")
	noChartYAML := csartest.Chart("demo", map[string]string{"values.yaml": "a: 1\n"})
	tests := []struct {
		name, want string
		pkg        []byte
	}{
		{"not a zip", "not a zip", []byte("PK? no, just text")},
		{"empty", "not a zip", nil},
		{"missing TOSCA.meta", "missing TOSCA-Metadata/TOSCA.meta", csartest.CSAR(csartest.Options{NoMeta: true})},
		{"no manifest", "no .mf manifest", csartest.CSAR(csartest.Options{NoManifest: true})},
		{"no APPD", "Entry-Definitions \"APPD/demo.yaml\" is not in the package", csartest.CSAR(csartest.Options{NoAppD: true})},
		{"no chart", "no Helm chart", csartest.CSAR(csartest.Options{NoChart: true})},
		{"chart not gzip", "not a gzipped tar", csartest.CSAR(csartest.Options{Chart: brokenChart})},
		{"chart without Chart.yaml", "has no Chart.yaml", csartest.CSAR(csartest.Options{Chart: noChartYAML})},
		{"path traversal", "climbs out", csartest.CSAR(csartest.Options{Extra: map[string]string{"Artifacts/../../etc/passwd": "x"}})},
		{"absolute path", "not a relative path", csartest.CSAR(csartest.Options{Extra: map[string]string{"/etc/passwd": "x"}})},
		{"backslash", "not a relative path", csartest.CSAR(csartest.Options{Extra: map[string]string{`..\evil`: "x"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := open(tt.pkg)
			var iv *csar.InvalidError
			if !errors.As(err, &iv) {
				t.Fatalf("got %v, want an InvalidError", err)
			}
			if !strings.Contains(iv.Reason, tt.want) {
				t.Errorf("reason %q does not say %q", iv.Reason, tt.want)
			}
		})
	}
}

func TestRulesRefusesNonList(t *testing.T) {
	p, err := open(csartest.CSAR(csartest.Options{AppD: "topology_template:\n  appDNSRule: 7\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Rules(); err == nil || !strings.Contains(err.Error(), "appDNSRule is not a list") {
		t.Errorf("got %v", err)
	}
}
