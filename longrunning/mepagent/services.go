package mepagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/kmep-io/kmep/store/kit/retry"
)

// heartbeatBody is the ServiceLivenessUpdate every heartbeat sends.
var heartbeatBody = []byte(`{"state":"ACTIVE"}`)

// service is one entry of serviceInfoPosts and its registration.
type service struct {
	name string
	body []byte
	// interval is the livenessInterval asked for.
	interval time.Duration

	mu  sync.Mutex
	reg registration // zero while not registered
}

// registration is what the platform answered to a registration.
type registration struct {
	id string
	// self and liveness are absolute URLs; liveness is empty without
	// heartbeats.
	self, liveness string
	// interval is the liveness interval granted.
	interval time.Duration
}

func (s *service) set(r registration) {
	s.mu.Lock()
	s.reg = r
	s.mu.Unlock()
}

func (s *service) registration() registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reg
}

// runService registers s and heartbeats it until ctx ends, registering it
// again whenever the platform answers a heartbeat with 404.
func (a *Agent) runService(ctx context.Context, s *service) {
	for {
		if err := a.register(ctx, s); err != nil {
			if ctx.Err() == nil {
				a.log.Error("register: refused by the platform; not retrying", "service", s.name, "err", err)
			}
			return
		}
		if !a.heartbeat(ctx, s) {
			return
		}
	}
}

