package appsupport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// ruleKind is what differs between traffic rules and DNS rules.
type ruleKind struct {
	// kind is the store's rule kind.
	kind string
	// collection is the path segment under the app instance.
	collection string
	// name is how the rule is called in answers.
	name string
	// idField is the body member holding the rule's id.
	idField string
	// decode validates a body and returns the rule's id, state and
	// canonical JSON.
	decode func([]byte) (id, state string, body []byte, err error)
}

var (
	trafficRules = &ruleKind{kind: store.RuleTraffic, collection: "traffic_rules", name: "traffic rule", idField: "trafficRuleId",
		decode: func(b []byte) (string, string, []byte, error) {
			r, body, err := mec.DecodeTrafficRule(b)
			return r.TrafficRuleID, r.State, body, err
		}}
	dnsRules = &ruleKind{kind: store.RuleDNS, collection: "dns_rules", name: "DNS rule", idField: "dnsRuleId",
		decode: func(b []byte) (string, string, []byte, error) {
			r, body, err := mec.DecodeDNSRule(b)
			return r.DNSRuleID, r.State, body, err
		}}
)

func (k *ruleKind) notFound(id string) error {
	return problem.NotFound("no " + k.name + " " + strconv.Quote(id) + " of this app instance (rules are configured through Mm5)")
}

// ownRule returns one of the app's rules. (The store refuses ids with ':',
// so app "a" asking for rule "b:c" cannot reach rule "c" of an app "a:b".)
func (h *handler) ownRule(ctx context.Context, k *ruleKind, app, id string) (store.Rule, error) {
	rule, err := h.Store.GetRule(ctx, k.kind, app, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Rule{}, k.notFound(id)
	}
	return rule, err
}

// listRules answers GET .../traffic_rules and .../dns_rules: the app's rules
// in configuration order ([] when it has none).
func (h *handler) listRules(k *ruleKind) problem.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		app, err := rest.Own(r)
		if err != nil {
			return err
		}
		rules, err := h.Store.ListRules(r.Context(), k.kind, app)
		if err != nil {
			return err
		}
		list := make([]json.RawMessage, len(rules))
		for i, ru := range rules {
			list[i] = ru.Body
		}
		body, err := json.Marshal(list)
		if err != nil {
			return fmt.Errorf("render %s list of %s: %w", k.name, app, err)
		}
		return rest.WriteJSON(w, http.StatusOK, body)
	}
}

// getRule answers GET on one rule, with its ETag.
func (h *handler) getRule(k *ruleKind) problem.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		app, err := rest.Own(r)
		if err != nil {
			return err
		}
		rule, err := h.ownRule(r.Context(), k, app, r.PathValue("ruleId"))
		if err != nil {
			return err
		}
		w.Header().Set("ETag", rest.ETag(rule.Rev))
		return rest.WriteJSON(w, http.StatusOK, rule.Body)
	}
}

// putRule answers PUT on one rule: the whole rule, validated, replaces the
// stored one (If-Match honoured). It answers 200 with the rule as stored.
func (h *handler) putRule(k *ruleKind) problem.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		app, err := rest.Own(r)
		if err != nil {
			return err
		}
		id := r.PathValue("ruleId")
		if mec.ValidateRuleID(k.idField, id) != nil {
			// No rule has such an id (Mm5 refuses it): a 404 like any
			// unknown rule's, before the body (which would repeat the id).
			return k.notFound(id)
		}
		raw, err := rest.ReadBody(w, r, MaxBody)
		if err != nil {
			return err
		}
		bodyID, state, body, err := k.decode(raw)
		if err != nil {
			return rest.BadField(err)
		}
		if bodyID != id {
			return problem.BadRequest(k.idField, k.idField+": "+strconv.Quote(bodyID)+" does not match the resource's "+strconv.Quote(id))
		}
		cond := rest.IfMatch(r)
		if cond < 0 {
			// An If-Match that names no revision of ours: 412, unless the
			// rule does not exist at all (404).
			if _, err := h.ownRule(r.Context(), k, app, id); err != nil {
				return err
			}
			return store.ErrPrecondition
		}
		rule, _, err := h.Store.UpdateRule(r.Context(), store.Rule{Kind: k.kind, AppInstanceID: app, ID: id, State: state, Body: body}, cond)
		if errors.Is(err, store.ErrNotFound) {
			return k.notFound(id)
		}
		if err != nil {
			return err
		}
		w.Header().Set("ETag", rest.ETag(rule.Rev))
		return rest.WriteJSON(w, http.StatusOK, body)
	}
}
