// Package arch states the shape of the house as rules over the import
// graph, and checks a graph against them (the test runs it on `go list`).
//
// The floors are functions/, triggers/ and longrunning/. Every directory
// directly on a floor is a component: a function, a trigger or an agent,
// with its binary in cmd/ below it. What the components share is the
// ground, store/: the store itself and the packages beside it, each at a
// rank (Ranks). The rules:
//
//   - A component's packages import no package of another component.
//   - A ground package imports no floor and no local/ package, and of the
//     ground only packages of a lower rank (or its own parent, for a
//     test-helper package such as store/csar/csartest over store/csar).
//   - Every ground package has a rank: a new one is placed on purpose.
//   - No floor package imports local/ (the laptop paths sit above all).
//   - Nothing directly on a floor is a library: each has a cmd/ binary.
//
// Only non-test imports count: a test may start what it needs.
package arch

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Module is the module path the rules are written against.
const Module = "github.com/kmep-io/kmep"

// Floors are the directories whose children are components.
var Floors = []string{"functions", "triggers", "longrunning"}

// Ranks places every ground package: a package may import ground packages
// of a lower rank only. A path stands for itself and the packages below it
// that are not listed themselves (store/csar covers store/csar/csartest),
// except the root store, which stands for itself only.
//
//	0  vocabulary and plumbing with no kmep imports
//	1  plumbing over the vocabulary or the runtime contract (rest: bodies,
//	   field errors; metrics: the request metrics over server's StatusRecorder)
//	2  the store (Redis keys, scripts, streams)
//	3  what builds on the store
var Ranks = map[string]int{
	"store/mec":          0,
	"store/kit/problem":  0,
	"store/kit/retry":    0,
	"store/kit/aksk":     0,
	"store/kit/callback": 0,
	"store/kit/server":   0,
	"store/kit/trace":    0,
	"store/kit/receiver": 0,
	"store/kit/kube":     0,
	"store/csar":         0,
	"store/blob":         0,
	"store/kit/rest":     1,
	"store/kit/metrics":  1,
	"store":              2,
	"store/events":       3,
	"store/lease":        3,
	"store/kit/auth":     3,
	"store/lifecycle":    3,
}

// Package is one node of the import graph, paths relative to Module.
type Package struct {
	Path    string
	Imports []string // this module's packages only, non-test
	Main    bool     // package main
}

// Violation is one broken rule.
type Violation struct {
	Package, Import, Rule string
}

func (v Violation) String() string {
	if v.Import == "" {
		return v.Package + ": " + v.Rule
	}
	return v.Package + " → " + v.Import + ": " + v.Rule
}

// under tells whether p is dir or below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// Component is the component p belongs to ("functions/token" for
// functions/token/cmd), or "" when p is not on a floor.
func Component(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) >= 2 && slices.Contains(Floors, parts[0]) {
		return parts[0] + "/" + parts[1]
	}
	return ""
}

// Rank is the rank of ground package p and whether it has one.
func Rank(p string) (int, bool) {
	dir := rankDir(p)
	return Ranks[dir], dir != ""
}

// rankDir is the Ranks entry p falls under ("" for none).
func rankDir(p string) string {
	best := ""
	for dir := range Ranks {
		if (p == dir || dir != "store" && under(p, dir)) && len(dir) > len(best) {
			best = dir
		}
	}
	return best
}

// Check returns every rule pkgs break, sorted.
func Check(pkgs []Package) []Violation {
	var vs []Violation
	add := func(p, imp, rule string) { vs = append(vs, Violation{p, imp, rule}) }
	mains := map[string]bool{}
	for _, p := range pkgs {
		if p.Main {
			mains[Component(p.Path)] = true
		}
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		comp := Component(p.Path)
		ground := under(p.Path, "store")
		switch {
		case comp != "":
			if !seen[comp] {
				seen[comp] = true
				if !mains[comp] {
					add(comp, "", "a library on a floor: every directory on functions/, triggers/, longrunning/ is a component with a cmd/ binary; shared code goes to the ground (store/)")
				}
			}
		case ground:
			if _, ok := Rank(p.Path); !ok {
				add(p.Path, "", "a ground package without a rank: add it to arch.Ranks")
			}
		}
		for _, imp := range p.Imports {
			ic := Component(imp)
			switch {
			case under(imp, "local") && !under(p.Path, "local"):
				add(p.Path, imp, "only local/ imports local/")
			case comp != "" && ic != "" && ic != comp:
				add(p.Path, imp, "a component imports another component")
			case ground && ic != "":
				add(p.Path, imp, "the ground imports a floor")
			case ground && under(imp, "store"):
				pr, _ := Rank(p.Path)
				ir, ok := Rank(imp)
				if ok && rankDir(p.Path) == rankDir(imp) {
					continue // within one package tree: a test helper over its parent
				}
				if !ok || ir >= pr {
					add(p.Path, imp, fmt.Sprintf("the ground imports its own rank or above (%d → %d)", pr, ir))
				}
			}
		}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].String() < vs[j].String() })
	return vs
}
