package manifests_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
)

// envRead is one environment variable a binary reads.
type envRead struct {
	name       string
	hasDefault bool // read with server.Env/EnvDuration/EnvInt, or server.Main's KMEP_LOG_LEVEL
}

// envReader names the calls that read the environment: the os functions
// and the server helpers (which take a default).
var envReader = map[string]bool{"os.Getenv": false, "os.LookupEnv": false,
	"server.Env": true, "server.EnvDuration": true, "server.EnvInt": true}

// readsOf parses the main package in dir (its non-test files, every build
// tag) and returns the variables it reads. Local helpers that pass their
// parameter to os.Getenv (meshagent's list) and calls of a function value
// named getenv (mepagent's fromEnv) count as reads of their literal
// argument; a read whose name is not a literal is an error, so nothing
// escapes the check.
func readsOf(dir string) (map[string]envRead, error) {
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		fileNames[f] = n
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no Go files", dir)
	}
	// Local wrappers: functions whose parameter is passed to os.Getenv.
	wrappers := map[string]bool{"getenv": false}
	for _, f := range files {
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || fd.Type.Params == nil {
				continue
			}
			params := map[string]bool{}
			for _, p := range fd.Type.Params.List {
				for _, n := range p.Names {
					params[n.Name] = true
				}
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok && callee(c) == "os.Getenv" && len(c.Args) == 1 {
					if id, ok := c.Args[0].(*ast.Ident); ok && params[id.Name] {
						wrappers[fd.Name.Name] = false
					}
				}
				return true
			})
		}
	}
	reads := map[string]envRead{}
	var bad []string
	for _, f := range files {
		for _, decl := range f.Decls {
			// Inside a wrapper, os.Getenv's argument is the parameter.
			fd, _ := decl.(*ast.FuncDecl)
			_, inWrapper := wrappers[funcName(fd)]
			tables := rangeTables(decl)
			ast.Inspect(decl, func(n ast.Node) bool {
				c, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				name := callee(c)
				if name == "server.Main" {
					reads["KMEP_LOG_LEVEL"] = envRead{"KMEP_LOG_LEVEL", true}
					return true
				}
				def, isReader := envReader[name]
				if !isReader {
					def, isReader = wrappers[name]
				}
				if !isReader || len(c.Args) == 0 {
					return true
				}
				var names []string
				if lit, ok := c.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil {
						names = []string{v}
					}
				} else if sel, ok := c.Args[0].(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok {
						names = tables[id.Name+"."+sel.Sel.Name]
					}
				}
				if len(names) == 0 {
					if !inWrapper {
						bad = append(bad, fset.Position(c.Pos()).String())
					}
					return true
				}
				for _, v := range names {
					r := reads[v]
					r.name, r.hasDefault = v, r.hasDefault || def
					reads[v] = r
				}
				return true
			})
		}
	}
	if len(bad) > 0 {
		return reads, fmt.Errorf("environment reads whose name is not a literal: %v", bad)
	}
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				if st, ok := spec.(*ast.TypeSpec).Type.(*ast.StructType); ok {
					if err := tagReads(f, st, reads); err != nil {
						return reads, err
					}
				}
			}
		}
	}
	return reads, nil
}

// tagReads adds the variables of a config struct that server.Main reads
// with envconfig: each field's `envconfig:"NAME"` (with a default when it
// has a non-empty `default:` tag), and those of the structs it embeds,
// found in the module's packages.
func tagReads(f *ast.File, st *ast.StructType, reads map[string]envRead) error {
	for _, field := range st.Fields.List {
		if field.Tag != nil {
			tag, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				return err
			}
			if name := reflect.StructTag(tag).Get("envconfig"); name != "" {
				r := reads[name]
				r.name, r.hasDefault = name, r.hasDefault || reflect.StructTag(tag).Get("default") != ""
				reads[name] = r
				continue
			}
		}
		if len(field.Names) > 0 {
			continue
		}
		var pkg, typ string // an embedded struct: Type or pkg.Type
		switch t := field.Type.(type) {
		case *ast.Ident:
			typ = t.Name
		case *ast.SelectorExpr:
			if x, ok := t.X.(*ast.Ident); ok {
				pkg, typ = x.Name, t.Sel.Name
			}
		}
		ef, est, err := findStruct(f, pkg, typ)
		if err != nil {
			return err
		}
		if est != nil {
			if err := tagReads(ef, est, reads); err != nil {
				return err
			}
		}
	}
	return nil
}

