package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
)

// The extensions Knative sets on a dead-lettered event: a redelivery
// sends the event without them, as it was first published.
var errorExtensions = []string{"knativeerrordest", "knativeerrorcode", "knativeerrordata"}

// deadLetterView is one dead letter as the admin API shows it: the
// deadletter trigger's record (type, subject, app, the destination's last
// status and answer, the whole event) under the id that names it.
type deadLetterView struct {
	ID      string          `json:"id"`
	EventID string          `json:"eventId"`
	Record  json.RawMessage `json:"record"`
}

func view(d store.DeadLetter) deadLetterView {
	rec := json.RawMessage(d.Payload)
	if !json.Valid(rec) {
		rec, _ = json.Marshal(string(d.Payload))
	}
	return deadLetterView{ID: d.StreamID, EventID: d.EventID, Record: rec}
}

// deadLetters answers GET dead_letters?limit=N (1..1000, default 100):
// the newest first.
func (h *handler) deadLetters(w http.ResponseWriter, r *http.Request) error {
	n, err := intQuery(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	dls, err := h.Store.ListDeadLetters(r.Context(), n)
	if err != nil {
		return err
	}
	out := make([]deadLetterView, len(dls))
	for i, d := range dls {
		out[i] = view(d)
	}
	return writeJSON(w, out)
}

func (h *handler) get(r *http.Request) (store.DeadLetter, error) {
	d, err := h.Store.GetDeadLetter(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrInvalid):
		return d, problem.BadRequest("id", "a dead letter's id is a stream id such as 1767225600000-0")
	case errors.Is(err, store.ErrNotFound):
		return d, problem.NotFound("no such dead letter (redelivered already?)")
	}
	return d, err
}

func (h *handler) deadLetter(w http.ResponseWriter, r *http.Request) error {
	d, err := h.get(r)
	if err != nil {
		return err
	}
	return writeJSON(w, view(d))
}

// redeliver answers POST dead_letters/{id}/redeliver: the recorded event,
// without Knative's error extensions, goes to the broker again (its
// Triggers route it as the first time; notify skips subscriptions it
// delivered to already); once the broker took it, the dead letter is
// removed. 200 with what was sent; 404 for an unknown id; 422 when the
// record holds no event; 502 when the broker refused, and the dead letter
// stays.
func (h *handler) redeliver(w http.ResponseWriter, r *http.Request) error {
	if h.Sender == nil {
		return problem.New(http.StatusNotImplemented, "redelivery is not configured here (no broker: K_SINK unset)")
	}
	d, err := h.get(r)
	if err != nil {
		return err
	}
	var rec struct {
		Event json.RawMessage `json:"event"`
	}
	var e cloudevents.Event
	if json.Unmarshal(d.Payload, &rec) != nil || len(rec.Event) == 0 || json.Unmarshal(rec.Event, &e) != nil || e.Validate() != nil {
		return &problem.Error{Status: http.StatusUnprocessableEntity, Field: "id", Detail: "this dead letter holds no event that can be sent again"}
	}
	for _, k := range errorExtensions {
		e.SetExtension(k, nil) // nil removes it
	}
	if res := h.Sender.Send(r.Context(), e); !protocol.IsACK(res) {
		return &problem.Error{Status: http.StatusBadGateway, Detail: "the broker did not take the event; the dead letter is kept",
			Cause: fmt.Errorf("redeliver %s: %w", d.StreamID, res)}
	}
	if err := h.Store.DeleteDeadLetter(r.Context(), d.StreamID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("redelivered %s; remove it: %w", d.StreamID, err)
	}
	h.Log.Info("dead letter redelivered", "id", d.StreamID, "event", e.ID(), "type", e.Type())
	return writeJSON(w, map[string]string{"id": d.StreamID, "eventId": e.ID(), "type": e.Type(), "status": "redelivered"})
}
