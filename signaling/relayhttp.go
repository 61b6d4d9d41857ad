package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/mediasoup-server/mediasoup-server/cluster"
	"go.uber.org/zap"
)

// Cluster mode for the broadcaster API (PROTOCOL.md §7): a request for a
// room another node owns is relayed there as one link carrying one frame
// each way: the request, then the answer. The owner serves it with its own
// broadcaster routes; the edge has checked the token already.

// relayedRequest and relayedResponse are the frames of a relayed HTTP
// request.
type relayedRequest struct {
	Method      string `json:"method"`
	Path        string `json:"path"` // escaped
	Query       string `json:"query"`
	ContentType string `json:"contentType,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

type relayedResponse struct {
	Status      int    `json:"status"`
	ContentType string `json:"contentType,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

// routeBroadcasters serves a broadcaster request here when this node owns
// its room, else relays it to the owner.
func (h *Handler) routeBroadcasters(local http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		roomID, _, _, ok := broadcasterPath(r)
		if !ok || h.placement.Relay() == nil || !validID(roomID) {
			local.ServeHTTP(w, r)
			return
		}
		owner, err := h.locate(r.Context(), roomID)
		if err != nil {
			answer(w, nil, nil, err)
			return
		}
		if owner.Local {
			local.ServeHTTP(w, r)
			return
		}
		h.relayHTTP(w, r, roomID, owner.Node)
	})
}

func (h *Handler) relayHTTP(w http.ResponseWriter, r *http.Request, roomID, node string) {
	body, err := readBody(w, r)
	if err != nil {
		answer(w, nil, nil, err)
		return
	}
	req, _ := json.Marshal(relayedRequest{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		ContentType: r.Header.Get("Content-Type"), Body: body})
	ctx, cancel := context.WithTimeout(r.Context(), relayDialTimeout+5*time.Second)
	defer cancel()
	got := make(chan []byte, 1)
	gone := make(chan string, 1)
	link, err := h.placement.Relay().Dial(ctx, node, cluster.Open{Kind: "http", Room: roomID, Remote: r.RemoteAddr}, cluster.Handler{
		Frame: func(_ bool, b []byte) {
			select {
			case got <- b:
			default:
			}
		},
		Closed: func(_ int, reason string) { gone <- reason },
	})
	if err != nil {
		var ref *cluster.Refused
		if errors.As(err, &ref) {
			answer(w, nil, nil, Errorf(ref.Status, "%s", ref.Reason))
			return
		}
		answer(w, nil, nil, Errorf(http.StatusServiceUnavailable, "%v", err))
		return
	}
	defer link.Close(0, "")
	if err := link.Send(false, req); err != nil {
		answer(w, nil, nil, Errorf(http.StatusServiceUnavailable, "relay to node %s: %v", node, err))
		return
	}
	var b []byte
	select {
	case b = <-got:
	case why := <-gone:
		select {
		case b = <-got: // the answer came just before the close
		default:
			answer(w, nil, nil, Errorf(http.StatusServiceUnavailable, "node %s: %s", node, why))
			return
		}
	case <-ctx.Done():
		answer(w, nil, nil, Errorf(http.StatusGatewayTimeout, "node %s did not answer", node))
		return
	}
	var res relayedResponse
	if err := json.Unmarshal(b, &res); err != nil || res.Status < 100 {
		answer(w, nil, nil, Errorf(http.StatusBadGateway, "bad answer from node %s", node))
		return
	}
	if res.ContentType != "" {
		w.Header().Set("Content-Type", res.ContentType)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
}

// serveRelayedHTTP is the owner's side: one request in, one answer out.
func (h *Handler) serveRelayedHTTP(l cluster.Link, o cluster.Open, routes http.Handler, log *zap.Logger) {
	if err := l.Accept(); err != nil {
		return
	}
	var once sync.Once
	h.sessions.Add(1)
	done := func() { once.Do(h.sessions.Done) }
	l.Bind(cluster.Handler{
		Frame: func(_ bool, b []byte) {
			go func() { // the relay's goroutine must not wait for the room
				defer done()
				var req relayedRequest
				res := relayedResponse{Status: http.StatusBadRequest, ContentType: "text/plain; charset=utf-8", Body: []byte("bad relayed request\n")}
				if json.Unmarshal(b, &req) == nil {
					res = serveRecorded(routes, req, o.Remote)
				}
				out, _ := json.Marshal(res)
				if err := l.Send(false, out); err != nil {
					log.Debug("relayed broadcaster answer lost", zap.Error(err))
				}
				l.Close(1000, "")
			}()
		},
		Closed: func(int, string) { done() },
	})
}

// serveRecorded runs a relayed request through routes and records the
// answer.
func serveRecorded(routes http.Handler, req relayedRequest, remote string) relayedResponse {
	target := req.Path
	if req.Query != "" {
		target += "?" + req.Query
	}
	hr, err := http.NewRequestWithContext(context.Background(), req.Method, target, bytes.NewReader(req.Body))
	if err != nil {
		return relayedResponse{Status: http.StatusBadRequest, Body: []byte(err.Error())}
	}
	if req.ContentType != "" {
		hr.Header.Set("Content-Type", req.ContentType)
	}
	hr.RemoteAddr = remote
	rec := &recorder{header: http.Header{}}
	routes.ServeHTTP(rec, hr)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return relayedResponse{Status: rec.status, ContentType: rec.header.Get("Content-Type"), Body: rec.body.Bytes()}
}

// recorder is the http.ResponseWriter of a relayed request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

var _ io.Writer = (*recorder)(nil)
