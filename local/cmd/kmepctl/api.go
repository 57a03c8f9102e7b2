package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// platformFlags are the flags of the commands that read the platform.
type platformFlags struct {
	server, token, tokenFile string
}

// api reads the platform's APIs as its admin.
type api struct {
	base   string
	token  string
	client *http.Client
}

// resolve picks the platform URL and the admin token: --server, else
// $KMEP_URL, else the all-in-one's address; --token, else
// $KMEP_ADMIN_TOKEN, else --token-file's content, else the all-in-one's
// token file when it exists.
func (p *platformFlags) resolve(d deps) (api, error) {
	a := api{base: p.server, token: p.token, client: d.client}
	if a.base == "" {
		a.base = d.getenv(envURL)
	}
	if a.base == "" {
		a.base = defaultServer
	}
	u, err := parseEndpoint(a.base)
	if err != nil {
		return api{}, usageError{fmt.Errorf("--server: %w", err)}
	}
	a.base = strings.TrimSuffix(u.String(), "/")
	if a.token == "" {
		a.token = d.getenv(envAdminToken)
	}
	if a.token == "" {
		file := p.tokenFile
		if file == "" {
			file = defaultTokenFile
		}
		b, err := os.ReadFile(file)
		switch {
		case err == nil:
			a.token = strings.TrimSpace(string(b))
		case p.tokenFile != "" || !errors.Is(err, os.ErrNotExist):
			return api{}, fmt.Errorf("admin token: %w", err)
		}
	}
	if a.token == "" {
		return api{}, usagef("no admin token: pass --token or --token-file, or set %s (the all-in-one keeps it in %s)", envAdminToken, defaultTokenFile)
	}
	return a, nil
}

// maxAnswer bounds how much of an API answer is read.
const maxAnswer = 64 << 20

// apiError is a non-2xx answer: the request, the status and the
// ProblemDetails' detail when there was one.
type apiError struct {
	method, path string
	status       int
	detail       string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	if e.detail != "" {
		msg += ": " + e.detail
	}
	return msg
}

// errNoEndpoint is the error of a list the platform does not serve.
var errNoEndpoint = errors.New("the platform does not serve this endpoint")

// get GETs path and decodes its JSON answer into v.
func (a api) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	res, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		e := &apiError{method: http.MethodGet, path: path, status: res.StatusCode}
		var pd struct {
			Detail string `json:"detail"`
		}
		if json.Unmarshal(body, &pd) == nil {
			e.detail = pd.Detail
		}
		return e
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return nil
}

// list GETs a collection. A 404 or 405 means the platform has no such
// list (a router answers an unknown path 404 "no such resource"); a 401 or
// 403 with the admin token means the API does not let the admin read it.
// Both errors name the endpoint.
func (a api) list(ctx context.Context, path string, v any) error {
	err := a.get(ctx, path, v)
	ae, ok := errors.AsType[*apiError](err)
	if !ok {
		return err
	}
	switch ae.status {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("%w: GET %s answered %d (%s): this platform has no such list yet", errNoEndpoint, path, ae.status, orText(ae.detail, http.StatusText(ae.status)))
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: GET %s refused the token (%d: %s): the admin token is wrong, or this platform does not let the admin read this API", errNoEndpoint, path, ae.status, orText(ae.detail, http.StatusText(ae.status)))
	}
	return err
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
