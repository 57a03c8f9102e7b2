package token

import (
	"context"
	"log/slog"
	"time"

	"github.com/kmep-io/kmep/store"
)

// PublishKeys puts the signer's verification keys (JWKS) in the store,
// where every function's verifier reads them, retrying every second while
// Redis is unreachable. It returns once published or when ctx ends.
func PublishKeys(ctx context.Context, log *slog.Logger, st *store.Store, jwks []byte) {
	for ctx.Err() == nil {
		err := st.PublishJWKS(ctx, jwks)
		if err == nil {
			return
		}
		log.Warn("publish token keys; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
