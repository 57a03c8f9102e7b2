package appsupport

import (
	"encoding/json"
	"net/http"

	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// currentTime answers GET timing/current_time with Deps.Now.
func (h *handler) currentTime(w http.ResponseWriter, r *http.Request) error {
	now := h.Now()
	status := "NONTRACEABLE"
	if h.TimeTraceable {
		status = "TRACEABLE"
	}
	body, err := json.Marshal(CurrentTime{Seconds: now.Unix(), NanoSeconds: int64(now.Nanosecond()), TimeSourceStatus: status})
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, body)
}

// timingCaps answers GET timing/timing_caps: the time stamp of now, and
// the NTP servers and PTP masters Deps names (absent when none).
func (h *handler) timingCaps(w http.ResponseWriter, r *http.Request) error {
	now := h.Now()
	body, err := json.Marshal(TimingCaps{
		TimeStamp:  mec.TimeStamp{Seconds: now.Unix(), NanoSeconds: int64(now.Nanosecond())},
		NTPServers: h.NTPServers,
		PTPMasters: h.PTPMasters,
	})
	if err != nil {
		return err
	}
	return rest.WriteJSON(w, http.StatusOK, body)
}
