// Command envreads is the env-parsing test's fixture: it reads variables
// every way kmep's binaries do.
package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("envreads", run) }

func list(key string) []string { return strings.Split(os.Getenv(key), ",") }

func fromEnv(getenv func(string) string) string { return getenv("VIA_GETENV") }

// config is read by server.Main with envconfig.
type config struct {
	server.Serve        // PORT and KMEP_LOG_LEVEL, with defaults
	Tagged       string `envconfig:"TAGGED" desc:"no default"`
	TaggedDef    string `envconfig:"TAGGED_DEFAULT" default:"x"`
	Plain        int
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	_ = os.Getenv("REQUIRED")
	_, _ = os.LookupEnv("LOOKED_UP")
	_ = server.Env("WITH_DEFAULT", "x")
	_, _ = server.EnvInt("INT_DEFAULT", 1)
	_, _ = server.EnvDuration("DURATION_DEFAULT", 1)
	_ = list("VIA_WRAPPER")
	_ = fromEnv(os.Getenv)
	for _, v := range []struct {
		key string
		n   int
	}{{"TABLE_A", 1}, {key: "TABLE_B", n: 2}} {
		_ = os.Getenv(v.key)
	}
	return nil
}
