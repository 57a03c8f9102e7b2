package auth_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/auth"
)

func TestParseSigningKeys(t *testing.T) {
	pem1, err := auth.GenerateSigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pem2, err := auth.GenerateSigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	kid := func(p []byte) string {
		block, _ := pem.Decode(p)
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return auth.Thumbprint(k.(ed25519.PrivateKey).Public().(ed25519.PublicKey))
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	block, _ := pem.Decode(pem1)
	wrongType := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: block.Bytes})
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: block.Bytes[:len(block.Bytes)-3]})
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name     string
		in       []byte
		wantKids []string
		wantErr  error
	}{
		{name: "one key", in: pem1, wantKids: []string{kid(pem1)}},
		{name: "two keys keep their order", in: cat(pem1, pem2), wantKids: []string{kid(pem1), kid(pem2)}},
		{name: "surrounding whitespace", in: cat([]byte("\n"), pem2, []byte("\n\n"), pem1, []byte("  \n")), wantKids: []string{kid(pem2), kid(pem1)}},
		{name: "empty", in: nil, wantErr: auth.ErrNoSigningKeys},
		{name: "blank", in: []byte(" \n"), wantErr: auth.ErrNoSigningKeys},
		{name: "not PEM", in: []byte("hello"), wantErr: auth.ErrInvalidKey},
		{name: "trailing garbage", in: cat(pem1, []byte("junk")), wantErr: auth.ErrInvalidKey},
		{name: "wrong block type", in: wrongType, wantErr: auth.ErrInvalidKey},
		{name: "not Ed25519", in: ecPEM, wantErr: auth.ErrInvalidKey},
		{name: "corrupt DER", in: corrupt, wantErr: auth.ErrInvalidKey},
		{name: "same key twice", in: cat(pem1, pem1), wantErr: auth.ErrInvalidKey},
		{name: "bad second key", in: cat(pem1, ecPEM), wantErr: auth.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := auth.ParseSigningKeys(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range keys {
				kids = append(kids, k.KeyID())
				if k.Public().KeyID != k.KeyID() {
					t.Errorf("Public().KeyID = %q, want %q", k.Public().KeyID, k.KeyID())
				}
			}
			if strings.Join(kids, ",") != strings.Join(tt.wantKids, ",") {
				t.Errorf("kids = %v, want %v", kids, tt.wantKids)
			}
		})
	}
}

func TestGenerateSigningKeyPEMIsFresh(t *testing.T) {
	a, b := newKey(t), newKey(t)
	if a.KeyID() == b.KeyID() {
		t.Fatalf("two generated keys share kid %s", a.KeyID())
	}
}

// TestThumbprintRFC8037 checks the kid against RFC 8037 Appendix A.1/A.3.
func TestThumbprintRFC8037(t *testing.T) {
	seed, err := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.NewSigningKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := base64.RawURLEncoding.EncodeToString(key.Public().Key), "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"; got != want {
		t.Fatalf("x = %s, want %s", got, want)
	}
	if got, want := key.KeyID(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("kid = %s, want %s", got, want)
	}
}

func TestNewSigningKeyRejectsShortKey(t *testing.T) {
	if _, err := auth.NewSigningKey(make(ed25519.PrivateKey, 10)); !errors.Is(err, auth.ErrInvalidKey) {
		t.Fatalf("err = %v, want ErrInvalidKey", err)
	}
}

func TestMarshalJWKS(t *testing.T) {
	a, b := newKey(t), newKey(t)
	raw, err := auth.MarshalJWKS(a.Public(), auth.PublicKey{Key: b.Public().Key})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys, want 2: %s", len(doc.Keys), raw)
	}
	for i, k := range []auth.SigningKey{a, b} {
		want := map[string]string{
			"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
			"kid": k.KeyID(), // b's kid was left empty: the thumbprint is filled in
			"x":   base64.RawURLEncoding.EncodeToString(k.Public().Key),
		}
		for f, v := range want {
			if doc.Keys[i][f] != v {
				t.Errorf("key %d: %s = %q, want %q", i, f, doc.Keys[i][f], v)
			}
		}
		if len(doc.Keys[i]) != len(want) {
			t.Errorf("key %d has members %v, want exactly %v", i, doc.Keys[i], want)
		}
	}

	parsed, err := auth.ParseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed) != 2 || !parsed[a.KeyID()].Equal(a.Public().Key) || !parsed[b.KeyID()].Equal(b.Public().Key) {
		t.Fatalf("round trip = %v", parsed)
	}

	if _, err := auth.MarshalJWKS(a.Public(), a.Public()); !errors.Is(err, auth.ErrInvalidJWKS) {
		t.Errorf("duplicate kid: err = %v, want ErrInvalidJWKS", err)
	}
	if _, err := auth.MarshalJWKS(auth.PublicKey{KeyID: "x", Key: make([]byte, 31)}); !errors.Is(err, auth.ErrInvalidJWKS) {
		t.Errorf("short key: err = %v, want ErrInvalidJWKS", err)
	}
	empty, err := auth.MarshalJWKS()
	if err != nil || string(empty) != `{"keys":[]}` {
		t.Errorf("empty set = %s, %v", empty, err)
	}
}

func TestParseJWKS(t *testing.T) {
	x := base64.RawURLEncoding.EncodeToString(newKey(t).Public().Key)
	key := func(members string) string {
		return `{"keys":[{` + members + `}]}`
	}
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{name: "minimal key", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x + `"`), want: 1},
		{name: "full key", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","use":"sig","x":"` + x + `"`), want: 1},
		{name: "empty set", in: `{"keys":[]}`, want: 0},
		{name: "not JSON", in: `{"keys":`, wantErr: true},
		{name: "RSA", in: key(`"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"`), wantErr: true},
		{name: "EC", in: key(`"kty":"EC","crv":"P-256","kid":"k1","x":"` + x + `","y":"` + x + `"`), wantErr: true},
		{name: "X25519", in: key(`"kty":"OKP","crv":"X25519","kid":"k1","x":"` + x + `"`), wantErr: true},
		{name: "other alg", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"HS256","x":"` + x + `"`), wantErr: true},
		{name: "encryption use", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","use":"enc","x":"` + x + `"`), wantErr: true},
		{name: "no kid", in: key(`"kty":"OKP","crv":"Ed25519","x":"` + x + `"`), wantErr: true},
		{name: "short x", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x[:40] + `"`), wantErr: true},
		{name: "long x", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x + `AAAA"`), wantErr: true},
		{name: "padded x", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x + `="`), wantErr: true},
		{name: "std base64 x", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","x":"+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+"`), wantErr: true},
		{name: "private material", in: key(`"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x + `","d":"` + x + `"`), wantErr: true},
		{name: "duplicate kid", in: `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x + `"},{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x + `"}]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.ParseJWKS([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, auth.ErrInvalidJWKS) {
					t.Fatalf("err = %v, want ErrInvalidJWKS", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Fatalf("%d keys, want %d", len(got), tt.want)
			}
		})
	}
}
