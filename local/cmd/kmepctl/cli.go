package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// envAK and envSK name the environment variables that stand in for --ak and
// --sk.
const (
	envAK = "KMEP_AK"
	envSK = "KMEP_SK"
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
	// client sends the token request; its Timeout is overridden by --timeout.
	client *http.Client
}

const usage = `usage:
  kmepctl keygen
  kmepctl sign  --ak AK --sk SK --url URL [--method POST] [--body STRING]
  kmepctl token --ak AK --sk SK --url URL [--timeout 10s]
  kmepctl csar  [--name demo] > demo.csar    (a small valid app package)

--ak and --sk default to $KMEP_AK and $KMEP_SK.
`

// run runs the command line args (without the program name) and returns the
// process exit code.
func run(ctx context.Context, args []string, d deps) int {
	if len(args) == 0 {
		fmt.Fprint(d.stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "keygen":
		return runKeygen(args[1:], d)
	case "sign":
		return runSign(args[1:], d)
	case "token":
		return runToken(ctx, args[1:], d)
	case "csar":
		return runCSAR(args[1:], d)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(d.stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(d.stderr, "kmepctl: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
}

func runKeygen(args []string, d deps) int {
	fs := newFlagSet("keygen", d)
	if code, done := parse(fs, args); done {
		return code
	}
	ak, sk, err := generateKeys(d.rand)
	if err != nil {
		return fail(d, err)
	}
	fmt.Fprintf(d.stdout, "AK=%s\nSK=%s\n", ak, sk)
	return exitOK
}

func runSign(args []string, d deps) int {
	fs := newFlagSet("sign", d)
	c := addCredentialFlags(fs)
	method := fs.String("method", http.MethodPost, "HTTP `method` curl will send (curl -X)")
	body := fs.String("body", "", "request `body` curl will send (curl --data-raw)")
	if code, done := parse(fs, args); done {
		return code
	}
	if err := c.resolve(d.getenv); err != nil {
		return usageError(d, fs, err)
	}
	date, auth, err := signForCurl(*method, c.url, []byte(*body), c.ak, []byte(c.sk), d.now())
	if err != nil {
		return fail(d, err)
	}
	fmt.Fprintf(d.stdout, "KMEP_SDK_DATE=%s\nKMEP_AUTHORIZATION=%s\n", shellQuote(date), shellQuote(auth))
	return exitOK
}

func runToken(ctx context.Context, args []string, d deps) int {
	fs := newFlagSet("token", d)
	c := addCredentialFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this `duration`")
	if code, done := parse(fs, args); done {
		return code
	}
	if err := c.resolve(d.getenv); err != nil {
		return usageError(d, fs, err)
	}
	client := *d.client
	client.Timeout = *timeout
	tok, err := fetchToken(ctx, &client, c.url, c.ak, []byte(c.sk), d.now())
	if err != nil {
		if se, ok := errors.AsType[*statusError](err); ok {
			d.stderr.Write(se.body)
			if len(se.body) == 0 || se.body[len(se.body)-1] != '\n' {
				fmt.Fprintln(d.stderr)
			}
		}
		return fail(d, err)
	}
	fmt.Fprintln(d.stdout, tok)
	return exitOK
}

// credentials are the flags sign and token share.
type credentials struct {
	ak, sk, url string
}

func addCredentialFlags(fs *flag.FlagSet) *credentials {
	c := &credentials{}
	fs.StringVar(&c.ak, "ak", "", "access `key` (default $"+envAK+")")
	fs.StringVar(&c.sk, "sk", "", "secret `key` (default $"+envSK+")")
	fs.StringVar(&c.url, "url", "", "token endpoint `URL`, e.g. http://127.0.0.1:8080/mep/token (required)")
	return c
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

func newFlagSet(name string, d deps) *flag.FlagSet {
	fs := flag.NewFlagSet("kmepctl "+name, flag.ContinueOnError)
	fs.SetOutput(d.stderr)
	return fs
}

// parse parses args into fs. done reports that the command should stop with
// code: after -h, a bad flag, or a stray argument.
func parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true // fs has printed the error and the usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage, true
	}
	return exitOK, false
}

func usageError(d deps, fs *flag.FlagSet, err error) int {
	fmt.Fprintf(d.stderr, "%s: %v\n", fs.Name(), err)
	fs.Usage()
	return exitUsage
}

func fail(d deps, err error) int {
	fmt.Fprintf(d.stderr, "kmepctl: %v\n", err)
	return exitFailure
}
