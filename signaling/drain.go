package signaling

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mediasoup-server/mediasoup-server/worker"
)

// Drain starts draining: from now on /readyz answers 503, new WebSocket
// upgrades and new broadcasters get HTTP 503, and join requests on open
// connections the protocol error 503. Peers already in rooms go on as
// before; closing them (room.Manager.CloseAll) is the caller's next step,
// after a grace period. Drain cannot be undone; calling it again does
// nothing.
func (h *Handler) Drain() { h.draining.Store(true) }

// Draining reports whether Drain was called.
func (h *Handler) Draining() bool { return h.draining.Load() }

var errDraining = Errorf(http.StatusServiceUnavailable, "server is shutting down: connect to another server")

type readyBody struct {
	Status   string    `json:"status"` // "ready" or "not ready"
	Draining bool      `json:"draining"`
	Reasons  []string  `json:"reasons,omitempty"`
	Time     time.Time `json:"time"`
}

// writeReady answers 200 when every worker is alive and the server is not
// draining, 503 with the reasons otherwise.
func (h *Handler) writeReady(w http.ResponseWriter, opts Options) {
	body := readyBody{Status: "ready", Draining: h.Draining(), Time: time.Now().UTC()}
	if body.Draining {
		body.Reasons = append(body.Reasons, "draining: the server is shutting down")
	}
	if err := h.placement.Ready(); err != nil {
		body.Reasons = append(body.Reasons, "cluster: "+err.Error())
	}
	infos := opts.Workers.Infos()
	if len(infos) == 0 {
		body.Reasons = append(body.Reasons, "no workers")
	}
	for _, in := range infos {
		if in.State != worker.StateAlive {
			body.Reasons = append(body.Reasons, fmt.Sprintf("worker %d is %s", in.Index, in.State))
		}
	}
	code := http.StatusOK
	if len(body.Reasons) > 0 {
		body.Status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}
