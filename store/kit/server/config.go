package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Base is the part of every kmep binary's configuration that Main itself
// uses. Each binary's config struct embeds it (directly or through Serve
// or Agent).
type Base struct {
	// LogLevel is the logger's level. Default is "info"; anything but
	// debug, info, warn or error is info.
	LogLevel string `envconfig:"KMEP_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

func (b *Base) base() *Base { return b }

// Serve is the configuration shared by the binaries that serve on $PORT
// under the Knative runtime contract (the functions and the triggers).
type Serve struct {
	Base
	// Port is the port served on. Default is 8080.
	Port Port `envconfig:"PORT" default:"8080" desc:"the port served on (set by Knative)"`
}

// Addr is the listen address, ":$PORT".
func (s Serve) Addr() string { return ":" + string(s.Port) }

// Agent is the configuration shared by the long-running agents: where
// GET /healthz (and GET /metrics) answer.
type Agent struct {
	Base
	// Health is the listen address of the health port. Zero value: ":$PORT"
	// when Port is set, else no HTTP port (HealthAddr).
	Health string `envconfig:"KMEP_HEALTH_ADDR" desc:"listen address of GET /healthz and GET /metrics (unset: :$PORT when PORT is set, else no HTTP port)"`
	// Port is the health port when Health is unset. Zero value: none.
	Port Port `envconfig:"PORT" desc:"the health port when KMEP_HEALTH_ADDR is unset"`
}

// HealthAddr is the agent's health listen address (the HealthAddr
// function of Health and Port): "" for no HTTP port.
func (a Agent) HealthAddr() string { return HealthAddr(a.Health, string(a.Port)) }

// Port is a TCP port number setting, 0 to 65535, kept as its decimal text.
type Port string

// Decode implements envconfig.Decoder.
func (p *Port) Decode(s string) error {
	if n, err := strconv.ParseUint(s, 10, 16); err != nil || strconv.FormatUint(n, 10) != s {
		return errors.New("want a port number, 0 to 65535")
	}
	*p = Port(s)
	return nil
}

// PositiveDuration is a duration setting ("1s", "250ms") that must be
// above zero.
type PositiveDuration time.Duration

// Decode implements envconfig.Decoder.
func (d *PositiveDuration) Decode(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return errors.New("want a positive duration like 1s")
	}
	*d = PositiveDuration(v)
	return nil
}

// PositiveInt is an integer setting that must be above zero.
type PositiveInt int

// Decode implements envconfig.Decoder.
func (n *PositiveInt) Decode(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		return errors.New("want a positive integer")
	}
	*n = PositiveInt(v)
	return nil
}

// Validator is implemented by a config whose settings are checked beyond
// their types (a range, a key that must parse); Parse calls Validate after
// the environment is read, and its error, which names the variable, stops
// the binary.
type Validator interface {
	Validate() error
}

// Parse reads the environment into cfg, a pointer to a binary's config
// struct whose fields carry envconfig tags (`envconfig:"NAME"
// default:"..." desc:"..."`), then calls cfg's Validate when it has one.
// A variable set to the empty string counts as unset, as it always has in
// kmep (its default applies). A value that does not parse is an error
// naming the variable (never the value of a string setting, so secrets are
// safe: they are strings). For main packages only.
func Parse(cfg any) error {
	keys, err := Keys(cfg)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok && v == "" {
			_ = os.Unsetenv(k)
		}
	}
	if err := envconfig.Process("", cfg); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: %q: %w", pe.KeyName, pe.Value, pe.Err)
		}
		return err
	}
	if v, ok := cfg.(Validator); ok {
		return v.Validate()
	}
	return nil
}

// Keys lists the environment variables cfg (as for Parse) reads, in the
// order of its fields.
func Keys(cfg any) ([]string, error) {
	var b bytes.Buffer
	if err := envconfig.Usagef("", cfg, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return strings.Fields(b.String()), nil
}

// Usage writes the settings of cfg (as for Parse): each variable with its
// type, default, whether it is required and its description, then how
// traces are exported (Tracing).
func Usage(w io.Writer, component string, cfg any) error {
	fmt.Fprintf(w, "Usage: %s [--version | -h]\n\n%s is configured by its environment:\n\n", component, component)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	err := envconfig.Usagef("", cfg, tw, "VARIABLE\tTYPE\tDEFAULT\tREQUIRED\tDESCRIPTION\n"+
		"{{range .}}{{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_required .}}\t{{usage_description .}}\n{{end}}")
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	fmt.Fprintln(tw, "\nAn empty variable counts as unset.")
	fmt.Fprintln(tw, "Traces are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT (or\n"+
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; OTEL_EXPORTER_OTLP_PROTOCOL is\n"+
		"http/protobuf (the default) or grpc; the SDK reads the other OTEL_* variables.")
	return tw.Flush()
}

// version is the binary's version, set at link time by
// -ldflags "-X github.com/kmep-io/kmep/store/kit/server.version=...".
// Empty: Version reads the build information.
var version string

// Version is the binary's version: the one set at link time, else the
// module's version from the build information, with the VCS revision and
// "modified" when the tree had uncommitted changes.
func Version() string {
	return versionOf(version, debug.ReadBuildInfo)
}

func versionOf(linked string, read func() (*debug.BuildInfo, bool)) string {
	if linked != "" {
		return linked
	}
	bi, ok := read()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		v += " revision " + rev
	}
	if modified == "true" {
		v += " modified"
	}
	return v
}

// handleArgs answers the command line of a kmep binary, which takes no
// argument but --version (or -version) and -h (or --help, -help): done
// says the binary must exit with code (0 for those, 2 for anything else)
// without starting anything.
func handleArgs(stdout, stderr io.Writer, component string, cfg any, args []string) (code int, done bool) {
	if len(args) == 0 {
		return 0, false
	}
	if len(args) == 1 {
		switch args[0] {
		case "--version", "-version":
			fmt.Fprintf(stdout, "%s %s\n", component, Version())
			return 0, true
		case "-h", "--help", "-help":
			if err := Usage(stdout, component, cfg); err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", component, err)
				return 1, true
			}
			return 0, true
		}
	}
	fmt.Fprintf(stderr, "%s: unexpected argument %q: the binary is configured by its environment (see %s -h)\nUsage: %s [--version | -h]\n",
		component, strings.Join(args, " "), component, component)
	return 2, true
}

// String is the duration's text ("5s").
func (d PositiveDuration) String() string { return time.Duration(d).String() }
