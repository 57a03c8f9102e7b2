// Package csartest builds real app packages for tests: a small Helm chart
// (five objects: Deployment, Service, Secret, ConfigMap, ServiceAccount)
// packed as a .tgz the way `helm package` lays it out, wrapped in a CSAR
// with TOSCA.meta, a manifest and an APPD carrying rules.
package csartest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"maps"
	"slices"
)

// ChartFiles are the chart's files, relative to its directory. The
// templates use .Values.ak, .Values.appInstanceId and .Values.mepagent the
// way instantiate fills them. With a value mepagent.image (ChartValues)
// the Deployment gets kmep's mep-agent as a sidecar, which registers one
// service named after the release (a sixth object: its
// app_instance_info.yaml ConfigMap) and heartbeats it.
func ChartFiles(name string) map[string]string {
	return map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: " + name + "\nversion: 0.1.0\nappVersion: \"1.0\"\n",
		"values.yaml": ChartValues(name, "", ""),
		"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {app: {{ .Release.Name }}}
spec:
  replicas: {{ .Values.replicaCount }}
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      serviceAccountName: {{ .Release.Name }}
      containers:
      - name: app
        image: {{ .Values.image }}
        ports: [{containerPort: {{ .Values.port }}}]
        envFrom: [{secretRef: {name: {{ .Release.Name }}-aksk}}, {configMapRef: {name: {{ .Release.Name }}-mep}}]
      {{- $agent := .Values.mepagent | default dict }}
      {{- if $agent.image }}
      - name: mep-agent
        image: {{ $agent.image }}
        env:
        - {name: KMEP_URL, value: {{ $agent.mepServer | default "" | quote }}}
        - {name: APP_INSTANCE_INFO, value: /etc/mep-agent/app_instance_info.yaml}
        envFrom: [{secretRef: {name: {{ .Release.Name }}-aksk}}]
        volumeMounts: [{name: mep-agent, mountPath: /etc/mep-agent, readOnly: true}]
      volumes:
      - name: mep-agent
        configMap: {name: {{ .Release.Name }}-mep-agent}
      {{- end }}
`,
		"templates/mep-agent.yaml": `{{- $agent := .Values.mepagent | default dict }}
{{- if $agent.image }}
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-mep-agent}
data:
  app_instance_info.yaml: |
    appInstanceId: {{ .Values.appInstanceId }}
    serviceInfoPosts:
      - serName: {{ .Release.Name }}
        version: "1.0"
        state: ACTIVE
        serializer: JSON
        livenessInterval: 10
        transportInfo:
          id: {{ .Release.Name }}-rest
          name: REST
          type: REST_HTTP
          protocol: HTTP
          version: "1.1"
          endpoint:
            addresses:
              - host: {{ .Release.Name }}.{{ .Release.Namespace }}.svc.cluster.local
                port: {{ .Values.port }}
          security: {}
{{- end }}
`,
		"templates/service.yaml": `apiVersion: v1
kind: Service
metadata: {name: {{ .Release.Name }}}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: {{ .Values.port }}, targetPort: {{ .Values.port }}}]
`,
		"templates/secret.yaml": `apiVersion: v1
kind: Secret
metadata: {name: {{ .Release.Name }}-aksk}
stringData:
  AK: {{ required "ak is required" .Values.ak | quote }}
  SK: {{ required "sk is required" .Values.sk | quote }}
  APPINSTID: {{ .Values.appInstanceId | quote }}
`,
		"templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-mep}
data:
  MEPAGENT_ENABLED: {{ .Values.mepagent.enabled | quote }}
  MEP_URL: {{ .Values.mepagent.mepServer | default "" | quote }}
`,
		"templates/serviceaccount.yaml": `apiVersion: v1
kind: ServiceAccount
metadata: {name: {{ .Release.Name }}}
`,
	}
}

