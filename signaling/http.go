// Package signaling is the server's network edge: the HTTP listener, health
// endpoints, and (with the room protocol) the WebSocket signaling of
// PROTOCOL.md. It knows messages, not mediasoup internals.
package signaling

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mediasoup-server/mediasoup-server/cluster"
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
	// Auth, when not nil, requires tokens (see Claims): ?token= on the
	// WebSocket, "Authorization: Bearer" on the broadcaster API and /admin/.
	// A refused request gets 401 (403: a valid token that does not grant
	// it) with a one-line reason, before any upgrade.
	Auth *Auth
	// Pprof serves Go's profiler under /debug/pprof/ (behind an admin
	// token when Auth is on). Off by default.
	Pprof bool
	// Placement says which node owns a room (cluster mode); nil: one node,
	// every room here (cluster.Local).
	Placement cluster.Placement
}

// Handler is the server's HTTP handler.
type Handler struct {
	http.Handler
	sessions  sync.WaitGroup // peer connections not yet fully closed
	draining  atomic.Bool
	metrics   *metrics
	placement cluster.Placement
	relayed   relayedConns // edge: connections relayed to other nodes
}

// Wait blocks until every peer connection has ended and released its peer,
// or ctx ends. Shut down in this order: stop accepting, close the rooms,
// Wait here, wait for the rooms (room.Manager.Wait), then close the pool.
func (h *Handler) Wait(ctx context.Context) error {
	return syncutil.Wait(ctx, &h.sessions)
}

