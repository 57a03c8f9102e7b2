package services

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// query is a parsed service availability query.
type query struct {
	filter            store.Filter
	consumedLocalOnly *bool
	isLocal           *bool
	scope             string
}

var queryParams = map[string]bool{
	"ser_instance_id": true, "ser_name": true, "ser_category_id": true,
	"consumed_local_only": true, "is_local": true, "scope_of_locality": true,
}

// list reads a parameter in both the repeated (a=x&a=y) and the
// comma-separated (a=x,y) forms.
func list(q url.Values, name string) []string {
	var out []string
	for _, v := range q[name] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func boolParam(q url.Values, name string) (*bool, error) {
	vs, ok := q[name]
	if !ok {
		return nil, nil
	}
	if len(vs) != 1 {
		return nil, problem.BadRequest(name, name+" must be given once")
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil {
		return nil, problem.BadRequest(name, name+" must be true or false")
	}
	return &b, nil
}

// parseQuery applies MEC 011's rules: at most one of ser_instance_id,
// ser_name and ser_category_id; unknown parameters are refused.
func parseQuery(r *http.Request) (query, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, problem.BadRequest("query", "malformed query string")
	}
	var pq query
	given := 0
	for name := range q {
		if !queryParams[name] {
			return query{}, problem.BadRequest(name, "unknown query parameter "+strconv.Quote(name))
		}
		switch name {
		case "ser_instance_id", "ser_name", "ser_category_id":
			given++
		}
	}
	if given > 1 {
		return query{}, problem.BadRequest("ser_instance_id", "at most one of ser_instance_id, ser_name and ser_category_id may be given")
	}
	pq.filter.IDs = list(q, "ser_instance_id")
	pq.filter.Names = list(q, "ser_name")
	pq.filter.Categories = list(q, "ser_category_id")
	for name, vs := range map[string][]string{"ser_instance_id": pq.filter.IDs, "ser_name": pq.filter.Names, "ser_category_id": pq.filter.Categories} {
		if _, ok := q[name]; ok && len(vs) == 0 {
			return query{}, problem.BadRequest(name, name+" is empty")
		}
		if len(vs) > 100 {
			return query{}, problem.BadRequest(name, name+" takes at most 100 values")
		}
	}
	if pq.consumedLocalOnly, err = boolParam(q, "consumed_local_only"); err != nil {
		return query{}, err
	}
	if pq.isLocal, err = boolParam(q, "is_local"); err != nil {
		return query{}, err
	}
	if vs, ok := q["scope_of_locality"]; ok {
		if len(vs) != 1 {
			return query{}, problem.BadRequest("scope_of_locality", "scope_of_locality must be given once")
		}
		found := false
		for _, l := range mec.LocalityTypes {
			found = found || l == vs[0]
		}
		if !found {
			return query{}, problem.BadRequest("scope_of_locality", "scope_of_locality must be one of "+strings.Join(mec.LocalityTypes, ", "))
		}
		pq.scope = vs[0]
	}
	return pq, nil
}

// keep applies the locality filters. Every service registered here is on
// this MEC host, so it is local to the consumer: is_local=false selects
// nothing. consumed_local_only=false (a consumer outside the locality)
// selects only services that allow remote consumers. scope_of_locality
// selects services of that scope (MEC_HOST when they gave none).
func (q *query) keep(info []byte) bool {
	if q.isLocal != nil && !*q.isLocal {
		return false
	}
	if (q.consumedLocalOnly == nil || *q.consumedLocalOnly) && q.scope == "" {
		return true
	}
	m := decodeMeta(info)
	if q.consumedLocalOnly != nil && !*q.consumedLocalOnly && m.consumedLocalOnly {
		return false
	}
	return q.scope == "" || q.scope == m.scope
}

// discover answers GET /services and GET /applications/{id}/services.
// Discovery (GET /services) is open to every authenticated app; the list of
// an app instance's own services only to that app instance (403).
func (h *handler) discover(w http.ResponseWriter, r *http.Request) error {
	if app := r.PathValue("appInstanceId"); app != "" {
		if err := rest.CheckCaller(r, app); err != nil {
			return err
		}
	}
	pq, err := parseQuery(r)
	if err != nil {
		return err
	}
	pq.filter.App = r.PathValue("appInstanceId")
	var buf []byte
	if h.Cache != nil && h.Cache.Fresh() {
		sel := h.Cache.Select(pq.filter)
		size := 2
		for _, cs := range sel {
			size += len(cs.JSON) + 1
		}
		buf = make([]byte, 0, size)
		buf = append(buf, '[')
		for _, cs := range sel {
			if !pq.keep(cs.Info) {
				continue
			}
			if len(buf) > 1 {
				buf = append(buf, ',')
			}
			buf = append(buf, cs.JSON...)
		}
	} else {
		recs, err := h.fromStore(r, pq.filter)
		if err != nil {
			return err
		}
		buf = append(buf, '[')
		for _, rec := range sortRecords(recs) {
			if !pq.keep(rec.Info) {
				continue
			}
			if len(buf) > 1 {
				buf = append(buf, ',')
			}
			buf = append(buf, render(rec)...)
		}
	}
	buf = append(buf, ']')
	return rest.WriteJSON(w, http.StatusOK, buf)
}

func (h *handler) fromStore(r *http.Request, f store.Filter) ([]store.ServiceRecord, error) {
	ctx := r.Context()
	var recs []store.ServiceRecord
	var err error
	switch {
	case len(f.IDs) > 0:
		recs, err = h.Store.ServicesByID(ctx, dedupe(f.IDs)...)
	case len(f.Names) > 0:
		recs, err = h.Store.ServicesByName(ctx, f.Names...)
	case len(f.Categories) > 0:
		recs, err = h.Store.ServicesByCategory(ctx, f.Categories...)
	case f.App != "":
		return h.Store.ServicesByApp(ctx, f.App)
	default:
		return h.Store.AllServices(ctx)
	}
	if err != nil || f.App == "" {
		return recs, err
	}
	out := recs[:0]
	for _, rec := range recs {
		if rec.AppInstanceID == f.App {
			out = append(out, rec)
		}
	}
	return out, nil
}

func dedupe(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func sortRecords(rs []store.ServiceRecord) []store.ServiceRecord {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].ID < rs[j-1].ID; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	return rs
}
