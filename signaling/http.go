// Package signaling is the server's network edge: the HTTP listener, health
// endpoints, and (with the room protocol) the WebSocket signaling of
// PROTOCOL.md. It knows messages, not mediasoup internals.
package signaling

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mediasoup-server/mediasoup-server/internal/syncutil"
	"github.com/mediasoup-server/mediasoup-server/room"
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
	Rooms   *room.Manager // nil: no WebSocket endpoint
	Limits  Limits        // per-connection limits; zero fields take DefaultLimits
	Logger  *zap.Logger
	Version string // mediasoup worker version: /healthz and the mediasoup-version notification
	WebDir  string // static web client served at / ("" or missing: a one-line text answer)
}

// Handler is the server's HTTP handler.
type Handler struct {
	http.Handler
	sessions sync.WaitGroup // peer connections not yet fully closed
}

// Wait blocks until every peer connection has ended and released its peer,
// or ctx ends. Shut down in this order: stop accepting, close the rooms,
// Wait here, wait for the rooms (room.Manager.Wait), then close the pool.
func (h *Handler) Wait(ctx context.Context) error {
	return syncutil.Wait(ctx, &h.sessions)
}

// NewHandler returns the server's HTTP handler: the WebSocket room protocol
// at /?roomId=&peerId=, and /healthz.
func NewHandler(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	h := &Handler{}
	mux := http.NewServeMux()
	h.Handler = mux
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeHealth(w, opts)
	})
	var web http.Handler
	if st, err := os.Stat(opts.WebDir); opts.WebDir != "" && err == nil && st.IsDir() {
		web = http.FileServer(http.Dir(opts.WebDir))
	} else if opts.WebDir != "" {
		opts.Logger.Warn("web client not found: run `make web` to build it", zap.String("dir", opts.WebDir))
	}
	var ws http.Handler
	if opts.Rooms != nil {
		mountBroadcasters(mux, opts)
		ws = NewWebSocketHandler(h.acceptPeer(opts), opts.Limits, opts.Logger)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if ws != nil && (r.URL.Query().Has("roomId") || r.URL.Query().Has("peerId") || websocket.IsWebSocketUpgrade(r)) {
			ws.ServeHTTP(w, r)
			return
		}
		if web != nil {
			web.ServeHTTP(w, r)
			return
		}
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "mediasoup-server: connect a protoo client to ws(s)://"+r.Host+"/?roomId=ROOM&peerId=PEER\n")
	})
	return h
}

// acceptPeer admits a connecting peer into its room.
func (h *Handler) acceptPeer(opts Options) AcceptFunc {
	log := opts.Logger
	return func(c *Conn, roomID, peerID string, r *http.Request) (Session, error) {
		// First frame on the socket, before any response (PROTOCOL.md §1).
		_ = c.Notify("mediasoup-version", map[string]string{"version": opts.Version})
		p, err := opts.Rooms.Connect(r.Context(), roomID, peerID, c)
		if err != nil {
			return nil, err
		}
		h.sessions.Add(1)
		return &session{conn: c, rooms: opts.Rooms, peer: p, release: h.sessions.Done,
			log: log.With(zap.String("room", roomID), zap.String("peer", peerID))}, nil
	}
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