// register POSTs s until the platform accepts it, refuses it for good, or
// ctx ends.
func (a *Agent) register(ctx context.Context, s *service) error {
	var reg registration
	key := newKey()
	err := a.retry(ctx, "register "+s.name, func(ctx context.Context, token string) (err error) {
		defer func() { count(ctx, a.m.registrations, err) }()
		res, body, err := a.callWithKey(ctx, http.MethodPost, a.url(a.servicesPath()), token, key, s.body)
		if err != nil {
			return err
		}
		reg, err = a.registration(res, body, s)
		if err != nil {
			return &permanentError{fmt.Errorf("register %s: %w", s.name, err)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.set(reg)
	a.log.Info("service registered", "service", s.name, "ser_instance_id", reg.id,
		"liveness_interval", reg.interval.String(), "self", reg.self)
	return nil
}

// registration reads the answer to a registration: the serInstanceId, the
// resource (_links.self.href, else Location, else the collection's URL and
// the id), the liveness resource (_links.liveness.href, else EdgeGallery's
// _links.self.liveness, else self/liveness) and the granted interval.
func (a *Agent) registration(res *http.Response, body []byte, s *service) (registration, error) {
	var ans struct {
		SerInstanceID    string `json:"serInstanceId"`
		LivenessInterval int    `json:"livenessInterval"`
		Links            struct {
			Self struct {
				Href     string `json:"href"`
				Liveness string `json:"liveness"`
			} `json:"self"`
			Liveness *struct {
				Href string `json:"href"`
			} `json:"liveness"`
		} `json:"_links"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return registration{}, fmt.Errorf("answer is not a ServiceInfo: %w", err)
	}
	if ans.SerInstanceID == "" {
		return registration{}, errors.New("answer has no serInstanceId")
	}
	reg := registration{id: ans.SerInstanceID, interval: s.interval}
	if ans.LivenessInterval > 0 {
		reg.interval = time.Duration(ans.LivenessInterval) * time.Second
	}
	self := ans.Links.Self.Href
	if self == "" {
		self = res.Header.Get("Location")
	}
	if self == "" {
		self = a.servicesPath() + "/" + url.PathEscape(ans.SerInstanceID)
	}
	var err error
	if reg.self, err = a.resolve(self); err != nil {
		return registration{}, err
	}
	if reg.interval <= 0 {
		return reg, nil
	}
	live := ans.Links.Self.Liveness
	if ans.Links.Liveness != nil && ans.Links.Liveness.Href != "" {
		live = ans.Links.Liveness.Href
	}
	if live == "" {
		reg.liveness = reg.self + "/liveness"
	} else if reg.liveness, err = a.resolve(live); err != nil {
		return registration{}, err
	}
	return reg, nil
}

// heartbeatPeriod is how often a service with the granted interval is
// heartbeated: a quarter early, since the platform allows only a short
// grace (5 % of the interval) past each deadline.
func heartbeatPeriod(interval time.Duration) time.Duration {
	return max(interval*3/4, 50*time.Millisecond)
}

// heartbeat PATCHes the liveness resource of s until ctx ends (false) or
// the platform answers 404 (true: it lost the service). A failed heartbeat
// is retried with backoff, but never later than the next one was due.
func (a *Agent) heartbeat(ctx context.Context, s *service) (lost bool) {
	reg := s.registration()
	if reg.liveness == "" {
		<-ctx.Done()
		return false
	}
	period := heartbeatPeriod(reg.interval)
	b := a.newBackoff()
	failures := 0
	next := period
	for {
		if !retry.Sleep(ctx, next) {
			return false
		}
		token, err := a.tokens.wait(ctx)
		if err != nil {
			return false
		}
		_, _, err = a.call(ctx, http.MethodPatch, reg.liveness, token, heartbeatBody)
		var se *StatusError
		isStatus := errors.As(err, &se)
		if isStatus && se.Status == http.StatusNotFound {
			a.m.heartbeats.WithLabelValues(outcomeLost).Inc()
		} else {
			count(ctx, a.m.heartbeats, err)
		}
		switch {
		case err == nil:
			if failures > 0 {
				a.log.Info("heartbeat: accepted again", "service", s.name, "failed_attempts", failures)
			}
			failures = 0
			b.reset()
			next = period
			continue
		case ctx.Err() != nil:
			return false
		case isStatus && se.Status == http.StatusNotFound:
			a.log.Warn("heartbeat: the platform lost the service; registering it again",
				"service", s.name, "ser_instance_id", reg.id)
			s.set(registration{})
			return true
		}
		failures++
		level := slog.LevelWarn
		if isPermanent(err) {
			// Refused (403, 400...): no faster retry, but keep heartbeating
			// in case it passes.
			level = slog.LevelError
			next = period
		} else {
			next = b.next()
			if isStatus {
				if se.Status == http.StatusUnauthorized {
					a.tokens.reject(token)
				}
				next = max(next, se.RetryAfter)
			}
			next = min(next, period)
		}
		if failures > 1 {
			level = slog.LevelDebug // one line per outage, not per attempt
		}
		a.log.Log(ctx, level, "heartbeat: failed; retrying", "service", s.name, "attempt", failures,
			"in", next.Round(time.Millisecond), "err", err)
	}
}

// deregisterAll deletes every registered service, in parallel, within
// Config.StopTimeout. It runs after every step has stopped.
func (a *Agent) deregisterAll() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StopTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range a.services {
		if reg := s.registration(); reg.id != "" {
			wg.Go(func() { a.deregister(ctx, s, reg) })
		}
	}
	wg.Wait()
}

// deregister DELETEs one service, retrying transient failures until ctx
// ends, and renewing the token once on a 401.
func (a *Agent) deregister(ctx context.Context, s *service, reg registration) {
	b := a.newBackoff()
	renewed := false
	for {
		tok, _, ok := a.tokens.current()
		if !ok {
			return
		}
		_, _, err := a.call(ctx, http.MethodDelete, reg.self, tok.AccessToken, nil)
		var se *StatusError
		isStatus := errors.As(err, &se)
		switch {
		case err == nil, isStatus && se.Status == http.StatusNotFound:
			s.set(registration{})
			a.log.Info("service deregistered", "service", s.name, "ser_instance_id", reg.id)
			return
		case isStatus && se.Status == http.StatusUnauthorized && !renewed:
			renewed = true
			t, ferr := a.fetchToken(ctx)
			count(ctx, a.m.tokens, ferr)
			if ferr != nil {
				a.log.Error("deregister: no token", "service", s.name, "err", ferr)
				return
			}
			a.tokens.set(t, time.Now().Add(time.Duration(t.ExpiresIn)*time.Second))
			continue
		case isPermanent(err):
			a.log.Error("deregister: refused", "service", s.name, "ser_instance_id", reg.id, "err", err)
			return
		}
		if !retry.Sleep(ctx, b.next()) {
			a.log.Error("deregister: gave up at the stop timeout", "service", s.name, "ser_instance_id", reg.id, "err", err)
			return
		}
	}
}
