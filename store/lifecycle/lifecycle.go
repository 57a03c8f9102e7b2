// Package lifecycle is the app instance lifecycle that more than one
// component drives: ParseAppD reads an appd_configuration (the Mm5 request,
// or an APPD's rules at instantiation) into the store's form, and
// Terminate runs the termination flow (notify, wait for the app's
// confirmation or the graceful timeout, purge).
package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// AppDConfig is the Mm5 appd_configuration body. In a request both rule
// lists are required ([] for none): a PUT replaces both, so a body that
// names neither (null, {}) must not silently remove the app's rules.
type AppDConfig struct {
	AppTrafficRule []mec.TrafficRule `json:"appTrafficRule"`
	AppDNSRule     []mec.DNSRule     `json:"appDNSRule"`
	AppSupportMp1  bool              `json:"appSupportMp1"`
	AppName        string            `json:"appName"`
}

// ParseAppD decodes and validates an appd_configuration body (the Mm5
// request, or an APPD's rules) into app's configuration: appTrafficRule and
// appDNSRule are required (each [] for none), at most 256 rules each;
// appName is at most 256 bytes without control characters. Bad input is a
// 400 *problem.Error naming the field.
func ParseAppD(app string, raw []byte) (store.AppD, error) {
	var c AppDConfig
	if err := mec.DecodeBytes(raw, "", &c); err != nil {
		return store.AppD{}, rest.BadField(err)
	}
	var present struct {
		AppTrafficRule json.RawMessage `json:"appTrafficRule"`
		AppDNSRule     json.RawMessage `json:"appDNSRule"`
	}
	_ = json.Unmarshal(raw, &present) // decoded above
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{{"appTrafficRule", present.AppTrafficRule}, {"appDNSRule", present.AppDNSRule}} {
		if len(m.raw) == 0 || string(m.raw) == "null" {
			return store.AppD{}, problem.BadRequest(m.name, m.name+" is required ([] for no rules): the configuration replaces the app's rules")
		}
	}
	if err := mec.CheckName("appName", c.AppName, false); err != nil {
		return store.AppD{}, rest.BadField(err)
	}
	if len(c.AppTrafficRule) > 256 || len(c.AppDNSRule) > 256 {
		return store.AppD{}, problem.BadRequest("appTrafficRule", "at most 256 rules of each kind")
	}
	d := store.AppD{AppInstanceID: app, AppName: c.AppName, AppSupportMp1: c.AppSupportMp1}
	seen := map[string]bool{}
	for i := range c.AppTrafficRule {
		tr := &c.AppTrafficRule[i]
		field := fmt.Sprintf("appTrafficRule[%d]", i)
		if err := mec.ValidateTrafficRule(tr, field, true); err != nil {
			return store.AppD{}, rest.BadField(err)
		}
		if seen[tr.TrafficRuleID] {
			return store.AppD{}, problem.BadRequest(field+".trafficRuleId", "trafficRuleId "+strconv.Quote(tr.TrafficRuleID)+" is used twice")
		}
		seen[tr.TrafficRuleID] = true
		body, _ := json.Marshal(tr)
		d.Traffic = append(d.Traffic, store.Rule{Kind: store.RuleTraffic, AppInstanceID: app, ID: tr.TrafficRuleID, State: tr.State, Body: body})
	}
	seen = map[string]bool{}
	for i := range c.AppDNSRule {
		dr := &c.AppDNSRule[i]
		field := fmt.Sprintf("appDNSRule[%d]", i)
		if err := mec.ValidateDNSRule(dr, field, true); err != nil {
			return store.AppD{}, rest.BadField(err)
		}
		if seen[dr.DNSRuleID] {
			return store.AppD{}, problem.BadRequest(field+".dnsRuleId", "dnsRuleId "+strconv.Quote(dr.DNSRuleID)+" is used twice")
		}
		seen[dr.DNSRuleID] = true
		body, _ := json.Marshal(dr)
		d.DNS = append(d.DNS, store.Rule{Kind: store.RuleDNS, AppInstanceID: app, ID: dr.DNSRuleID, State: dr.State, Body: body})
	}
	return d, nil
}

// TerminateResult answers POST .../terminate.
type TerminateResult struct {
	AppInstanceID string `json:"appInstanceId"`
	// Notified is how many AppTermination subscriptions the app had.
	Notified int `json:"notified"`
	// Confirmed tells whether the app confirmed before the timeout.
	Confirmed bool `json:"confirmed"`
}

// Terminate runs the termination flow of app: it starts the termination
// (the TERMINATING change becomes the AppTerminationNotification), waits for
// confirm_termination or the graceful timeout — not at all when the app has
// no AppTermination subscription, since nobody would confirm — then purges
// the instance. Calling it again for an instance whose termination is in
// progress resumes that termination. The lcm function calls it for Mm5 terminate, instantiate's
// termination too.
func Terminate(ctx context.Context, st *store.Store, app string, graceful time.Duration) (TerminateResult, error) {
	res := TerminateResult{AppInstanceID: app}
	subs, err := st.TerminationSubscriptions(ctx, app)
	if err != nil {
		return res, err
	}
	res.Notified = len(subs)
	after, err := st.LastChangeID(ctx)
	if err != nil {
		return res, err
	}
	term, _, err := st.StartTermination(ctx, app, graceful)
	if err != nil {
		return res, err
	}
	res.Confirmed = term.Confirmed
	for len(subs) > 0 && !res.Confirmed {
		left := time.Until(term.Deadline)
		if left <= 0 {
			break
		}
		chs, err := st.ReadChanges(ctx, after, 1000, min(left, time.Second))
		if err != nil {
			return res, err
		}
		for _, c := range chs {
			after = c.StreamID
			if c.Kind == store.KindApp && c.Type == store.ChangeConfirmed && c.AppInstanceID == app {
				res.Confirmed = true
			}
		}
		if len(chs) == 0 {
			// Confirmed before we started reading, or the stream was trimmed.
			if t, err := st.GetTermination(ctx, app); err == nil && t.Confirmed {
				res.Confirmed = true
			}
		}
	}
	if _, err := st.PurgeApp(ctx, app); err != nil {
		return res, err
	}
	return res, nil
}
