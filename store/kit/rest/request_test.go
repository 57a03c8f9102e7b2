package rest_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// failingReader fails after its data, with err (nil: io.ErrUnexpectedEOF).
type failingReader struct {
	data string
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.data == "" {
		if f.err != nil {
			return 0, f.err
		}
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReadBody(t *testing.T) {
	tests := []struct {
		name   string
		body   io.Reader
		want   string
		status int    // 0: read
		field  string // of a 400
	}{
		{name: "empty", body: strings.NewReader(""), want: ""},
		{name: "under the limit", body: strings.NewReader("abc"), want: "abc"},
		{name: "at the limit", body: strings.NewReader("0123456789"), want: "0123456789"},
		{name: "over the limit", body: strings.NewReader("0123456789x"), status: http.StatusRequestEntityTooLarge},
		{name: "broken body", body: &failingReader{data: "ab"}, status: http.StatusBadRequest, field: "body"},
		{name: "body past its read deadline", body: &failingReader{data: "ab", err: fmt.Errorf("read tcp: %w", os.ErrDeadlineExceeded)}, status: http.StatusRequestTimeout, field: "body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", tc.body)
			got, err := rest.ReadBody(httptest.NewRecorder(), r, 10)
			if tc.status == 0 {
				if err != nil || string(got) != tc.want {
					t.Fatalf("ReadBody = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadBody = %q, want an error", got)
			}
			pe := problem.From(err)
			if pe.Status != tc.status || pe.Field != tc.field {
				t.Errorf("answered %d field %q, want %d field %q (%v)", pe.Status, pe.Field, tc.status, tc.field, err)
			}
			var mbe *http.MaxBytesError
			if tooLarge := errors.As(err, &mbe); tooLarge != (tc.status == http.StatusRequestEntityTooLarge) {
				t.Errorf("*http.MaxBytesError = %v for status %d", tooLarge, tc.status)
			}
			if tc.status == http.StatusRequestTimeout && pe.Header.Get("Connection") != "close" {
				t.Errorf("408 without Connection: close")
			}
		})
	}
}

// TestReadBodyContentType: a JSON endpoint reads application/json (with
// parameters, a UTF-8 charset) and a body without Content-Type; any other
// declared type is a 415 naming Content-Type, before the body is read.
func TestReadBodyContentType(t *testing.T) {
	tests := []struct {
		name, ct string
		body     string
		status   int // 0: read
	}{
		{name: "application/json", ct: "application/json", body: "{}"},
		{name: "with charset", ct: "application/json; charset=utf-8", body: "{}"},
		{name: "upper-case charset", ct: "application/json;charset=UTF-8", body: "{}"},
		{name: "upper-case type", ct: "Application/JSON", body: "{}"},
		{name: "other parameter", ct: "application/json; profile=mec", body: "{}"},
		{name: "absent", body: "{}"},
		{name: "empty body of another type", ct: "text/plain", body: ""},
		{name: "text/plain", ct: "text/plain", body: "{}", status: 415},
		{name: "form", ct: "application/x-www-form-urlencoded", body: "{}", status: 415},
		{name: "multipart", ct: "multipart/form-data; boundary=x", body: "{}", status: 415},
		{name: "xml", ct: "application/xml", body: "{}", status: 415},
		{name: "problem+json", ct: "application/problem+json", body: "{}", status: 415},
		{name: "json prefix", ct: "application/jsonx", body: "{}", status: 415},
		{name: "latin-1 charset", ct: "application/json; charset=iso-8859-1", body: "{}", status: 415},
		{name: "malformed", ct: "application/json; =", body: "{}", status: 415},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingReader{r: strings.NewReader(tc.body)}
			r := httptest.NewRequest("POST", "/", body)
			r.ContentLength = int64(len(tc.body))
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			got, err := rest.ReadBody(httptest.NewRecorder(), r, 100)
			if tc.status == 0 {
				if err != nil || string(got) != tc.body {
					t.Fatalf("ReadBody = %q, %v; want %q", got, err, tc.body)
				}
				return
			}
			pe := problem.From(err)
			if pe.Status != tc.status || pe.Field != "Content-Type" || pe.Header.Get("Accept") != "application/json" {
				t.Fatalf("answered %d field %q Accept %q (%v), want %d naming Content-Type", pe.Status, pe.Field, pe.Header.Get("Accept"), err, tc.status)
			}
			if body.n != 0 {
				t.Errorf("read %d bytes of a refused body", body.n)
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestIfMatch(t *testing.T) {
	tests := []struct {
		header string
		want   int64
	}{
		{"", 0},
		{"*", 0},
		{" * ", 0},
		{`"7"`, 7},
		{`W/"7"`, 7},
		{"7", 7},
		{` "12" `, 12},
		{`"0"`, -1},
		{`"-3"`, -1},
		{`"abc"`, -1},
		{`"7", "8"`, -1},
		{rest.ETag(42), 42},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/", nil)
			if tc.header != "" {
				r.Header.Set("If-Match", tc.header)
			}
			if got := rest.IfMatch(r); got != tc.want {
				t.Fatalf("IfMatch(%q) = %d, want %d", tc.header, got, tc.want)
			}
		})
	}
}

func TestBadField(t *testing.T) {
	other := errors.New("boom")
	tests := []struct {
		name  string
		err   error
		want  error // nil: a 400 naming field
		field string
	}{
		{name: "field error", err: &mec.FieldError{Field: "serName", Reason: "is required"}, field: "serName"},
		{name: "wrapped field error", err: errors.Join(errors.New("decode"), &mec.FieldError{Field: "state", Reason: "bad"}), field: "state"},
		{name: "other error", err: other, want: other},
		{name: "nil", err: nil, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rest.BadField(tc.err)
			if tc.field == "" {
				if got != tc.want {
					t.Fatalf("BadField(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			var pe *problem.Error
			if !errors.As(got, &pe) || pe.Status != http.StatusBadRequest || pe.Field != tc.field || pe.Detail == "" {
				t.Fatalf("BadField(%v) = %#v, want a 400 naming %q", tc.err, got, tc.field)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("ETag", rest.ETag(3))
	if err := rest.WriteJSON(rec, http.StatusCreated, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusCreated || rec.Body.String() != `{"a":1}` ||
		rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("ETag") != `"3"` {
		t.Fatalf("got %d %q %v", rec.Code, rec.Body, rec.Header())
	}
}

func TestAbsolute(t *testing.T) {
	tests := []struct {
		name, forwarded string
		tls             bool
		want            string
	}{
		{name: "plain", want: "http://mep.example:8080/x/1"},
		{name: "TLS", tls: true, want: "https://mep.example:8080/x/1"},
		{name: "behind a TLS proxy", forwarded: "https", want: "https://mep.example:8080/x/1"},
		{name: "proxy says http", forwarded: "http", tls: true, want: "http://mep.example:8080/x/1"},
		{name: "unknown forwarded scheme ignored", forwarded: "gopher", want: "http://mep.example:8080/x/1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://mep.example:8080/x", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.forwarded != "" {
				r.Header.Set("X-Forwarded-Proto", tc.forwarded)
			}
			if got := rest.Absolute(r, "/x/1"); got != tc.want {
				t.Fatalf("Absolute = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := rest.NewID()
		if !uuid4.MatchString(id) {
			t.Fatalf("NewID() = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}