// findStruct finds the struct type pkg.typ (typ of f's package when pkg is
// empty) among the module's packages, with the file declaring it; nil
// when it is not a struct of the module.
func findStruct(f *ast.File, pkg, typ string) (*ast.File, *ast.StructType, error) {
	dir := ""
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name := path.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		if pkg != "" && name == pkg && strings.HasPrefix(p, module+"/") {
			dir = filepath.Join("..", strings.TrimPrefix(p, module+"/"))
		}
	}
	if dir == "" {
		if pkg != "" {
			return nil, nil, nil
		}
		// The same package as f: only embedded structs of the module's own packages get here.
		dir = filepath.Dir(fileName(f))
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		pf, err := parser.ParseFile(token.NewFileSet(), n, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, err
		}
		fileNames[pf] = n
		for _, decl := range pf.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, spec := range gd.Specs {
					ts := spec.(*ast.TypeSpec)
					if st, ok := ts.Type.(*ast.StructType); ok && ts.Name.Name == typ {
						return pf, st, nil
					}
				}
			}
		}
	}
	return nil, nil, fmt.Errorf("embedded struct %s.%s not found in %s", pkg, typ, dir)
}

// fileNames remembers the path of each file findStruct parsed.
var fileNames = map[*ast.File]string{}

func fileName(f *ast.File) string { return fileNames[f] }

// rangeTables finds loops over a literal table of structs, such as
//
//	for _, v := range []struct{ key string; dst *uint32 }{{"NAME", &x}, ...} { os.Getenv(v.key) }
//
// and returns, for "v.key", the string literals of that field.
func rangeTables(n ast.Node) map[string][]string {
	out := map[string][]string{}
	ast.Inspect(n, func(n ast.Node) bool {
		rs, ok := n.(*ast.RangeStmt)
		if !ok {
			return true
		}
		v, ok1 := rs.Value.(*ast.Ident)
		cl, ok2 := rs.X.(*ast.CompositeLit)
		if !ok1 || !ok2 {
			return true
		}
		at, ok := cl.Type.(*ast.ArrayType)
		if !ok {
			return true
		}
		st, ok := at.Elt.(*ast.StructType)
		if !ok {
			return true
		}
		var fields []string
		for _, f := range st.Fields.List {
			for _, name := range f.Names {
				fields = append(fields, name.Name)
			}
		}
		for _, e := range cl.Elts {
			el, ok := e.(*ast.CompositeLit)
			if !ok {
				continue
			}
			for i, x := range el.Elts {
				field := ""
				if kv, ok := x.(*ast.KeyValueExpr); ok {
					if k, ok := kv.Key.(*ast.Ident); ok {
						field = k.Name
					}
					x = kv.Value
				} else if i < len(fields) {
					field = fields[i]
				}
				if lit, ok := x.(*ast.BasicLit); ok && lit.Kind == token.STRING && field != "" {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						out[v.Name+"."+field] = append(out[v.Name+"."+field], s)
					}
				}
			}
		}
		return true
	})
	return out
}

func funcName(fd *ast.FuncDecl) string {
	if fd == nil || fd.Recv != nil {
		return ""
	}
	return fd.Name.Name
}

// callee is "pkg.Func" or "Func" of a call.
func callee(c *ast.CallExpr) string {
	switch f := c.Fun.(type) {
	case *ast.SelectorExpr:
		if x, ok := f.X.(*ast.Ident); ok {
			return x.Name + "." + f.Sel.Name
		}
	case *ast.Ident:
		return f.Name
	}
	return ""
}

