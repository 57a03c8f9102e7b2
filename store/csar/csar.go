// Package csar reads and checks MEC app packages: ETSI/TOSCA CSAR zips as
// EdgeGallery's applcm accepts them. It works on an io.ReaderAt (an S3
// object read with ranged GETs), so a package is never held in memory.
//
// A valid package has TOSCA-Metadata/TOSCA.meta naming its
// Entry-Definitions (an entry of the zip), a .mf manifest, an APPD
// (APPD/*.zip or APPD/*.yaml) and at least one Helm chart
// (Artifacts/Deployment/Charts/*.tgz, a gzipped tar with a Chart.yaml). No
// entry may climb out of the package (absolute paths, "..", backslashes).
package csar

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"gopkg.in/yaml.v3"
)

// Paths inside a CSAR.
const (
	MetaPath  = "TOSCA-Metadata/TOSCA.meta"
	ChartsDir = "Artifacts/Deployment/Charts/"
	AppDDir   = "APPD/"
)

// Limits on what is read out of a package.
const (
	maxEntries   = 10_000
	maxSmallFile = 1 << 20  // TOSCA.meta, manifest, APPD yaml
	maxAppDZip   = 16 << 20 // an APPD zip, read into memory
	// MaxChart is the largest chart (.tgz) instantiate reads.
	MaxChart = 64 << 20
)

// InvalidError says why a package was refused; its text is for the client.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "invalid package: " + e.Reason }

func invalid(format string, a ...any) error { return &InvalidError{Reason: fmt.Sprintf(format, a...)} }

// Package is what a valid CSAR says about itself.
type Package struct {
	// EntryDefinitions is the TOSCA.meta entry point.
	EntryDefinitions string
	// Manifest is the .mf file's path.
	Manifest string
	// AppD is the APPD's path (a .zip or .yaml).
	AppD string
	// Charts are the Helm charts' paths, in zip order.
	Charts []string
	// AppName, AppVersion and Provider are the manifest's
	// app_product_name (or app_name), app_package_version and
	// app_provider_id.
	AppName, AppVersion, Provider string

	zr *zip.Reader
}

// Open checks the CSAR of size bytes read through r.
func Open(r io.ReaderAt, size int64) (*Package, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		var iv *InvalidError
		if errors.As(err, &iv) {
			return nil, err
		}
		if errors.Is(err, zip.ErrFormat) || errors.Is(err, zip.ErrAlgorithm) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, invalid("not a zip archive (%v)", err)
		}
		if errors.Is(err, zip.ErrInsecurePath) {
			return nil, invalid("an entry climbs out of the package")
		}
		return nil, fmt.Errorf("read package: %w", err)
	}
	if len(zr.File) > maxEntries {
		return nil, invalid("more than %d entries", maxEntries)
	}
	p := &Package{zr: zr}
	names := make(map[string]*zip.File, len(zr.File))
	for _, f := range zr.File {
		if err := checkName(f.Name); err != nil {
			return nil, err
		}
		names[f.Name] = f
	}
	meta, ok := names[MetaPath]
	if !ok {
		return nil, invalid("missing %s", MetaPath)
	}
	b, err := readFile(meta, maxSmallFile)
	if err != nil {
		return nil, err
	}
	fields := parseMeta(b)
	p.EntryDefinitions = fields["Entry-Definitions"]
	if p.EntryDefinitions == "" {
		return nil, invalid("%s names no Entry-Definitions", MetaPath)
	}
	if _, ok := names[p.EntryDefinitions]; !ok {
		return nil, invalid("Entry-Definitions %q is not in the package", p.EntryDefinitions)
	}
	if m := fields["ETSI-Entry-Manifest"]; m != "" {
		if _, ok := names[m]; !ok {
			return nil, invalid("ETSI-Entry-Manifest %q is not in the package", m)
		}
		p.Manifest = m
	}
	for _, f := range zr.File {
		name := f.Name
		switch {
		case p.Manifest == "" && !strings.Contains(name, "/") && strings.HasSuffix(name, ".mf"):
			p.Manifest = name
		case p.AppD == "" && strings.HasPrefix(name, AppDDir) && isAppD(name):
			p.AppD = name
		case strings.HasPrefix(name, ChartsDir) && strings.HasSuffix(name, ".tgz") && !strings.Contains(name[len(ChartsDir):], "/"):
			if err := checkChart(f); err != nil {
				return nil, err
			}
			p.Charts = append(p.Charts, name)
		}
	}
	if strings.HasPrefix(p.EntryDefinitions, AppDDir) && isAppD(p.EntryDefinitions) {
		p.AppD = p.EntryDefinitions
	}
	switch {
	case p.Manifest == "":
		return nil, invalid("no .mf manifest at the package root")
	case p.AppD == "":
		return nil, invalid("no APPD (APPD/*.zip or APPD/*.yaml)")
	case len(p.Charts) == 0:
		return nil, invalid("no Helm chart (%s*.tgz)", ChartsDir)
	}
	mf, err := readFile(names[p.Manifest], maxSmallFile)
	if err != nil {
		return nil, err
	}
	p.readManifest(mf)
	return p, nil
}

