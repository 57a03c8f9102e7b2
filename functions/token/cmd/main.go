// Command token is the token function's binary: POST /mep/token, the JWKS,
// and Mm5 app credentials, served on $PORT (the Knative runtime contract).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_ENCRYPTION_KEY (32 bytes, base64 or hex; required),
// KMEP_TOKEN_SIGNING_KEY (PEM of one or more Ed25519 PKCS#8 keys, the first
// signs; or KMEP_TOKEN_SIGNING_KEY_FILE; required), KMEP_ADMIN_TOKEN
// (required), KMEP_TRUSTED_PROXIES (none: comma-separated addresses and CIDR
// prefixes of the proxies whose X-Forwarded-For names the client that token
// requests are throttled as; see token.ParseTrustedProxies), KMEP_LOG_LEVEL
// (info).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/kmep-io/kmep/functions/token"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("token", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	EncryptionKey  store.EncryptionKey `envconfig:"KMEP_ENCRYPTION_KEY" required:"true" desc:"32 bytes, base64 or hex: seals the app secrets"`
	SigningKey     string              `envconfig:"KMEP_TOKEN_SIGNING_KEY" desc:"PEM of one or more Ed25519 PKCS#8 keys, the first signs (or KMEP_TOKEN_SIGNING_KEY_FILE)"`
	SigningKeyFile string              `envconfig:"KMEP_TOKEN_SIGNING_KEY_FILE" desc:"file of KMEP_TOKEN_SIGNING_KEY when that is unset"`
	AdminToken     string              `envconfig:"KMEP_ADMIN_TOKEN" required:"true" desc:"the platform admin's bearer token"`
	TrustedProxies string              `envconfig:"KMEP_TRUSTED_PROXIES" desc:"comma-separated addresses and CIDRs of the proxies whose X-Forwarded-For names the client (unset: none)"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	var err error
	pem := []byte(cfg.SigningKey)
	if f := cfg.SigningKeyFile; len(pem) == 0 && f != "" {
		if pem, err = os.ReadFile(f); err != nil {
			return fmt.Errorf("KMEP_TOKEN_SIGNING_KEY_FILE: %w", err)
		}
	}
	keys, err := auth.ParseSigningKeys(pem)
	if err != nil {
		return fmt.Errorf("KMEP_TOKEN_SIGNING_KEY: %w", err)
	}
	signer, err := auth.NewSigner(keys, auth.SignerOptions{})
	if err != nil {
		return err
	}
	admin, err := auth.NewAdmin(cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	proxies, err := token.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return fmt.Errorf("KMEP_TRUSTED_PROXIES: %w", err)
	}
	st, closeStore, err := cfg.OpenStore(store.Options{EncryptionKey: cfg.EncryptionKey})
	if err != nil {
		return err
	}
	defer closeStore()
	go token.PublishKeys(ctx, log, st, signer.JWKS())
	reg := metrics.NewRegistry()
	h := token.New(token.Deps{Store: st, Signer: signer, Admin: admin, Log: log, TrustedProxies: proxies, Metrics: reg})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(reg, h), Log: log})
}
