package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/kmep-io/kmep/store/mec"
)

// item is one object of an API answer, as the platform wrote it.
type item = map[string]any

// listing is one collection a resource's list reads. Its path may hold
// {appInstanceId} (read for --app, else for every app the apps list
// names) and {tenantId} (--tenant).
type listing struct {
	path string
	// kind, when set, is written into each item as "kind" (rules: traffic
	// or dns, whose lists are separate).
	kind string
	// links, when set, is the JSON member under "_links" whose array is
	// the list (MEC 011 subscription link lists); else the answer is an
	// array.
	links string
}

// column is one column of a table: its header and the item's member,
// dotted for nested objects.
type column struct{ header, field string }

// resource is what get, list and watch read.
type resource struct {
	name    string
	aliases []string
	short   string
	lists   []listing
	// gets are the paths of one item, {id} its ID, tried in order (the
	// first that does not answer 404 answers).
	gets []string
	// id is the item's ID member.
	id      string
	columns []column
}

// adminPath is the root of the platform admin's API (functions/dashboard),
// which serves the lists no MEC API has: every app instance, every
// instance, the dead letters, the change stream.
const adminPath = "/kmep/admin/v1"

const (
	appsPath        = adminPath + "/apps"
	deadLettersPath = adminPath + "/dead_letters"
	eventsPath      = adminPath + "/events"
)

var resources = []resource{
	{name: "services", aliases: []string{"service", "svc"}, short: "MEC services registered with the platform (discovery)",
		lists: []listing{{path: mec.ServiceMgmtPath + "/services"}}, gets: []string{mec.ServiceMgmtPath + "/services/{id}"}, id: "serInstanceId",
		columns: []column{{"SERINSTANCEID", "serInstanceId"}, {"NAME", "serName"}, {"STATE", "state"}, {"VERSION", "version"}, {"CATEGORY", "serCategory.name"}}},
	{name: "apps", aliases: []string{"app", "applications"}, short: "app instances provisioned with credentials (appMng confs; never secrets)",
		lists: []listing{{path: appsPath}}, gets: []string{mec.AppMngPath + "/applications/{id}/confs"}, id: "appInstanceId",
		columns: []column{{"APPINSTANCEID", "appInstanceId"}, {"NAME", "appName|appInfo.appName"}, {"ACCESSKEY", "accessKeyId|authInfo.credentials.accessKeyId"}}},
	{name: "subscriptions", aliases: []string{"subscription", "subs"}, short: "apps' subscriptions (service availability, app termination)",
		lists: []listing{{path: mec.ServiceMgmtPath + "/applications/{appInstanceId}/subscriptions", links: "subscriptions"},
			{path: mec.AppSupportPath + "/applications/{appInstanceId}/subscriptions", links: "subscriptions"}},
		gets: []string{mec.ServiceMgmtPath + "/applications/{appInstanceId}/subscriptions/{id}", mec.AppSupportPath + "/applications/{appInstanceId}/subscriptions/{id}"},
		id:   "id", columns: []column{{"APPINSTANCEID", "appInstanceId"}, {"ID", "id"}, {"TYPE", "rel"}, {"HREF", "href"}}},
	{name: "rules", aliases: []string{"rule"}, short: "apps' traffic and DNS rules",
		lists: []listing{{path: mec.AppSupportPath + "/applications/{appInstanceId}/traffic_rules", kind: "traffic"},
			{path: mec.AppSupportPath + "/applications/{appInstanceId}/dns_rules", kind: "dns"}},
		gets: []string{mec.AppSupportPath + "/applications/{appInstanceId}/traffic_rules/{id}", mec.AppSupportPath + "/applications/{appInstanceId}/dns_rules/{id}"},
		id:   "id", columns: []column{{"APPINSTANCEID", "appInstanceId"}, {"KIND", "kind"}, {"ID", "id"}, {"STATE", "state"}, {"ACTION", "action"}, {"DOMAIN", "domainName"}, {"IP", "ipAddress"}}},
	{name: "packages", aliases: []string{"package", "pkg"}, short: "app packages (CSARs) of a tenant",
		lists: []listing{{path: mec.LCMControllerPath + "/tenants/{tenantId}/packages"}}, gets: []string{mec.LCMControllerPath + "/tenants/{tenantId}/packages/{id}"}, id: "packageId",
		columns: []column{{"PACKAGEID", "packageId"}, {"APP", "appName"}, {"VERSION", "appVersion"}, {"PROVIDER", "provider"}, {"SIZE", "size"}, {"CREATED", "createdAt"}}},
	{name: "instances", aliases: []string{"instance", "inst"}, short: "instantiated app instances (Helm releases), with their state",
		lists: []listing{{path: adminPath + "/instances"}}, gets: []string{mec.LCMControllerPath + "/tenants/{tenantId}/app_instances/{id}"}, id: "appInstanceId",
		columns: []column{{"APPINSTANCEID", "appInstanceId"}, {"TENANT", "tenantId"}, {"APP", "appName"}, {"HOST", "hostIp"}, {"STATE", "state"}, {"REASON", "reason"}}},
	{name: "deadletters", aliases: []string{"deadletter", "dead-letters", "dl"}, short: "events a trigger gave up on (the newest 1000)",
		lists: []listing{{path: deadLettersPath + "?limit=1000"}}, gets: []string{deadLettersPath + "/{id}"}, id: "id",
		columns: []column{{"ID", "id"}, {"TYPE", "record.type"}, {"APP", "record.app"}, {"DESTINATION", "record.errorDest"}, {"CODE", "record.errorCode"}, {"RECEIVED", "record.receivedAt"}}},
}

