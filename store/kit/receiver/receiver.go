// Package receiver is the HTTP receiver of kmep's CloudEvents triggers
// (notify, installer, deadletter): it reads one event per request (binary
// or structured mode), hands it to the trigger's function in the request's
// goroutine, and answers with the function's result.
//
// It replaces cloudevents' client.NewHTTPReceiveHandler, which hands each
// request across one channel shared by all requests to a goroutine of its
// own: when a request ends early (its client gave up) that goroutine may
// return without taking a message, and another request's then waits for
// ever (cloudevents/sdk-go#1224, open; seen here as a notify request that
// never returned under concurrent deliveries). The answer is the same as
// the sdk's: the status of a cehttp.Result (its message as the body), 200
// for an ACK, 400 for an event that fails the CloudEvents validation, 500
// for any other error.
//
// Before the function, it refuses what the sdk would answer oddly: a body
// over Options.MaxBytes is a 413, a request that is not a CloudEvent at
// all a 400 (the sdk answers 415 or 500, and a 5xx makes a broker
// redeliver what can never succeed). GET, OPTIONS and DELETE are 405.
package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// DefaultMaxBytes bounds an event's body when Options.MaxBytes is zero.
const DefaultMaxBytes = 1 << 20

// Func handles one event; its result is the answer (see the package
// documentation).
type Func func(context.Context, cloudevents.Event) protocol.Result

// Options configure a receiver.
type Options struct {
	// MaxBytes bounds the body of a request. Zero value: DefaultMaxBytes.
	MaxBytes int64
	// Log gets a warning per request refused before fn. Zero value:
	// nothing is logged.
	Log *slog.Logger
}

// New returns the receiver of fn.
func New(fn Func, o Options) http.Handler {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &handler{fn: fn, o: o}
}

type handler struct {
	fn Func
	o  Options
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "a CloudEvent is POSTed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, "event too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read event: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	e, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		h.o.Log.Warn("request refused", "err", err)
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := e.Validate(); err != nil {
		h.o.Log.Warn("event refused", "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status, msg := answer(h.fn(r.Context(), *e))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// answer maps a result to a status and body as the sdk's receiver does.
func answer(res protocol.Result) (int, string) {
	var hr *cehttp.Result
	switch {
	case protocol.ResultAs(res, &hr):
		status := http.StatusOK
		if hr.StatusCode > 100 && hr.StatusCode < 600 {
			status = hr.StatusCode
		}
		return status, fmt.Sprintf(hr.Format, hr.Args...)
	case protocol.IsACK(res):
		return http.StatusOK, ""
	}
	return http.StatusInternalServerError, res.Error()
}
