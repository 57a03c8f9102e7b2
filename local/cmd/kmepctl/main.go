// Kmepctl is a small command-line tool for people trying kmep by hand: it
// makes access/secret key pairs, signs token requests the way EdgeGallery's
// mep-agent does (SDK-HMAC-SHA256), and fetches tokens.
//
// Usage:
//
//	kmepctl keygen
//	kmepctl sign  --ak AK --sk SK --url URL [--method POST] [--body STRING]
//	kmepctl token --ak AK --sk SK --url URL [--timeout 10s]
//
// keygen prints AK=... and SK=... lines. sign prints KMEP_SDK_DATE='...' and
// KMEP_AUTHORIZATION='...' lines for a request that signs only host and
// x-sdk-date, the headers curl sends by itself:
//
//	eval "$(kmepctl keygen)"
//	eval "$(kmepctl sign --ak $AK --sk $SK --url http://127.0.0.1:8080/mep/token)"
//	curl -sS -X POST -H "x-sdk-date: $KMEP_SDK_DATE" -H "Authorization: $KMEP_AUTHORIZATION" \
//	    http://127.0.0.1:8080/mep/token
//
// token does the signed POST itself and prints the access token. When --ak or
// --sk is absent, the KMEP_AK or KMEP_SK environment variable is used.
package main

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], deps{
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		now:    time.Now,
		rand:   rand.Reader,
		client: &http.Client{},
	})
	stop()
	os.Exit(code)
}
