package services

import (
	"encoding/json"
	"net/url"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/mec"
)

// BasePath is where the API is mounted.
const BasePath = mec.ServiceMgmtPath

func servicePath(app, id string) string {
	return BasePath + "/applications/" + url.PathEscape(app) + "/services/" + url.PathEscape(id)
}

func livenessPath(app, id string) string { return servicePath(app, id) + "/liveness" }

// meta is what discovery filters on besides the indexed fields.
type meta struct {
	consumedLocalOnly bool
	scope             string
}

func metaOf(si *mec.ServiceInfo) meta {
	m := meta{consumedLocalOnly: true, scope: "MEC_HOST"}
	if si.ConsumedLocalOnly != nil {
		m.consumedLocalOnly = *si.ConsumedLocalOnly
	}
	if si.ScopeOfLocality != "" {
		m.scope = si.ScopeOfLocality
	}
	return m
}

// stored turns a validated ServiceInfo into what the store keeps: the
// response form without "state" (the record's State is authoritative).
func stored(si mec.ServiceInfo, app, id string) []byte {
	si.SerInstanceID = id
	si.State = ""
	t := true
	si.IsLocal = &t // every service registered on this platform is local to its consumers
	si.Links = &mec.ServiceLinks{Self: mec.SelfLink{Href: servicePath(app, id)}}
	if si.LivenessInterval > 0 {
		lp := livenessPath(app, id)
		si.Links.Self.Liveness = lp
		si.Links.Liveness = &mec.Link{Href: lp}
	}
	b, _ := json.Marshal(si)
	return b
}

// render splices the record's state into its stored JSON.
func render(r store.ServiceRecord) []byte {
	info := r.Info
	if len(info) < 2 || info[0] != '{' {
		info = []byte("{}")
	}
	out := make([]byte, 0, len(info)+len(r.State)+12)
	out = append(out, `{"state":"`...)
	out = append(out, r.State...)
	out = append(out, '"')
	if len(info) > 2 {
		out = append(out, ',')
	}
	return append(out, info[1:]...)
}

// NewCache returns the discovery cache this handler expects, with its
// rendering and filter metadata. Run it (cache.Run(ctx)) beside the handler.
func NewCache(s *store.Store, opts store.CacheOptions) *store.ServiceCache {
	opts.Render = render
	return store.NewServiceCache(s, opts)
}

// decodeMeta reads the filter attributes back from stored JSON.
func decodeMeta(info []byte) meta {
	var si mec.ServiceInfo
	_ = json.Unmarshal(info, &si)
	return metaOf(&si)
}
