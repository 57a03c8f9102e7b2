package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kmep-io/kmep/store/kit/aksk"
)

// maxResponseBody bounds how much of the token endpoint's answer is read.
const maxResponseBody = 1 << 20

// tokenSignedHeaders are the headers a token request signs besides
// x-sdk-date, as EdgeGallery's mep-agent does.
var tokenSignedHeaders = []string{"content-type", "host"}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// statusError is a non-2xx answer from the token endpoint.
type statusError struct {
	code int
	body []byte
}

func (e *statusError) Error() string {
	return fmt.Sprintf("token endpoint answered %d %s", e.code, http.StatusText(e.code))
}

// fetchToken POSTs a signed, empty token request to rawURL, the way
// EdgeGallery's mep-agent does, and returns the access token. A non-2xx
// answer is a *statusError carrying the body.
func fetchToken(ctx context.Context, client *http.Client, rawURL, ak string, sk []byte, now time.Time) (string, error) {
	u, err := parseEndpoint(rawURL)
	if err != nil {
		return "", err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	if err != nil {
		return "", fmt.Errorf("build token request: %w", err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	if err := aksk.Sign(r, nil, ak, sk, tokenSignedHeaders, now); err != nil {
		return "", err
	}

	resp, err := client.Do(r)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return "", fmt.Errorf("read token response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", &statusError{code: resp.StatusCode, body: body}
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("decode token response: %w", err)
	}
	if tr.AccessToken == "" {
		return "", errors.New("token response has no access_token")
	}
	if strings.ContainsAny(tr.AccessToken, " \t\r\n") {
		return "", errors.New("token response has an access_token with white space")
	}
	return tr.AccessToken, nil
}
