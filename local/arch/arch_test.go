package arch_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/local/arch"
)

// listed is the module's import graph as `go list` sees it.
func listed(t *testing.T) []arch.Package {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Name", arch.Module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []arch.Package
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath, Name string
			Imports          []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkg := arch.Package{Path: rel(p.ImportPath), Main: p.Name == "main"}
		for _, imp := range p.Imports {
			if r := rel(imp); r != imp {
				pkg.Imports = append(pkg.Imports, r)
			}
		}
		pkgs = append(pkgs, pkg)
	}
	if len(pkgs) < 50 {
		t.Fatalf("implausibly few packages: %d", len(pkgs))
	}
	return pkgs
}

func rel(p string) string {
	if p == arch.Module {
		return "."
	}
	return strings.TrimPrefix(p, arch.Module+"/")
}

// The module's own graph keeps every rule.
func TestHouseShape(t *testing.T) {
	pkgs := listed(t)
	for _, v := range arch.Check(pkgs) {
		t.Error(v)
	}
	// The rules see what they are about: components on every floor and a
	// ranked ground.
	comps := map[string]bool{}
	for _, p := range pkgs {
		if c := arch.Component(p.Path); c != "" {
			comps[strings.Split(c, "/")[0]] = true
		}
	}
	for _, f := range arch.Floors {
		if !comps[f] {
			t.Errorf("no component found on %s/", f)
		}
	}
}

// Each rule catches the arrow it forbids.
func TestCheckCatches(t *testing.T) {
	base := []arch.Package{
		{Path: "functions/a", Imports: []string{"store", "store/mec"}},
		{Path: "functions/a/cmd", Main: true, Imports: []string{"functions/a", "store/kit/server"}},
		{Path: "functions/b/cmd", Main: true},
		{Path: "longrunning/c/cmd", Main: true},
		{Path: "store/mec"},
		{Path: "store/kit/server"},
		{Path: "store", Imports: nil},
		{Path: "store/events", Imports: []string{"store", "store/mec"}},
		{Path: "store/csar/csartest", Imports: []string{"store/csar"}},
		{Path: "store/csar"},
	}
	if vs := arch.Check(base); len(vs) != 0 {
		t.Fatalf("a graph that keeps the rules: %v", vs)
	}
	for _, tc := range []struct {
		name string
		add  arch.Package
		want string
	}{
		{"component imports component", arch.Package{Path: "functions/b", Imports: []string{"functions/a"}}, "functions/b → functions/a: a component imports another component"},
		{"agent imports function", arch.Package{Path: "longrunning/c/x", Imports: []string{"functions/a"}}, "longrunning/c/x → functions/a: a component imports another component"},
		{"ground imports floor", arch.Package{Path: "store/kit/retry", Imports: []string{"longrunning/c"}}, "store/kit/retry → longrunning/c: the ground imports a floor"},
		{"ground imports up", arch.Package{Path: "store/mec", Imports: []string{"store"}}, "store/mec → store: the ground imports its own rank or above (0 → 2)"},
		{"ground imports sideways", arch.Package{Path: "store/kit/problem", Imports: []string{"store/mec"}}, "store/kit/problem → store/mec: the ground imports its own rank or above (0 → 0)"},
		{"unranked ground", arch.Package{Path: "store/newthing"}, "store/newthing: a ground package without a rank: add it to arch.Ranks"},
		{"library on a floor", arch.Package{Path: "functions/util"}, "functions/util: a library on a floor"},
		{"floor imports local", arch.Package{Path: "functions/a", Imports: []string{"local/testenv"}}, "functions/a → local/testenv: only local/ imports local/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkgs := append([]arch.Package{tc.add}, base...)
			vs := arch.Check(pkgs)
			if len(vs) != 1 || !strings.HasPrefix(vs[0].String(), tc.want) {
				t.Errorf("got %v, want one violation %q", vs, tc.want)
			}
		})
	}
}

// Binaries that need neither Helm, client-go nor libp2p must not link them:
// their package init alone costs tens of milliseconds of cold start. The
// app sidecar (mep-agent) links no Redis client either: it talks to the
// platform only over HTTP.
func TestBinariesLinkOnlyWhatTheyUse(t *testing.T) {
	heavy := []string{"helm.sh/helm", "k8s.io/client-go", "k8s.io/apimachinery", "github.com/libp2p/", "knative.dev/"}
	for pkg, extra := range map[string][]string{
		"functions/token/cmd":         nil,
		"functions/services/cmd":      nil,
		"functions/subscriptions/cmd": nil,
		"functions/appsupport/cmd":    nil,
		"functions/lcm/cmd":           nil,
		"functions/packages/cmd":      nil,
		"triggers/notify/cmd":         nil,
		"triggers/deadletter/cmd":     nil,
		"longrunning/relay/cmd":       nil,
		"longrunning/reaper/cmd":      nil,
		"longrunning/mepagent/cmd":    {"github.com/redis/go-redis/", "github.com/alicebob/miniredis/", "=" + arch.Module + "/store"},
		"local/cmd/kmepctl":           nil,
	} {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", arch.Module+"/"+pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 10 {
				t.Fatalf("implausibly few deps (%d): %v", len(deps), deps)
			}
			for _, d := range deps {
				for _, h := range append(heavy, extra...) {
					// "=p" is the package p itself; otherwise a prefix.
					if exact, ok := strings.CutPrefix(h, "="); ok && d == exact || !ok && strings.HasPrefix(d, h) {
						t.Errorf("%s links %s", pkg, d)
					}
				}
			}
		})
	}
}

func Example() {
	fmt.Println(arch.Component("longrunning/upfagent/nft"))
	r, _ := arch.Rank("store/csar/csartest")
	fmt.Println(r)
	// Output:
	// longrunning/upfagent
	// 0
}