func isAppD(name string) bool {
	return strings.HasSuffix(name, ".zip") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// checkName refuses entry names that could escape a directory the package
// is extracted to.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return invalid("entry %q: not a relative path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return invalid("entry %q climbs out of the package", name)
		}
	}
	return nil
}

func readFile(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, invalid("%s is larger than %d bytes", f.Name, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, invalid("%s: %v", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		var iv *InvalidError
		if errors.As(err, &iv) || errors.Is(err, zip.ErrChecksum) || errors.Is(err, zip.ErrFormat) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, invalid("%s: %v", f.Name, err)
		}
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, invalid("%s is larger than %d bytes", f.Name, limit)
	}
	return b, nil
}

// parseMeta reads TOSCA.meta's "Key: Value" lines.
func parseMeta(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// readManifest picks the app's name, version and provider from the .mf
// ("key: value" lines, as EdgeGallery's manifests have them).
func (p *Package) readManifest(b []byte) {
	m := parseMeta(b)
	p.AppName = m["app_product_name"]
	if p.AppName == "" {
		p.AppName = m["app_name"]
	}
	p.AppVersion = m["app_package_version"]
	p.Provider = m["app_provider_id"]
}

// checkChart reads the chart's tar stream until it finds <chart>/Chart.yaml.
func checkChart(f *zip.File) error {
	if f.UncompressedSize64 > MaxChart {
		return invalid("chart %s is larger than %d bytes", f.Name, MaxChart)
	}
	rc, err := f.Open()
	if err != nil {
		return invalid("chart %s: %v", f.Name, err)
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		return invalid("chart %s is not a gzipped tar (%v)", f.Name, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			return invalid("chart %s has no Chart.yaml", f.Name)
		}
		if dir, file := path.Split(h.Name); file == "Chart.yaml" && strings.Count(strings.Trim(dir, "/"), "/") == 0 && dir != "" {
			return nil
		}
	}
}

// Chart returns a chart's bytes (the .tgz). name "" is the first chart.
func (p *Package) Chart(name string) ([]byte, error) {
	if name == "" {
		name = p.Charts[0]
	}
	for _, f := range p.zr.File {
		if f.Name == name {
			return readFile(f, MaxChart)
		}
	}
	return nil, invalid("no chart %q", name)
}

// Rules are the traffic and DNS rules an APPD asks for, as MEC 011 JSON.
type Rules struct {
	Traffic [][]byte
	DNS     [][]byte
}

// Rules reads the APPD's appTrafficRule and appDNSRule lists (MEC 010-2
// names; wherever they are in the APPD's YAML, in MEC 011's shape), from
// the APPD yaml or from every yaml inside an APPD zip.
func (p *Package) Rules() (Rules, error) {
	var out Rules
	for _, f := range p.zr.File {
		if f.Name != p.AppD {
			continue
		}
		b, err := readFile(f, maxAppDZip)
		if err != nil {
			return out, err
		}
		if !strings.HasSuffix(f.Name, ".zip") {
			return out, collectRules(f.Name, b, &out)
		}
		inner, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return out, invalid("APPD %s is not a zip (%v)", f.Name, err)
		}
		for _, g := range inner.File {
			if err := checkName(g.Name); err != nil {
				return out, err
			}
			if !strings.HasSuffix(g.Name, ".yaml") && !strings.HasSuffix(g.Name, ".yml") {
				continue
			}
			y, err := readFile(g, maxSmallFile)
			if err != nil {
				return out, err
			}
			if err := collectRules(f.Name+"!"+g.Name, y, &out); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func collectRules(name string, b []byte, out *Rules) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("APPD %s: %v", name, err)
		}
		if err := walk(doc, out); err != nil {
			return invalid("APPD %s: %v", name, err)
		}
	}
}

func walk(v any, out *Rules) error {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			var dst *[][]byte
			switch k {
			case "appTrafficRule":
				dst = &out.Traffic
			case "appDNSRule":
				dst = &out.DNS
			}
			if dst == nil {
				if err := walk(c, out); err != nil {
					return err
				}
				continue
			}
			list, ok := c.([]any)
			if !ok {
				return fmt.Errorf("%s is not a list", k)
			}
			for _, r := range list {
				b, err := jsonOf(r)
				if err != nil {
					return fmt.Errorf("%s: %v", k, err)
				}
				*dst = append(*dst, b)
			}
		}
	case []any:
		for _, c := range t {
			if err := walk(c, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonOf turns a YAML value into JSON (yaml.v3 decodes maps with string keys,
// which encoding/json takes as they are).
func jsonOf(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %v", err)
	}
	return b, nil
}
