package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Environment variables that stand in for flags.
const (
	envAK         = "KMEP_AK"          // --ak
	envSK         = "KMEP_SK"          // --sk
	envURL        = "KMEP_URL"         // --server
	envAdminToken = "KMEP_ADMIN_TOKEN" // --token
)

// Defaults of the platform flags: the all-in-one's address and the admin
// token file it generates under its data directory (make run: .kmep).
const (
	defaultServer    = "http://127.0.0.1:8080"
	defaultTokenFile = ".kmep/admin-token"
)

// deps is what the commands need from the outside world; main fills it with
// the real thing and tests with fakes.
type deps struct {
	stdout, stderr io.Writer
	// getenv reads an environment variable.
	getenv func(string) string
	// now is the clock that dates signatures.
	now func() time.Time
	// rand is the source of generated keys.
	rand io.Reader
	// client sends requests; its Timeout is overridden by --timeout.
	client *http.Client
}

// usageError is a command line the commands cannot run: exit code 2, with
// the command's usage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// noArgs refuses any positional argument as a usage error.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// run runs the command line args (without the program name) and returns the
// process exit code.
func run(ctx context.Context, args []string, d deps) int {
	root := newRoot(d)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if ue, ok := errors.AsType[usageError](err); ok {
		fmt.Fprintf(d.stderr, "kmepctl: %v\n", ue.err)
		if cmd == nil {
			cmd = root
		}
		fmt.Fprint(d.stderr, cmd.UsageString())
		return exitUsage
	}
	return fail(d, err)
}

// newRoot builds the command tree.
func newRoot(d deps) *cobra.Command {
	root := &cobra.Command{
		Use:   "kmepctl",
		Short: "kmepctl reads a kmep platform and signs requests for people trying it by hand",
		Long: `kmepctl reads a kmep platform as its admin (get, list, watch: services, apps,
subscriptions, rules, packages, instances, dead letters, as a table, JSON or
YAML), makes access/secret key pairs, signs token requests the way
EdgeGallery's mep-agent does (SDK-HMAC-SHA256), fetches tokens, and writes a
small valid app package.

  eval "$(kmepctl keygen)"
  eval "$(kmepctl sign --ak $AK --sk $SK --url http://127.0.0.1:8080/mep/token)"
  curl -sS -X POST -H "x-sdk-date: $KMEP_SDK_DATE" -H "Authorization: $KMEP_AUTHORIZATION" \
      http://127.0.0.1:8080/mep/token
  kmepctl list services -o yaml

--ak and --sk default to $KMEP_AK and $KMEP_SK; --server to $KMEP_URL, else
` + defaultServer + `; the admin token to --token, $KMEP_ADMIN_TOKEN, --token-file,
else ` + defaultTokenFile + ` (the all-in-one's).`,
		Version:       version(),
		Args:          noCommand,
		RunE:          func(c *cobra.Command, _ []string) error { return usagef("no command") },
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("kmepctl {{.Version}}\n")
	root.SetOut(d.stdout)
	root.SetErr(d.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	p := &platformFlags{}
	pf := root.PersistentFlags()
	pf.StringVar(&p.server, "server", "", "the platform's base `URL` (default $"+envURL+", else "+defaultServer+")")
	pf.StringVar(&p.token, "token", "", "the platform admin's bearer `token` (default $"+envAdminToken+")")
	pf.StringVar(&p.tokenFile, "token-file", "", "read the admin token from `file` (default "+defaultTokenFile+" when there is no token)")
	root.AddCommand(newKeygen(d), newSign(d), newToken(d), newCSAR(d))
	for _, verb := range []string{"get", "list", "watch"} {
		root.AddCommand(newRead(d, p, verb))
	}
	return root
}

// noCommand refuses an unknown command as a usage error (cobra's own
// check would not say it is one).
func noCommand(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], c.CommandPath())
	}
	return nil
}

// version is the module version the binary was built from, with the VCS
// revision when the build recorded one.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + bi.GoVersion
}

func newKeygen(d deps) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "print a new access/secret key pair as AK=... and SK=... lines",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			ak, sk, err := generateKeys(d.rand)
			if err != nil {
				return err
			}
			fmt.Fprintf(d.stdout, "AK=%s\nSK=%s\n", ak, sk)
			return nil
		},
	}
}

func newSign(d deps) *cobra.Command {
	c := &credentials{}
	var method, body string
	cmd := &cobra.Command{
		Use:   "sign --ak AK --sk SK --url URL [--method POST] [--body STRING]",
		Short: "print KMEP_SDK_DATE='...' and KMEP_AUTHORIZATION='...' for curl",
		Long: `sign prints KMEP_SDK_DATE='...' and KMEP_AUTHORIZATION='...' lines for a
request that signs only host and x-sdk-date, the headers curl sends by itself.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := c.resolve(d.getenv); err != nil {
				return usageError{err}
			}
			date, auth, err := signForCurl(method, c.url, []byte(body), c.ak, []byte(c.sk), d.now())
			if err != nil {
				return err
			}
			fmt.Fprintf(d.stdout, "KMEP_SDK_DATE=%s\nKMEP_AUTHORIZATION=%s\n", shellQuote(date), shellQuote(auth))
			return nil
		},
	}
	c.addFlags(cmd)
	cmd.Flags().StringVar(&method, "method", http.MethodPost, "HTTP `method` curl will send (curl -X)")
	cmd.Flags().StringVar(&body, "body", "", "request `body` curl will send (curl --data-raw)")
	return cmd
}

func newToken(d deps) *cobra.Command {
	c := &credentials{}
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "token --ak AK --sk SK --url URL [--timeout 10s]",
		Short: "do the signed token request and print the access token",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.resolve(d.getenv); err != nil {
				return usageError{err}
			}
			client := *d.client
			client.Timeout = timeout
			tok, err := fetchToken(cmd.Context(), &client, c.url, c.ak, []byte(c.sk), d.now())
			if err != nil {
				if se, ok := errors.AsType[*statusError](err); ok {
					d.stderr.Write(se.body)
					if len(se.body) == 0 || se.body[len(se.body)-1] != '\n' {
						fmt.Fprintln(d.stderr)
					}
				}
				return err
			}
			fmt.Fprintln(d.stdout, tok)
			return nil
		},
	}
	c.addFlags(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up after this `duration`")
	return cmd
}

// credentials are the flags sign and token share.
type credentials struct {
	ak, sk, url string
}

func (c *credentials) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&c.ak, "ak", "", "access `key` (default $"+envAK+")")
	fs.StringVar(&c.sk, "sk", "", "secret `key` (default $"+envSK+")")
	fs.StringVar(&c.url, "url", "", "token endpoint `URL`, e.g. http://127.0.0.1:8080/mep/token (required)")
}

// resolve fills absent keys from the environment and checks that nothing
// required is missing.
func (c *credentials) resolve(getenv func(string) string) error {
	if c.ak == "" {
		c.ak = getenv(envAK)
	}
	if c.sk == "" {
		c.sk = getenv(envSK)
	}
	switch {
	case c.ak == "":
		return fmt.Errorf("no access key: pass --ak or set %s", envAK)
	case c.sk == "":
		return fmt.Errorf("no secret key: pass --sk or set %s", envSK)
	case c.url == "":
		return errors.New("no --url")
	}
	return nil
}

func fail(d deps, err error) int {
	fmt.Fprintf(d.stderr, "kmepctl: %v\n", err)
	return exitFailure
}

// quoteAll quotes each of names for a message.
func quoteAll(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += ", "
		}
		s += strconv.Quote(n)
	}
	return s
}