// optional are the variables binaries read with os.Getenv that may stay
// unset, per binary (the last element of the import path's directory),
// with what unset means (each main package's doc comment says so too).
var optional = map[string]map[string]string{
	"token":         {"KMEP_TOKEN_SIGNING_KEY_FILE": "the key is in KMEP_TOKEN_SIGNING_KEY"},
	"subscriptions": {"KMEP_CALLBACK_ALLOW": "default callback rules", "KMEP_CALLBACK_DENY": "default callback rules"},
	"notify":        {"KMEP_CALLBACK_ALLOW": "default callback rules", "KMEP_CALLBACK_DENY": "default callback rules"},
	"instantiate":   {"KMEP_MEP_URL": "no mep-agent platform URL in the app's values"},
	"reaper":        {"KMEP_HEALTH_ADDR": "no health port", "PORT": "no health port"},
	"upfagent": {"KMEP_HEALTH_ADDR": "no health port", "PORT": "no health port", "KMEP_UPF_AGENT_ID": "host-pid-random",
		"KMEP_VPP_INTERFACES": "vpp driver only", "KMEP_VPP_NEXT_HOP": "vpp driver only",
		"KMEP_VPP_NEXT_HOP_INTERFACE": "vpp driver only", "KMEP_VPP_TABLE_ID": "vpp driver only",
		"KMEP_VPP_ABF_POLICY_BASE": "vpp driver only", "KMEP_VPP_ACL_TAG_PREFIX": "vpp driver only",
		"KMEP_NFT_INTERFACES": "every interface (nftables driver only)", "KMEP_NFT_NETNS": "the agent's own namespace (nftables driver only)"},
	"meshagent": {"KMEP_DNS_UPSTREAMS": "resolv.conf's nameservers", "KMEP_MESH_LISTEN": "/ip4/0.0.0.0/tcp/4001",
		"KMEP_MESH_ANNOUNCE": "the listen addresses", "KMEP_MESH_PSK": "no private network",
		"KMEP_MESH_PSK_FILE": "no private network", "KMEP_MESH_NETWORKS": "none",
		"KMEP_MESH_PROXY_IP": "127.0.0.1", "KMEP_MESH_BALANCE": "round-robin",
		"KMEP_HEALTH_ADDR": "no health port", "PORT": "no health port"},
	"relay": {"KMEP_HEALTH_ADDR": "no health port", "PORT": "no health port"},
	"mepagent": {"MEP_IP": "KMEP_URL is used", "MEP_APIGW_PORT": "KMEP_URL is used", "MEP_SCHEME": "https",
		"ak": "AK is used", "sk": "SK is used", "APPINSTID": "app_instance_info.yaml's appInstanceId",
		"APP_INSTANCE_INFO": "./conf/app_instance_info.yaml", "MEP_CA_CERT": "system roots",
		"MEP_TLS_INSECURE": "false", "MEP_AGENT_ADDR": "127.0.0.1:8090", "MEP_AGENT_DEREGISTER": "true",
		"KMEP_LOG_LEVEL": "info", "KMEP_URL": "MEP_IP and MEP_APIGW_PORT are used"},
}

// knativeSet are the variables Knative sets in every Service's container.
var knativeSet = map[string]bool{"PORT": true, "K_SERVICE": true, "K_CONFIGURATION": true, "K_REVISION": true}

