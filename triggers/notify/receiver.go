package notify

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// MaxEventBytes bounds the body of an event the receiver accepts.
const MaxEventBytes = 1 << 20

// HTTPHandler returns n's CloudEvents HTTP receiver: cloudevents'
// NewHTTPReceiveHandler over n.Handle, behind a guard that answers 400 to
// a request that is not a CloudEvent at all and 413 to a body over
// MaxEventBytes. (Left to itself the sdk answers 415 to a request without
// CloudEvents attributes and 500 to an unparsable structured-mode body; a
// 5xx would make the broker redeliver what can never succeed.) Events the
// sdk parses but finds invalid get its own 400.
func HTTPHandler(ctx context.Context, n *Notifier) (http.Handler, error) {
	p, err := cloudevents.NewHTTP()
	if err != nil {
		return nil, err
	}
	h, err := cloudevents.NewHTTPReceiveHandler(ctx, p, n.Handle)
	if err != nil {
		return nil, err
	}
	return &receiver{next: h, n: n}, nil
}

type receiver struct {
	next http.Handler
	n    *Notifier
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodOptions, http.MethodDelete:
		rc.next.ServeHTTP(w, r) // the sdk answers these itself (405)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxEventBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, "event too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read event: "+err.Error(), http.StatusBadRequest)
		return
	}
	probe := r.Clone(r.Context())
	probe.Body = io.NopCloser(bytes.NewReader(body))
	if _, err := cehttp.NewEventFromHTTPRequest(probe); err != nil {
		rc.n.log.Warn("request refused", "err", err)
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rc.next.ServeHTTP(w, r)
}