// findResource returns the resource named or aliased name.
func findResource(name string) (resource, bool) {
	for _, r := range resources {
		if r.name == name {
			return r, true
		}
		for _, a := range r.aliases {
			if a == name {
				return r, true
			}
		}
	}
	return resource{}, false
}

func resourceNames() []string {
	names := make([]string, len(resources))
	for i, r := range resources {
		names[i] = r.name
	}
	return names
}

// scope is the --app and --tenant a read is limited to.
type scope struct{ app, tenant string }

// fill puts the scope's and id's values into a path template.
func fill(tmpl string, app, tenant, id string) string {
	r := strings.NewReplacer("{appInstanceId}", url.PathEscape(app), "{tenantId}", url.PathEscape(tenant), "{id}", url.PathEscape(id))
	return r.Replace(tmpl)
}

// needs checks that the scope has what the path template holds.
func (s scope) needs(r resource, tmpl string) error {
	if strings.Contains(tmpl, "{tenantId}") && s.tenant == "" {
		return usagef("%s are per tenant: pass --tenant", r.name)
	}
	return nil
}

// apps returns the app instances to read per-app lists of: --app, else
// every app the apps list names.
func (s scope) apps(ctx context.Context, a api) ([]string, error) {
	if s.app != "" {
		return []string{s.app}, nil
	}
	var list []item
	if err := a.list(ctx, appsPath, &list); err != nil {
		return nil, fmt.Errorf("without --app, the apps list is needed: %w", err)
	}
	var ids []string
	for _, it := range list {
		if id, ok := it["appInstanceId"].(string); ok && id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// list reads every item of r in scope s, sorted by ID.
func (s scope) list(ctx context.Context, a api, r resource) ([]item, error) {
	if err := s.needs(r, r.lists[0].path); err != nil {
		return nil, err
	}
	apps := []string{""}
	if strings.Contains(r.lists[0].path, "{appInstanceId}") {
		var err error
		if apps, err = s.apps(ctx, a); err != nil {
			return nil, err
		}
	}
	var out []item
	for _, app := range apps {
		for _, l := range r.lists {
			items, err := readListing(ctx, a, l, fill(l.path, app, s.tenant, ""))
			if err != nil {
				return nil, err
			}
			for _, it := range items {
				if app != "" {
					it["appInstanceId"] = app
				}
				if l.kind != "" {
					it["kind"] = l.kind
				}
				if _, ok := it["id"]; !ok && r.id == "id" {
					it["id"] = itemID(it)
				}
			}
			for _, it := range items {
				// A list of every tenant's, read for one: --tenant filters.
				if s.tenant == "" || strings.Contains(l.path, "{tenantId}") || it["tenantId"] == s.tenant {
					out = append(out, it)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return key(out[i], r) < key(out[j], r) })
	return out, nil
}

func readListing(ctx context.Context, a api, l listing, p string) ([]item, error) {
	if l.links == "" {
		var items []item
		return items, a.list(ctx, p, &items)
	}
	var ll struct {
		Links map[string]any `json:"_links"`
	}
	if err := a.list(ctx, p, &ll); err != nil {
		return nil, err
	}
	raw, _ := ll.Links[l.links].([]any)
	items := make([]item, 0, len(raw))
	for _, x := range raw {
		if it, ok := x.(item); ok {
			items = append(items, it)
		}
	}
	return items, nil
}

// itemID is the ID of an item that names none itself: a rule's
// trafficRuleId or dnsRuleId, or the last segment of a link's href.
func itemID(it item) string {
	for _, k := range []string{"trafficRuleId", "dnsRuleId"} {
		if s, ok := it[k].(string); ok {
			return s
		}
	}
	if h, ok := it["href"].(string); ok {
		return path.Base(h)
	}
	return ""
}

// key orders items: by app, then ID.
func key(it item, r resource) string {
	app, _ := it["appInstanceId"].(string)
	id, _ := it[r.id].(string)
	return app + "\x00" + id
}

// get reads one item of r.
func (s scope) get(ctx context.Context, a api, r resource, id string) (item, error) {
	if err := s.needs(r, r.gets[0]); err != nil {
		return nil, err
	}
	if strings.Contains(r.gets[0], "{appInstanceId}") && s.app == "" {
		return nil, usagef("%s are per app: pass --app", r.name)
	}
	var err error
	for i, g := range r.gets {
		var it item
		if err = a.get(ctx, fill(g, s.app, s.tenant, id), &it); err == nil {
			if s.app != "" {
				it["appInstanceId"] = s.app
			}
			if _, ok := it[r.id]; !ok {
				it[r.id] = id
			}
			if strings.Contains(g, "traffic_rules") {
				it["kind"] = "traffic"
			} else if strings.Contains(g, "dns_rules") {
				it["kind"] = "dns"
			}
			return it, nil
		}
		if ae, ok := errors.AsType[*apiError](err); !ok || ae.status != http.StatusNotFound || i == len(r.gets)-1 {
			return nil, err
		}
	}
	return nil, err
}