var expansion = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestEnvironmentIsSetOrDefaulted: every variable a deployed binary reads
// is set by its manifest (or by Knative, or by the SinkBinding for
// K_SINK), has a default, or is listed in optional with its meaning;
// every variable a manifest sets is read by its binary (or only composes
// another one with $(NAME)); and every ConfigMap and Secret key it takes
// exists in config.yaml and the Secrets' template.
func TestEnvironmentIsSetOrDefaulted(t *testing.T) {
	applied, other := files(t)
	docs := loadDocs(t, append(applied, other...))
	keys := map[string]map[string]bool{} // ConfigMap or Secret name → keys
	bound := map[string]bool{}           // Deployments a SinkBinding injects K_SINK into
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.ConfigMap:
			keys["cm/"+o.Name] = map[string]bool{}
			for k := range o.Data {
				keys["cm/"+o.Name][k] = true
			}
		case *corev1.Secret:
			keys["secret/"+o.Name] = map[string]bool{}
			for k := range o.StringData {
				keys["secret/"+o.Name][k] = true
			}
		case *sourcesv1.SinkBinding:
			if o.Spec.Subject.Kind == "Deployment" {
				bound[o.Spec.Subject.Name] = true
			}
		}
	}
	cache := map[string]map[string]envRead{}
	for _, w := range workloads(t, docs) {
		t.Run(w.doc.String()+"/"+w.container.Name, func(t *testing.T) {
			rel := strings.TrimPrefix(w.pkg, module+"/")
			reads, ok := cache[rel]
			if !ok {
				var err error
				if reads, err = readsOf(filepath.Join("..", rel)); err != nil {
					t.Fatal(err)
				}
				cache[rel] = reads
			}
			if len(reads) == 0 {
				t.Fatalf("%s reads no environment variable: the parser missed its reads", rel)
			}
			binary := filepath.Base(filepath.Dir(rel))
			set := map[string]bool{}
			composes := map[string]bool{}
			for _, e := range w.container.Env {
				set[e.Name] = true
				for _, m := range expansion.FindAllStringSubmatch(e.Value, -1) {
					composes[m[1]] = true
				}
				if vf := e.ValueFrom; vf != nil {
					var ref string
					switch {
					case vf.ConfigMapKeyRef != nil:
						ref = "cm/" + vf.ConfigMapKeyRef.Name + " " + vf.ConfigMapKeyRef.Key
					case vf.SecretKeyRef != nil:
						ref = "secret/" + vf.SecretKeyRef.Name + " " + vf.SecretKeyRef.Key
					}
					if src, key, ok := strings.Cut(ref, " "); ok && strings.Contains(src, "/kmep-") && !keys[src][key] {
						t.Errorf("%s takes key %s of %s, which does not have it", e.Name, key, src)
					}
				}
			}
			for _, ef := range w.container.EnvFrom {
				t.Errorf("envFrom %+v: take each variable by name, so the check sees it", ef)
			}
			var missing, unread []string
			for name, r := range reads {
				_, opt := optional[binary][name]
				switch {
				case set[name], r.hasDefault, opt:
				case knativeSet[name] && strings.HasPrefix(w.doc.kind, "serving.knative.dev/"):
				case name == "K_SINK" && bound[w.doc.meta().GetName()] && isDeployment(w.doc):
				default:
					missing = append(missing, name)
				}
			}
			for name := range set {
				if _, ok := reads[name]; !ok && !composes[name] {
					unread = append(unread, name)
				}
			}
			sort.Strings(missing)
			sort.Strings(unread)
			if len(missing) > 0 {
				t.Errorf("%s reads %v without a default, and the manifest does not set them", rel, missing)
			}
			if len(unread) > 0 {
				t.Errorf("the manifest sets %v, which %s never reads", unread, rel)
			}
		})
	}
}

func isDeployment(d doc) bool { _, ok := d.obj.(*appsv1.Deployment); return ok }

// The parser finds every kind of read, with or without a default, and
// refuses a read whose name it cannot see.
func TestReadsOf(t *testing.T) {
	reads, err := readsOf(filepath.Join("testdata", "envreads"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"REQUIRED": false, "LOOKED_UP": false, "WITH_DEFAULT": true, "INT_DEFAULT": true,
		"DURATION_DEFAULT": true, "VIA_WRAPPER": false, "VIA_GETENV": false, "KMEP_LOG_LEVEL": true,
		"TABLE_A": false, "TABLE_B": false, "TAGGED": false, "TAGGED_DEFAULT": true, "PORT": true}
	if len(reads) != len(want) {
		t.Errorf("reads %v, want %v", reads, want)
	}
	for name, def := range want {
		if r, ok := reads[name]; !ok || r.hasDefault != def {
			t.Errorf("%s: %+v (found %v), want default %v", name, r, ok, def)
		}
	}

	dir := t.TempDir()
	src := "package main\n\nimport \"os\"\n\nfunc main() { k := \"X\"; _ = os.Getenv(k) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readsOf(dir); err == nil || !strings.Contains(err.Error(), "not a literal") {
		t.Errorf("a read of a variable name: %v, want an error", err)
	}
}
