// Kmepctl is the kmep platform's command-line tool: it reads the platform
// as its admin (get, list and watch of services, apps, subscriptions,
// rules, packages, instances and dead letters, as a table, JSON or YAML),
// makes access/secret key pairs, signs token requests the way
// EdgeGallery's mep-agent does (SDK-HMAC-SHA256), fetches tokens, and
// writes a small valid app package.
//
// Usage:
//
//	kmepctl get|list|watch RESOURCE [ID] [-o table|json|yaml] [--app ID] [--tenant ID]
//	kmepctl keygen
//	kmepctl sign  --ak AK --sk SK --url URL [--method POST] [--body STRING]
//	kmepctl token --ak AK --sk SK --url URL [--timeout 10s]
//	kmepctl csar  [--name demo] > demo.csar
//	kmepctl completion bash|zsh|fish|powershell
//	kmepctl --version
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
// --sk is absent, the KMEP_AK or KMEP_SK environment variable is used. The
// reading commands find the platform at --server, $KMEP_URL, else
// http://127.0.0.1:8080, and take the admin token from --token,
// $KMEP_ADMIN_TOKEN, --token-file, else .kmep/admin-token (make run's).
// Exit codes: 0 done, 1 failed, 2 a command line it cannot run.
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
		client: &http.Client{Timeout: time.Minute},
	})
	stop()
	os.Exit(code)
}
