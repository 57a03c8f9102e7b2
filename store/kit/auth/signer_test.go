package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/auth"
)

func TestNewSigner(t *testing.T) {
	k := newKey(t)
	tests := []struct {
		name    string
		keys    []auth.SigningKey
		opts    auth.SignerOptions
		wantErr bool
	}{
		{name: "defaults", keys: []auth.SigningKey{k}},
		{name: "custom TTL", keys: []auth.SigningKey{k}, opts: auth.SignerOptions{TTL: 5 * time.Minute}},
		{name: "no keys", wantErr: true},
		{name: "zero key", keys: []auth.SigningKey{{}}, wantErr: true},
		{name: "fractional TTL", keys: []auth.SigningKey{k}, opts: auth.SignerOptions{TTL: 1500 * time.Millisecond}, wantErr: true},
		{name: "negative TTL", keys: []auth.SigningKey{k}, opts: auth.SignerOptions{TTL: -time.Second}, wantErr: true},
		{name: "same key twice", keys: []auth.SigningKey{k, k}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := auth.NewSigner(tt.keys, tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatal("NewSigner succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.KeyID() != tt.keys[0].KeyID() {
				t.Errorf("KeyID = %s, want the first key's %s", s.KeyID(), tt.keys[0].KeyID())
			}
		})
	}
}

// decodeSegment decodes one base64url JSON segment of a JWT.
func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIssue(t *testing.T) {
	k := newKey(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 700_000_000, time.UTC)
	tests := []struct {
		name          string
		opts          auth.SignerOptions
		wantIss       string
		wantAud       string
		wantExpiresIn int
	}{
		{name: "defaults", wantIss: "kmep", wantAud: "kmep-mp1", wantExpiresIn: 3600},
		{name: "custom", opts: auth.SignerOptions{Issuer: "edge-7", Audience: "mp1-test", TTL: 90 * time.Second},
			wantIss: "edge-7", wantAud: "mp1-test", wantExpiresIn: 90},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSigner(t, tt.opts, k)
			tok, expiresIn, err := s.Issue("app-1", now)
			if err != nil {
				t.Fatal(err)
			}
			if expiresIn != tt.wantExpiresIn {
				t.Errorf("expiresIn = %d, want %d", expiresIn, tt.wantExpiresIn)
			}
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("token has %d parts", len(parts))
			}
			header := decodeSegment(t, parts[0])
			for f, want := range map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": k.KeyID()} {
				if header[f] != want {
					t.Errorf("header %s = %v, want %v", f, header[f], want)
				}
			}
			claims := decodeSegment(t, parts[1])
			sec := float64(now.Unix())
			for f, want := range map[string]any{
				"iss": tt.wantIss, "sub": "app-1",
				"iat": sec, "nbf": sec, "exp": sec + float64(tt.wantExpiresIn),
			} {
				if claims[f] != want {
					t.Errorf("claim %s = %v, want %v", f, claims[f], want)
				}
			}
			if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != tt.wantAud {
				t.Errorf("aud = %v, want [%s]", claims["aud"], tt.wantAud)
			}
			if jti, _ := claims["jti"].(string); len(jti) < 20 {
				t.Errorf("jti = %v, want a random ID", claims["jti"])
			}
		})
	}
}

func TestIssueFreshJTI(t *testing.T) {
	s := newSigner(t, auth.SignerOptions{}, newKey(t))
	now := time.Now()
	a, b := issue(t, s, "app-1", now), issue(t, s, "app-1", now)
	if a == b {
		t.Fatal("two tokens issued at the same second are identical; jti is not random")
	}
}

func TestIssueEmptySubject(t *testing.T) {
	s := newSigner(t, auth.SignerOptions{}, newKey(t))
	if _, _, err := s.Issue("", time.Now()); !errors.Is(err, auth.ErrEmptySubject) {
		t.Fatalf("err = %v, want ErrEmptySubject", err)
	}
}

func TestSignerJWKSPublishesAllKeys(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	s := newSigner(t, auth.SignerOptions{}, a, b, c)
	got := s.JWKS()
	keys, err := auth.ParseJWKS(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []auth.SigningKey{a, b, c} {
		if !keys[k.KeyID()].Equal(k.Public().Key) {
			t.Errorf("key %s not published", k.KeyID())
		}
	}
	got[0] = 'X'
	if _, err := auth.ParseJWKS(s.JWKS()); err != nil {
		t.Errorf("modifying the returned JWKS changed the signer's: %v", err)
	}
}

func BenchmarkIssue(b *testing.B) {
	s := newSigner(b, auth.SignerOptions{}, newKey(b))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Issue("app-instance-0123456789", now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
