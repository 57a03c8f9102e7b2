// Package problemtest holds the test assertions for ProblemDetails answers
// and golden JSON files that the handler packages share.
package problemtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/problem"
)

// Want checks an error answer: its status, a ProblemDetails body of
// application/problem+json for the request's path (without the query), and
// the field it names ("" for none). It returns the decoded body.
func Want(t testing.TB, rec *httptest.ResponseRecorder, path string, status int, field string) problem.Details {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("Content-Type = %q, want %q", ct, problem.ContentType)
	}
	var d problem.Details
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatalf("ProblemDetails %s: %v", rec.Body, err)
	}
	if d.Status != status || d.Title != http.StatusText(status) || d.Detail == "" {
		t.Errorf("ProblemDetails = %+v, want status %d with a title and a detail", d, status)
	}
	if p, _, _ := strings.Cut(path, "?"); d.Instance != p {
		t.Errorf("instance = %q, want %q", d.Instance, p)
	}
	if d.Field != field {
		t.Errorf("field = %q, want %q (detail %q)", d.Field, field, d.Detail)
	}
	return d
}

// Golden compares a JSON body with testdata/<name>.json as JSON values.
func Golden(t testing.TB, name string, body []byte) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var got, exp any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if err := json.Unmarshal(want, &exp); err != nil {
		t.Fatalf("golden %s: %v", name, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("body = %s\nwant (testdata/%s.json) %s", body, name, want)
	}
}