// Chart packs files as a chart archive: a gzipped tar whose entries sit
// under "<name>/".
func Chart(name string, files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, path := range slices.Sorted(maps.Keys(files)) {
		body := files[path]
		_ = tw.WriteHeader(&tar.Header{Name: name + "/" + path, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(body))
	}
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes()
}

// AppD is an APPD service template with one traffic rule and one DNS rule
// in MEC 011's shape, under the MEC 010-2 names.
const AppD = `tosca_definitions_version: tosca_simple_profile_yaml_1_2
topology_template:
  node_templates:
    demo_app:
      type: tosca.nodes.nfv.VNF
      properties:
        vnfd_id: demo
  app_configuration:
    appTrafficRule:
    - trafficRuleId: tr1
      filterType: FLOW
      priority: 1
      action: DROP
      trafficFilter:
      - srcAddress: ["10.0.0.0/24"]
        dstPort: ["80"]
        protocol: ["TCP"]
    appDNSRule:
    - dnsRuleId: dns1
      domainName: demo.mec.example
      ipAddressType: IP_V4
      ipAddress: 10.0.0.7
      ttl: 30
`

// Options shape a package; the zero value is a valid one.
type Options struct {
	// Name is the chart's and app's name. Zero value: "demo".
	Name string
	// Chart replaces the chart archive.
	Chart []byte
	// AppD replaces the APPD's text.
	AppD string
	// NoMeta, NoManifest, NoAppD, NoChart leave that part out.
	NoMeta, NoManifest, NoAppD, NoChart bool
	// Extra entries (path → content), e.g. "../evil" or padding.
	Extra map[string]string
	// Padding adds Artifacts/Docs/padding.bin of this many incompressible
	// bytes, stored (for large-upload benchmarks).
	Padding int64
	// Image and MepAgentImage are the chart's default values image and
	// mepagent.image (ChartValues). Zero values: registry.local/NAME:1.0
	// and no sidecar.
	Image, MepAgentImage string
}

// ChartValues is the chart's values.yaml for the app image image (zero
// value: registry.local/NAME:1.0) and, when agentImage is set, the
// mep-agent sidecar's image.
func ChartValues(name, image, agentImage string) string {
	if image == "" {
		image = "registry.local/" + name + ":1.0"
	}
	v := "replicaCount: 1\nimage: " + image + "\nport: 8080\n"
	if agentImage != "" {
		v += "mepagent:\n  image: " + agentImage + "\n"
	}
	return v
}

// CSAR builds a package.
func CSAR(o Options) []byte {
	var buf bytes.Buffer
	_ = Write(&buf, o)
	return buf.Bytes()
}

// Write writes a package to w (streaming: Padding is generated, not held).
func Write(w io.Writer, o Options) error {
	if o.Name == "" {
		o.Name = "demo"
	}
	if o.Chart == nil {
		files := ChartFiles(o.Name)
		files["values.yaml"] = ChartValues(o.Name, o.Image, o.MepAgentImage)
		o.Chart = Chart(o.Name, files)
	}
	zw := zip.NewWriter(w)
	add := func(name string, body []byte) error {
		f, err := zw.Create(name)
		if err != nil {
			return err
		}
		_, err = f.Write(body)
		return err
	}
	type part struct {
		name string
		body []byte
	}
	var parts []part
	addPart := func(name string, body []byte) { parts = append(parts, part{name, body}) }
	if !o.NoMeta {
		addPart("TOSCA-Metadata/TOSCA.meta", []byte("TOSCA-Meta-File-Version: 1.0\nCSAR-Version: 1.1\nCreated-by: kmep tests\nEntry-Definitions: APPD/"+o.Name+".yaml\n"))
	}
	if !o.NoManifest {
		addPart(o.Name+".mf", []byte("metadata:\napp_product_name: "+o.Name+"\napp_provider_id: kmep\napp_package_version: 1.0\napp_release_data_time: 2026-11-21 00:00\n"))
	}
	if !o.NoAppD {
		appd := o.AppD
		if appd == "" {
			appd = AppD
		}
		addPart("APPD/"+o.Name+".yaml", []byte(appd))
	}
	if !o.NoChart {
		addPart("Artifacts/Deployment/Charts/"+o.Name+".tgz", o.Chart)
	}
	for _, k := range slices.Sorted(maps.Keys(o.Extra)) {
		addPart(k, []byte(o.Extra[k]))
	}
	for _, p := range parts {
		if err := add(p.name, p.body); err != nil {
			return err
		}
	}
	if o.Padding > 0 {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: "Artifacts/Docs/padding.bin", Method: zip.Store})
		if err != nil {
			return err
		}
		if _, err := io.CopyN(f, newNoise(), o.Padding); err != nil {
			return err
		}
	}
	return zw.Close()
}

// noise is a fast, incompressible-looking byte stream (xorshift).
type noise struct{ s uint64 }

func newNoise() *noise { return &noise{s: 0x9E3779B97F4A7C15} }

func (n *noise) Read(p []byte) (int, error) {
	for i := 0; i+8 <= len(p); i += 8 {
		n.s ^= n.s << 13
		n.s ^= n.s >> 7
		n.s ^= n.s << 17
		for j := 0; j < 8; j++ {
			p[i+j] = byte(n.s >> (8 * j))
		}
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(n.s)
	}
	return len(p), nil
}
