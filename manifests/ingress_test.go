package manifests_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/functions/dashboard"
	"github.com/kmep-io/kmep/functions/lcm"
	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/functions/subscriptions"
	"github.com/kmep-io/kmep/functions/token"
)

// matcher is one Traefik rule of the subset ingress.yaml uses: matchers
// Path, PathPrefix and PathRegexp joined by ||.
type matcher []func(path string) bool

var ruleTerm = regexp.MustCompile("^(Path|PathPrefix|PathRegexp)\\(`([^`]*)`\\)$")

func parseRule(rule string) (matcher, error) {
	var m matcher
	for _, term := range strings.Split(rule, "||") {
		sub := ruleTerm.FindStringSubmatch(strings.TrimSpace(term))
		if sub == nil {
			return nil, fmt.Errorf("%q: only Path, PathPrefix and PathRegexp joined by || are understood here", term)
		}
		arg := sub[2]
		switch sub[1] {
		case "Path":
			m = append(m, func(p string) bool { return p == arg })
		case "PathPrefix":
			m = append(m, func(p string) bool { return strings.HasPrefix(p, arg) })
		case "PathRegexp":
			re, err := regexp.Compile(arg)
			if err != nil {
				return nil, err
			}
			m = append(m, re.MatchString)
		}
	}
	return m, nil
}

func (m matcher) match(path string) bool {
	for _, f := range m {
		if f(path) {
			return true
		}
	}
	return false
}

// route is what the base URL's IngressRoute makes of a path: the ksvc
// whose Knative load balancer serves it ("" for none).
type route struct {
	priority int
	m        matcher
	ksvc     string
}

// wrr is the Knative provider's name of a ksvc's default load balancer.
var wrr = regexp.MustCompile(`^kmep-([a-z0-9-]+)-rule-0-path-0-wrr@knative$`)

func baseURLRoutes(t *testing.T) []route {
	t.Helper()
	var routes []route
	for _, d := range loadDocs(t, []string{"ingress.yaml"}) {
		ir, ok := d.obj.(*ingressRoute)
		if !ok {
			t.Fatalf("ingress.yaml: unexpected %s", d)
		}
		if ir.Namespace != "kmep" || len(ir.Spec.EntryPoints) != 0 {
			t.Errorf("%s: namespace %q, entryPoints %v; want kmep and every entrypoint", d, ir.Namespace, ir.Spec.EntryPoints)
		}
		for _, r := range ir.Spec.Routes {
			m, err := parseRule(r.Match)
			if err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			if r.Kind != "Rule" || len(r.Services) != 1 || r.Services[0].Kind != "TraefikService" || r.Priority == 0 {
				t.Fatalf("%s: route %q: want kind Rule, a priority and one TraefikService", d, r.Match)
			}
			sub := wrr.FindStringSubmatch(r.Services[0].Name)
			if sub == nil {
				t.Fatalf("%s: route %q: service %q is not a kmep ksvc's Knative load balancer", d, r.Match, r.Services[0].Name)
			}
			routes = append(routes, route{priority: r.Priority, m: m, ksvc: sub[1]})
		}
	}
	return routes
}

// pick is Traefik's choice: the matching route of highest priority (two
// matching at the same priority would be up to Traefik's rule length:
// the test refuses them).
func pick(routes []route, path string) (string, error) {
	best := -1
	var got []string
	for _, r := range routes {
		if !r.m.match(path) {
			continue
		}
		switch {
		case r.priority > best:
			best, got = r.priority, []string{r.ksvc}
		case r.priority == best:
			got = append(got, r.ksvc)
		}
	}
	if len(got) > 1 {
		return "", fmt.Errorf("%s: routes of equal priority %d match: %v", path, best, got)
	}
	if len(got) == 0 {
		return "", nil
	}
	return got[0], nil
}

// TestBaseURLRoutesEveryPathToItsFunction: every path a function serves
// (its handlers' own patterns, filled in) reaches that function's ksvc
// through the one base URL, and the ksvcs named exist in functions.yaml.
func TestBaseURLRoutesEveryPathToItsFunction(t *testing.T) {
	routes := baseURLRoutes(t)
	fill := strings.NewReplacer("{appInstanceId}", "app-1", "{tenantId}", "t-1", "{packageId}", "p-1",
		"{hostIp}", "10.0.0.1", "{subscriptionId}", "s-1", "{serviceId}", "ser-1", "{ruleId}", "r-1")
	want := map[string]string{ // path pattern -> ksvc
		token.TokenPath:                             "token",
		token.JWKSPath:                              "token",
		token.ConfsPath:                             "token",
		services.BasePath + "/services":             "services",
		services.BasePath + "/services/{serviceId}": "services",
		services.BasePath + "/transports":           "services",
		services.BasePath + "/applications/{appInstanceId}/services":                      "services",
		services.BasePath + "/applications/{appInstanceId}/services/{serviceId}/liveness": "services",
		appsupport.BasePath + "/applications/{appInstanceId}/dns_rules":                   "appsupport",
		appsupport.BasePath + "/applications/{appInstanceId}/traffic_rules/{ruleId}":      "appsupport",
		appsupport.BasePath + "/applications/{appInstanceId}/confirm_ready":               "appsupport",
		appsupport.BasePath + "/registrations/{appInstanceId}":                            "appsupport",
		appsupport.BasePath + "/timing/current_time":                                      "appsupport",
		lcm.AppDPath:            "lcm",
		lcm.TerminatePath:       "lcm",
		packages.PackagesPath:   "packages",
		packages.PackagePath:    "packages",
		packages.DistributePath: "packages",
		packages.HostsPath:      "packages",
		packages.HostPath:       "packages",
		"/lcmcontroller/v1/tenants/{tenantId}/app_instances/{appInstanceId}":             "instantiate",
		"/lcmcontroller/v1/tenants/{tenantId}/app_instances/{appInstanceId}/instantiate": "instantiate",
		"/lcmcontroller/v1/tenants/{tenantId}/app_instances/{appInstanceId}/terminate":   "instantiate",
		"/":                            "dashboard",
		dashboard.UIPath + "app.js":    "dashboard",
		dashboard.BasePath + "/apps":   "dashboard",
		dashboard.BasePath + "/events": "dashboard",
		"/kmep/admin/v1/dead_letters/1-0/redeliver": "dashboard",
		// Not any function's: no route, Traefik answers 404.
		"/mep/tokens":   "",
		"/healthz":      "",
		"/metrics":      "",
		"/mep/unknown/": "",
	}
	for _, p := range subscriptions.Routes() {
		want[p] = "subscriptions"
	}
	ksvcs := map[string]bool{}
	for _, d := range loadDocs(t, []string{"functions.yaml"}) {
		if s, ok := d.obj.(*knService); ok {
			ksvcs[s.Name] = true
		}
	}
	for pattern, ksvc := range want {
		path := fill.Replace(pattern)
		got, err := pick(routes, path)
		if err != nil {
			t.Error(err)
			continue
		}
		if got != ksvc {
			t.Errorf("%s goes to %q, want %q", path, got, ksvc)
		}
		if got != "" && !ksvcs[got] {
			t.Errorf("%s goes to %q, which functions.yaml does not define", path, got)
		}
	}
	for _, r := range routes {
		if !ksvcs[r.ksvc] {
			t.Errorf("a route names ksvc %q, which functions.yaml does not define", r.ksvc)
		}
	}
}