// NewHandler returns the server's HTTP handler: the WebSocket room protocol
// at /?roomId=&peerId=, the broadcaster API under /rooms/, /healthz (alive),
// /readyz (ready for new peers), /metrics (Prometheus), /admin/rooms, and
// the static web client.
func NewHandler(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Placement == nil {
		opts.Placement = &cluster.Local{}
	}
	h := &Handler{placement: opts.Placement}
	h.metrics = newMetrics(opts, h.Draining)
	mux := http.NewServeMux()
	h.Handler = mux
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeHealth(w, opts)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		h.writeReady(w, opts)
	})
	mux.Handle("GET /metrics", h.metrics.handler())
	mux.HandleFunc("GET /admin/rooms", func(w http.ResponseWriter, r *http.Request) {
		if err := opts.Auth.checkAdmin(r); err != nil {
			refuse(w, err)
			return
		}
		h.writeAdminRooms(w, opts.Rooms)
	})
	mux.HandleFunc("GET /admin/cluster", func(w http.ResponseWriter, r *http.Request) {
		if err := opts.Auth.checkAdmin(r); err != nil {
			refuse(w, err)
			return
		}
		h.writeAdminCluster(w, r)
	})
	if opts.Pprof {
		mux.Handle("/debug/pprof/", pprofHandler(opts.Auth))
	}
	var web http.Handler
	if st, err := os.Stat(opts.WebDir); opts.WebDir != "" && err == nil && st.IsDir() {
		web = http.FileServer(http.Dir(opts.WebDir))
	} else if opts.WebDir != "" {
		opts.Logger.Warn("web client not found: run `make web` to build it", zap.String("dir", opts.WebDir))
	}
	var ws http.Handler
	if opts.Rooms != nil {
		// The broadcaster routes live on a mux of their own so that auth
		// and drain wrap the whole /rooms/ subtree.
		bmux := http.NewServeMux()
		mountBroadcasters(bmux, opts)
		mux.Handle("/rooms/", h.guardBroadcasters(h.routeBroadcasters(bmux), opts.Auth))
		wsh := NewWebSocketHandler(h.acceptPeer(opts), opts.Limits, opts.Logger).(*wsHandler)
		if rl := opts.Placement.Relay(); rl != nil {
			ws := h.serveRelayed(wsh, opts)
			// Relayed broadcaster requests: the edge checked the token; the
			// drain check applies here too.
			routes := h.guardBroadcasters(bmux, nil)
			rl.Serve(func(l cluster.Link, o cluster.Open) {
				if o.Kind == "http" && validID(o.Room) {
					h.serveRelayedHTTP(l, o, routes, opts.Logger)
					return
				}
				ws(l, o)
			})
		}
		ws = wsh
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A page load with ?roomId= gets the web client; an upgrade (or, with no web
		// client, anything naming a room) gets the protocol and its 400/403 answers.
		if ws != nil && (websocket.IsWebSocketUpgrade(r) || web == nil && (r.URL.Query().Has("roomId") || r.URL.Query().Has("peerId"))) {
			if h.Draining() {
				httpError(w, errDraining.Code, errDraining.Reason)
				return
			}
			if err := opts.Auth.checkPeer(r); err != nil {
				refuse(w, err)
				return
			}
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

// guardBroadcasters wraps the broadcaster API: its token check (when auth
// is on), and while draining no new broadcaster (503); those already in
// rooms go on until the rooms close.
func (h *Handler) guardBroadcasters(next http.Handler, auth *Auth) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Draining() {
			if _, _, create, ok := broadcasterPath(r); ok && create {
				httpError(w, errDraining.Code, errDraining.Reason)
				return
			}
		}
		if err := auth.checkBroadcaster(r); err != nil {
			refuse(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// acceptPeer admits a connecting peer: into its room here, or relayed to
// the node that owns the room.
func (h *Handler) acceptPeer(opts Options) AcceptFunc {
	return func(c *Conn, roomID, peerID string, r *http.Request) (Session, error) {
		owner, err := h.locate(r.Context(), roomID)
		if err != nil {
			return nil, err
		}
		if !owner.Local {
			return h.relayPeer(r.Context(), c, owner.Node)
		}
		return h.admitLocal(r.Context(), c, opts)
	}
}

// admitLocal admits a peer (its connection local or relayed) into its room
// on this node.
func (h *Handler) admitLocal(ctx context.Context, c *Conn, opts Options) (Session, error) {
	roomID, peerID := c.roomID, c.peerID
	pc := peerConn{Conn: c, m: h.metrics}
	// First frame on the socket, before any response (PROTOCOL.md §1).
	_ = pc.Notify("mediasoup-version", map[string]string{"version": opts.Version})
	p, err := opts.Rooms.Connect(ctx, roomID, peerID, pc)
	if err != nil {
		return nil, err
	}
	h.sessions.Add(1)
	h.metrics.connOpened()
	return &session{conn: c, pc: pc, rooms: opts.Rooms, peer: p, draining: h.Draining, metrics: h.metrics,
		release: func() {
			h.metrics.connClosed()
			h.sessions.Done()
		},
		log: opts.Logger.With(zap.String("room", roomID), zap.String("peer", peerID))}, nil
}

// locateTimeout bounds the question "who owns room R?" (a Redis round trip
// or two in cluster mode).
const locateTimeout = 3 * time.Second

// locate asks the placement which node owns roomID; a placement that cannot
// answer is a 503 with its reason.
func (h *Handler) locate(ctx context.Context, roomID string) (cluster.Owner, error) {
	if err := h.placement.Ready(); err != nil {
		return cluster.Owner{}, Errorf(http.StatusServiceUnavailable, "cannot place peers: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, locateTimeout)
	defer cancel()
	owner, err := h.placement.Locate(ctx, roomID)
	if err != nil {
		return cluster.Owner{}, Errorf(http.StatusServiceUnavailable, "cannot place room %q: %v", roomID, err)
	}
	return owner, nil
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

// pprofHandler serves net/http/pprof's index, profiles and traces behind an
// admin token (when auth is on). Registered only when Options.Pprof is set:
// a profile costs the server CPU and shows its internals.
func pprofHandler(a *Auth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.checkAdmin(r); err != nil {
			refuse(w, err)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
