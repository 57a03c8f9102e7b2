package mepagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/kmep-io/kmep/store/kit/aksk"
	"github.com/kmep-io/kmep/store/kit/retry"
)

// signedHeaders are the headers a token request signs, as EdgeGallery's
// mep-agent does.
var signedHeaders = []string{"content-type", "host", "x-sdk-date"}

// defaultLifetime is assumed for a token answered without expires_in.
const defaultLifetime = time.Hour

// Token is the platform's answer to POST /mep/token, and the agent's to
// GET /mep-agent/v1/token.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	// ExpiresIn is the lifetime in seconds.
	ExpiresIn int `json:"expires_in"`
}

// tokenState is the current token, shared by every step and the API.
type tokenState struct {
	mu      sync.Mutex
	tok     Token
	expires time.Time
	// have is closed once the first token is set.
	have     chan struct{}
	haveOnce sync.Once
	// renew asks runTokens for a new token at once (one pending request).
	renew chan struct{}
}

func newTokenState() *tokenState {
	return &tokenState{have: make(chan struct{}), renew: make(chan struct{}, 1)}
}

func (s *tokenState) set(t Token, expires time.Time) {
	s.mu.Lock()
	s.tok, s.expires = t, expires
	s.mu.Unlock()
	s.haveOnce.Do(func() { close(s.have) })
	// A renewal asked for the token just replaced is moot.
	select {
	case <-s.renew:
	default:
	}
}

// current returns the token and when it expires; ok is false before the
// first token.
func (s *tokenState) current() (t Token, expires time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok, s.expires, s.tok.AccessToken != ""
}

// wait returns the current access token, waiting for the first one.
func (s *tokenState) wait(ctx context.Context) (string, error) {
	select {
	case <-s.have:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	t, _, _ := s.current()
	return t.AccessToken, nil
}

// reject reports that the platform answered 401 to access: when it is
// still the current token, a new one is fetched at once.
func (s *tokenState) reject(access string) {
	s.mu.Lock()
	same := access != "" && access == s.tok.AccessToken
	s.mu.Unlock()
	if !same {
		return
	}
	select {
	case s.renew <- struct{}{}:
	default:
	}
}

// runTokens keeps a valid token until ctx ends: it fetches one (retrying
// with backoff), renews it at 80 % of its lifetime, and at once when a step
// reports a 401 (but not twice within Config.MinBackoff).
func (a *Agent) runTokens(ctx context.Context) {
	b := a.newBackoff()
	for {
		tok, err := a.fetchToken(ctx)
		count(ctx, a.m.tokens, err)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := b.next()
			var se *StatusError
			if errors.As(err, &se) {
				if !se.transient() {
					// Wrong AK/SK, or not provisioned yet: the admin may fix
					// it, so keep asking, slowly (each bad signature counts
					// towards the platform's lockout).
					wait = a.cfg.MaxBackoff
				}
				wait = max(wait, se.RetryAfter)
			}
			level := "token: failed; will retry"
			if isPermanent(err) {
				a.log.Error(level+" (check AK, SK and their provisioning)", "in", wait.Round(time.Millisecond), "err", err)
			} else {
				a.log.Warn(level, "in", wait.Round(time.Millisecond), "err", err)
			}
			if !retry.Sleep(ctx, wait) {
				return
			}
			continue
		}
		b.reset()
		obtained := time.Now()
		life := time.Duration(tok.ExpiresIn) * time.Second
		if life <= 0 {
			life = defaultLifetime
		}
		first := !a.hasToken()
		a.tokens.set(tok, obtained.Add(life))
		if first {
			a.log.Info("token: obtained", "expires_in", tok.ExpiresIn)
		} else {
			a.log.Debug("token: renewed", "expires_in", tok.ExpiresIn)
		}
		refresh := time.NewTimer(max(life*8/10, a.cfg.MinBackoff))
		select {
		case <-ctx.Done():
			refresh.Stop()
			return
		case <-refresh.C:
		case <-a.tokens.renew:
			refresh.Stop()
			a.log.Info("token: refused by the platform; renewing")
			if d := a.cfg.MinBackoff - time.Since(obtained); d > 0 && !retry.Sleep(ctx, d) {
				return
			}
		}
	}
}

func (a *Agent) hasToken() bool {
	_, _, ok := a.tokens.current()
	return ok
}

// fetchToken asks the platform for a token with an AK/SK-signed POST with
// an empty body, as EdgeGallery's mep-agent does.
func (a *Agent) fetchToken(ctx context.Context) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url(tokenPath), http.NoBody)
	if err != nil {
		return Token{}, &permanentError{fmt.Errorf("token request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if err := aksk.Sign(req, nil, a.cfg.AccessKey, a.sk, signedHeaders, time.Now()); err != nil {
		return Token{}, &permanentError{fmt.Errorf("token request: %w", err)}
	}
	_, body, err := a.do(req)
	if err != nil {
		return Token{}, err
	}
	var tok Token
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return Token{}, fmt.Errorf("token answer: no access_token in %d bytes", len(body))
	}
	if tok.TokenType == "" {
		tok.TokenType = "Bearer"
	}
	return tok, nil
}
