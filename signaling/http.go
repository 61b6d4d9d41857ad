// Package signaling is the server's network edge: the HTTP listener, health
// endpoints, and (with the room protocol) the WebSocket signaling of
// PROTOCOL.md. It knows messages, not mediasoup internals.
package signaling

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// Workers is what the edge needs to know of the worker pool.
type Workers interface {
	Infos() []worker.Info
}

// Options configure the HTTP handler.
type Options struct {
	Workers Workers
	Logger  *zap.Logger
	Version string // mediasoup worker version, reported by /healthz
}

// NewHandler returns the server's HTTP handler.
func NewHandler(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeHealth(w, opts)
	})
	return mux
}

type healthWorker struct {
	Index     int          `json:"index"`
	Pid       int          `json:"pid"`
	State     worker.State `json:"state"`
	RtcPort   int          `json:"rtcPort"`
	Restarts  int          `json:"restarts"`
	Routers   int64        `json:"routers"`
	LastError string       `json:"lastError,omitempty"`
}

type healthBody struct {
	Status           string         `json:"status"` // "ok" or "degraded"
	MediasoupVersion string         `json:"mediasoupVersion"`
	Time             time.Time      `json:"time"`
	Workers          []healthWorker `json:"workers"`
}

// writeHealth answers 200 when every worker is alive, 503 otherwise, with
// each worker's pid and state either way.
func writeHealth(w http.ResponseWriter, opts Options) {
	body := healthBody{Status: "ok", MediasoupVersion: opts.Version, Time: time.Now().UTC(), Workers: []healthWorker{}}
	for _, in := range opts.Workers.Infos() {
		body.Workers = append(body.Workers, healthWorker{
			Index: in.Index, Pid: in.Pid, State: in.State, RtcPort: in.Port,
			Restarts: in.Restarts, Routers: in.Routers, LastError: in.LastError,
		})
		if in.State != worker.StateAlive {
			body.Status = "degraded"
		}
	}
	if len(body.Workers) == 0 {
		body.Status = "degraded"
	}
	code := http.StatusOK
	if body.Status != "ok" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
