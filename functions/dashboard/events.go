package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kmep-io/kmep/store"
)

// changeView is one change as the change stream's events carry it: what
// changed, never the record's data (an app configuration's change must not
// carry anything secret).
type changeView struct {
	Kind          string `json:"kind"`
	Type          string `json:"type"`
	AppInstanceID string `json:"appInstanceId,omitempty"`
	ID            string `json:"id,omitempty"`
	State         string `json:"state,omitempty"`
}

func changeOf(c store.Change) changeView {
	v := changeView{Kind: c.Kind, Type: c.Type, AppInstanceID: c.AppInstanceID, ID: c.ID, State: c.State}
	if c.Kind == store.KindService {
		v.ID, v.State = c.Service.ID, c.Service.State
	}
	return v
}

// events answers GET events: the store's change stream as server-sent
// events ("event: change", the stream id as the event id, a changeView as
// data), from the changes after Last-Event-ID when it names one, else from
// now. A comment every KeepAlive keeps proxies from closing an idle
// stream. The stream ends with the request, when Stop closes, or after an
// error reading the store (an "event: error" first; clients reconnect).
func (h *handler) events(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	after := r.Header.Get("Last-Event-ID")
	if after == "" || !validStreamID(after) {
		last, err := h.Store.LastChangeID(ctx)
		if err != nil {
			return err
		}
		after = last
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "retry: 1000\n: changes after %s\n\n", after); err != nil {
		return nil
	}
	_ = rc.Flush()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.Stop:
			return nil
		default:
		}
		block := h.KeepAlive
		if h.Stop != nil && block > time.Second {
			block = time.Second // notice Stop within a second
		}
		cs, err := h.Store.ReadChanges(ctx, after, 100, block)
		if err != nil {
			if ctx.Err() == nil {
				h.Log.Warn("change stream read", "err", err)
				fmt.Fprintf(w, "event: error\ndata: {\"detail\":\"the store is unavailable\"}\n\n")
				_ = rc.Flush()
			}
			return nil
		}
		_ = rc.SetWriteDeadline(time.Now().Add(h.KeepAlive + 10*time.Second))
		if len(cs) == 0 {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
		}
		for _, c := range cs {
			b, _ := json.Marshal(changeOf(c))
			if _, err := fmt.Fprintf(w, "id: %s\nevent: change\ndata: %s\n\n", c.StreamID, b); err != nil {
				return nil
			}
			after = c.StreamID
		}
		_ = rc.Flush()
	}
}

// validStreamID reports whether s is a complete Redis stream id
// ("<ms>-<seq>", both decimal).
func validStreamID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	return ok && digits(ms) && digits(seq) && len(ms) <= 20 && len(seq) <= 20
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
