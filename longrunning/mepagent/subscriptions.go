package mepagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// subscription is one entry of serAvailabilityNotificationSubscriptions.
type subscription struct {
	want Subscription
	body []byte
}

// existingSubscription is one of the app's subscriptions on the platform.
type existingSubscription struct {
	href string
	sub  Subscription
}

// runSubscriptions makes sure each wanted subscription exists once. A
// subscription equal to one the app instance already has (same type,
// callbackReference and filteringCriteria: made by an earlier run of the
// agent, or by another replica) is adopted rather than created again, so
// that restarts do not multiply notifications. Subscriptions are left in
// place when the agent stops.
func (a *Agent) runSubscriptions(ctx context.Context) {
	existing, err := a.listSubscriptions(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("subscriptions: cannot list the existing ones; creating every one", "err", err)
	}
	for i, s := range a.subs {
		if j := slices.IndexFunc(existing, func(e existingSubscription) bool { return sameSubscription(e.sub, s.want) }); j >= 0 {
			a.log.Info("subscription already exists; keeping it", "index", i, "callback", s.want.CallbackReference, "self", existing[j].href)
			existing = slices.Delete(existing, j, j+1)
			continue
		}
		key := newKey()
		err := a.retry(ctx, "subscribe", func(ctx context.Context, token string) error {
			res, body, err := a.callWithKey(ctx, http.MethodPost, a.url(a.subscriptionsPath()), token, key, s.body)
			if err != nil {
				return err
			}
			var ans struct {
				Links struct {
					Self struct {
						Href string `json:"href"`
					} `json:"self"`
				} `json:"_links"`
			}
			_ = json.Unmarshal(body, &ans)
			href := ans.Links.Self.Href
			if href == "" {
				href = res.Header.Get("Location")
			}
			if href != "" {
				if href, err = a.resolve(href); err != nil {
					return &permanentError{err}
				}
			}
			a.log.Info("subscription created", "index", i, "callback", s.want.CallbackReference, "self", href)
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("subscribe: refused by the platform; not retrying", "index", i, "callback", s.want.CallbackReference, "err", err)
		}
	}
}

// listSubscriptions reads the app instance's service availability
// subscriptions: the link list, then each one.
func (a *Agent) listSubscriptions(ctx context.Context) ([]existingSubscription, error) {
	var links []string
	err := a.retry(ctx, "list subscriptions", func(ctx context.Context, token string) error {
		_, body, err := a.call(ctx, http.MethodGet, a.url(a.subscriptionsPath()), token, nil)
		if err != nil {
			return err
		}
		var list struct {
			Links struct {
				Subscriptions []struct {
					Href string `json:"href"`
				} `json:"subscriptions"`
			} `json:"_links"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return &permanentError{fmt.Errorf("subscription list: %w", err)}
		}
		links = links[:0]
		for _, l := range list.Links.Subscriptions {
			links = append(links, l.Href)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []existingSubscription
	for _, l := range links {
		href, err := a.resolve(l)
		if err != nil {
			continue
		}
		var sub Subscription
		err = a.retry(ctx, "read subscription", func(ctx context.Context, token string) error {
			_, body, err := a.call(ctx, http.MethodGet, href, token, nil)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(body, &sub); err != nil {
				return &permanentError{fmt.Errorf("subscription %s: %w", href, err)}
			}
			return nil
		})
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			var se *StatusError
			if !errors.As(err, &se) || se.Status != http.StatusNotFound {
				a.log.Warn("subscriptions: cannot read an existing one", "self", href, "err", err)
			}
			continue
		}
		out = append(out, existingSubscription{href: href, sub: sub})
	}
	return out, nil
}

// sameSubscription reports whether x and y ask for the same notifications.
// An absent list equals an empty one, and an absent isLocal equals false
// (the platform reads both the same way).
func sameSubscription(x, y Subscription) bool {
	if x.SubscriptionType != y.SubscriptionType || x.CallbackReference != y.CallbackReference {
		return false
	}
	fx, fy := x.FilteringCriteria, y.FilteringCriteria
	if fx == nil {
		fx = &FilteringCriteria{}
	}
	if fy == nil {
		fy = &FilteringCriteria{}
	}
	return slices.Equal(fx.SerInstanceIDs, fy.SerInstanceIDs) &&
		slices.Equal(fx.SerNames, fy.SerNames) &&
		slices.Equal(fx.SerCategories, fy.SerCategories) &&
		slices.Equal(fx.States, fy.States) &&
		isTrue(fx.IsLocal) == isTrue(fy.IsLocal)
}

func isTrue(b *bool) bool { return b != nil && *b }
