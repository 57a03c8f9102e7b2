package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Tally is a subscriber's callback server (an http.Handler) for the
// at-least-once tests: it counts the ServiceAvailabilityNotifications
// that reach it per callback and change, TallyKey(path, serInstanceId,
// changeType); the figures of the guarantee are the keys that never
// arrived (lost) and the arrivals beyond the first (duplicates). While
// Failing is set, callbacks under its fail path answer 503 (counted as
// Refusals); a body that is not a notification of one service is a 400.
type Tally struct {
	// Failing makes the callbacks under the fail path answer 503.
	Failing atomic.Bool

	failPath string
	mu       sync.Mutex
	got      map[string]int
	refused  int
}

// NewTally returns a Tally whose callbacks under failPath answer 503 while
// Failing is set.
func NewTally(failPath string) *Tally { return &Tally{got: map[string]int{}, failPath: failPath} }

// TallyKey is the key a Tally counts a notification under.
func TallyKey(path, serInstanceID, changeType string) string {
	return path + " " + serInstanceID + " " + changeType
}

// ServeHTTP counts one notification (or refuses it while failing).
func (ta *Tally) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if strings.HasPrefix(r.URL.Path, ta.failPath) && ta.Failing.Load() {
		ta.mu.Lock()
		ta.refused++
		ta.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var n struct {
		ServiceReferences []struct {
			SerInstanceID string `json:"serInstanceId"`
			ChangeType    string `json:"changeType"`
		} `json:"serviceReferences"`
	}
	if err := json.Unmarshal(body, &n); err != nil || len(n.ServiceReferences) != 1 {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ref := n.ServiceReferences[0]
	ta.mu.Lock()
	ta.got[TallyKey(r.URL.Path, ref.SerInstanceID, ref.ChangeType)]++
	ta.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Count returns how many of want arrived, the missing ones, and the
// duplicate arrivals (over all keys).
func (ta *Tally) Count(want []string) (arrived int, missing []string, dups int) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for _, k := range want {
		if ta.got[k] == 0 {
			missing = append(missing, k)
		} else {
			arrived++
		}
	}
	for _, n := range ta.got {
		dups += max(n-1, 0)
	}
	return arrived, missing, dups
}

// Refusals is how many notifications were answered 503.
func (ta *Tally) Refusals() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.refused
}
