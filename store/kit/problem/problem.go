// Package problem turns handler errors into RFC 7807 / ETSI ProblemDetails
// responses: the one error path every kmep HTTP handler goes through.
//
// Handlers return an error; Handler adapts them to http.Handler. A *Error
// carries the status and the detail meant for the client. An error that names
// its own answer (Classified: the store's sentinels, not found → 404,
// conflict → 409, precondition → 412, unavailable → 503 with Retry-After)
// gets that answer; the package imports no domain package. Anything else is logged with its cause
// and answered 500 without internal text.
package problem

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
)

// ContentType is the media type of every error body.
const ContentType = "application/problem+json"

// Details is the ProblemDetails body of MEC 011 (RFC 7807).
type Details struct {
	Type     string `json:"type,omitempty"`
	Title    string `json:"title,omitempty"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Field names the request member that was refused, when one was.
	Field string `json:"field,omitempty"`
}

// Error is an error whose status and detail are meant for the client.
type Error struct {
	Status int
	Detail string
	// Field is the JSON member or parameter that caused the error, if any.
	Field string
	// RetryAfter, when > 0, is sent as a Retry-After header (seconds).
	RetryAfter int
	// Header holds extra response headers (e.g. WWW-Authenticate); may be nil.
	Header http.Header
	// Cause is logged, never shown to the client; may be nil.
	Cause error
}

func (e *Error) Error() string {
	msg := http.StatusText(e.Status) + ": " + e.Detail
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns an *Error with the given status and client-facing detail.
func New(status int, detail string) *Error { return &Error{Status: status, Detail: detail} }

// BadRequest is a 400 naming the offending field.
func BadRequest(field, detail string) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Detail: detail}
}

// Unauthorized is a 401 with a Bearer challenge.
func Unauthorized(detail string) *Error {
	return &Error{Status: http.StatusUnauthorized, Detail: detail,
		Header: http.Header{"Www-Authenticate": {`Bearer realm="kmep"`}}}
}

// Forbidden is a 403.
func Forbidden(detail string) *Error { return New(http.StatusForbidden, detail) }

// NotFound is a 404.
func NotFound(detail string) *Error { return New(http.StatusNotFound, detail) }

// Unavailable is a 503 with Retry-After for a dependency that did not
// answer (what: "object storage", "the MEC host's cluster"); cause is
// logged.
func Unavailable(what string, retryAfter int, cause error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Detail: what + " is unavailable; retry later",
		RetryAfter: retryAfter, Cause: cause}
}

// HandlerFunc is an HTTP handler that may fail.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler adapts fn to http.Handler, writing any returned error with Write.
func Handler(log *slog.Logger, fn HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			Write(log, w, r, err)
		}
	})
}

// Write answers err as a ProblemDetails. It never leaks the text of an
// unexpected error to the client.
func Write(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	pe := From(err)
	if pe.Status >= 500 && log != nil {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", pe.Status, "err", err)
	} else if log != nil && pe.Status >= 400 {
		// A refusal is the client's business but an operator's question
		// ("why 403?"): logged at info with the reason the client got, and
		// the cause when there is one. Details never carry secrets.
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", pe.Status, "reason", pe.Detail}
		if pe.Cause != nil {
			attrs = append(attrs, "err", pe.Cause)
		}
		log.Info("request refused", attrs...)
	}
	h := w.Header()
	for k, v := range pe.Header {
		h[k] = v
	}
	if pe.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(pe.RetryAfter))
	}
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(pe.Status)
	body, _ := json.Marshal(Details{
		Title:    http.StatusText(pe.Status),
		Status:   pe.Status,
		Detail:   pe.Detail,
		Instance: r.URL.Path,
		Field:    pe.Field,
	})
	_, _ = w.Write(body)
}

// Classified is an error that names the answer it stands for, such as the
// store's sentinels. It may also have a RetryAfterSeconds() int method
// (Retry-After, in seconds, when > 0).
type Classified interface {
	error
	// HTTPStatus is the answer's status; outside 400–599 it names none.
	HTTPStatus() int
	// ClientDetail is the detail the client is shown.
	ClientDetail() string
}

// From classifies err into the *Error the client will see.
func From(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	var mbe *http.MaxBytesError
	var c Classified
	switch {
	case errors.As(err, &c) && c.HTTPStatus() >= 400 && c.HTTPStatus() < 600:
		pe := &Error{Status: c.HTTPStatus(), Detail: c.ClientDetail(), Cause: err}
		if r, ok := c.(interface{ RetryAfterSeconds() int }); ok {
			pe.RetryAfter = r.RetryAfterSeconds()
		}
		return pe
	case errors.As(err, &mbe):
		return &Error{Status: http.StatusRequestEntityTooLarge, Detail: "request body exceeds " + strconv.FormatInt(mbe.Limit, 10) + " bytes", Cause: err}
	}
	return &Error{Status: http.StatusInternalServerError, Detail: "internal error", Cause: err}
}
