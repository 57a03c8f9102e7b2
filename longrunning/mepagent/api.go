package mepagent

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kmep-io/kmep/store/kit/problem"
)

// Paths of the agent's API (EdgeGallery's).
const (
	// TokenPath answers the current token.
	TokenPath = "/mep-agent/v1/token"
	// EndpointPath answers the endpoint of a service, by serName.
	EndpointPath = "/mep-agent/v1/endpoint/"
)

// Handler is the agent's API, as EdgeGallery's mep-agent serves it to the
// app in its pod:
//
//   - GET /mep-agent/v1/token: 200 with the current token
//     ({"access_token","token_type","expires_in"}, expires_in being what is
//     left of its lifetime), 412 before the first token;
//   - GET /mep-agent/v1/endpoint/{serName}: the transportInfo.endpoint of
//     the first service of that name the platform's discovery answers (an
//     ACTIVE one first), 404 when there is none, 503 before the first
//     token, 502 when the platform cannot answer.
//
// Errors are ProblemDetails. Run serves it, with GET /healthz, on
// Config.Addr.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+TokenPath, problem.Handler(a.log, a.getToken))
	mux.Handle("GET "+EndpointPath+"{serName}", problem.Handler(a.log, a.getEndpoint))
	mux.Handle("/", problem.Handler(a.log, func(http.ResponseWriter, *http.Request) error {
		return problem.NotFound("no such resource")
	}))
	return mux
}

func (a *Agent) getToken(w http.ResponseWriter, _ *http.Request) error {
	tok, expires, ok := a.tokens.current()
	if !ok {
		return problem.New(http.StatusPreconditionFailed, "the first token has not been received from the platform yet")
	}
	tok.ExpiresIn = max(0, int(time.Until(expires)/time.Second))
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, tok)
}

func (a *Agent) getEndpoint(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("serName")
	if strings.TrimSpace(name) == "" || strings.ContainsAny(name, ",\x00") {
		return problem.BadRequest("serName", "serName must be one non-empty service name")
	}
	tok, _, ok := a.tokens.current()
	if !ok {
		return &problem.Error{Status: http.StatusServiceUnavailable, RetryAfter: 1,
			Detail: "the first token has not been received from the platform yet"}
	}
	_, body, err := a.call(r.Context(), http.MethodGet, a.url(discoveryPath+"?ser_name="+url.QueryEscape(name)), tok.AccessToken, nil)
	var se *StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return problem.NotFound("no service named " + name)
	case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
		a.tokens.reject(tok.AccessToken)
		return &problem.Error{Status: http.StatusServiceUnavailable, RetryAfter: 1, Cause: err,
			Detail: "the platform refused the token; it is being renewed"}
	case errors.As(err, &se) && se.Status == http.StatusBadRequest:
		return &problem.Error{Status: http.StatusBadRequest, Field: "serName", Cause: err,
			Detail: "the platform refused the query: " + se.Detail}
	case err != nil:
		return &problem.Error{Status: http.StatusBadGateway, RetryAfter: 1, Cause: err,
			Detail: "the platform's service discovery did not answer"}
	}
	var found []struct {
		State         string `json:"state"`
		TransportInfo *struct {
			Endpoint json.RawMessage `json:"endpoint"`
		} `json:"transportInfo"`
	}
	if err := json.Unmarshal(body, &found); err != nil {
		return &problem.Error{Status: http.StatusBadGateway, Cause: err,
			Detail: "the platform's service discovery answered something else than a list of services"}
	}
	var endpoint json.RawMessage
	for _, s := range found {
		if s.TransportInfo == nil || len(s.TransportInfo.Endpoint) == 0 || string(s.TransportInfo.Endpoint) == "null" {
			continue
		}
		if endpoint == nil {
			endpoint = s.TransportInfo.Endpoint
		}
		if s.State == "ACTIVE" {
			endpoint = s.TransportInfo.Endpoint
			break
		}
	}
	if endpoint == nil {
		return problem.NotFound("no service named " + name)
	}
	return writeJSON(w, endpoint)
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(b)
	return err
}
