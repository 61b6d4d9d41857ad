package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/room"
	"go.uber.org/zap"
)

// Cluster mode: a connection whose room another node owns is relayed there
// frame for frame. On this node (the edge) the WebSocket stays a WebSocket
// (pings, frame limit, close handshake) whose frames go to the owner
// unparsed; on the owner the connection is a Conn whose transport is the
// relay link instead of a socket, served like any other (room/ sees a
// PeerConn). What the client sees is the owner's protocol: its answers,
// error codes, notifications and close codes.

// relayDialTimeout bounds the wait for the owner to admit a relayed peer
// (it may create the room's router first).
const relayDialTimeout = 10 * time.Second

// relayedConns tracks the edge's relayed connections (CloseRelayed).
type relayedConns struct {
	mu    sync.Mutex
	conns map[*Conn]struct{}
}

func (r *relayedConns) add(c *Conn) {
	r.mu.Lock()
	if r.conns == nil {
		r.conns = map[*Conn]struct{}{}
	}
	r.conns[c] = struct{}{}
	r.mu.Unlock()
}

func (r *relayedConns) remove(c *Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// CloseRelayed closes the connections this node relays to rooms owned by
// other nodes (shutdown: after the drain grace, with rooms.CloseAll).
func (h *Handler) CloseRelayed(code int, reason string) {
	h.relayed.mu.Lock()
	conns := make([]*Conn, 0, len(h.relayed.conns))
	for c := range h.relayed.conns {
		conns = append(conns, c)
	}
	h.relayed.mu.Unlock()
	for _, c := range conns {
		c.Close(code, reason)
	}
}

// relayPeer is the edge's accept for a peer whose room node owns: the
// owner admits it (or refuses, with the status a local refusal would have),
// then the connection pipes frames both ways.
func (h *Handler) relayPeer(ctx context.Context, c *Conn, node string) (Session, error) {
	rl := h.placement.Relay()
	if rl == nil {
		return nil, Errorf(http.StatusServiceUnavailable, "room %q is owned by node %s and this node relays nothing", c.roomID, node)
	}
	ctx, cancel := context.WithTimeout(ctx, relayDialTimeout)
	defer cancel()
	link, err := rl.Dial(ctx, node, cluster.Open{Kind: "ws", Room: c.roomID, Peer: c.peerID, Remote: c.remoteAddr}, cluster.Handler{
		Frame: func(_ bool, b []byte) { _ = c.enqueue(b) },
		Closed: func(code int, reason string) {
			if code == 0 {
				code = cluster.CloseRelayLost
			}
			c.Close(code, reason)
		},
	})
	if err != nil {
		var ref *cluster.Refused
		if errors.As(err, &ref) {
			return nil, Errorf(ref.Status, "%s", ref.Reason)
		}
		return nil, Errorf(http.StatusServiceUnavailable, "%v", err)
	}
	c.log = c.log.With(zap.String("owner", node))
	c.pipe = func(binary bool, b []byte) {
		// A failed send broke the link: its Closed closes c (4500).
		_ = link.Send(binary, b)
	}
	h.sessions.Add(1)
	h.relayed.add(c)
	c.log.Debug("relaying to the room's owner")
	return &pipeSession{release: func() {
		h.relayed.remove(c)
		link.Close(0, "") // the client went away
		h.sessions.Done()
	}}, nil
}

// pipeSession is the edge's Session of a relayed connection: the owner
// serves the requests (HandleRequest is never called: the frames are piped).
type pipeSession struct{ release func() }

func (*pipeSession) HandleRequest(context.Context, string, json.RawMessage) (any, error) {
	return nil, Errorf(http.StatusInternalServerError, "relayed connection")
}
func (*pipeSession) HandleNotification(string, json.RawMessage) {}
func (s *pipeSession) Closed()                                  { s.release() }

// serveRelayed is the owner's side: each relayed connection gets a Conn on
// the link, admitted like a local one.
func (h *Handler) serveRelayed(ws *wsHandler, opts Options) func(cluster.Link, cluster.Open) {
	return func(l cluster.Link, o cluster.Open) {
		if h.Draining() {
			l.Refuse(errDraining.Code, errDraining.Reason)
			return
		}
		if o.Kind != "ws" || !validID(o.Room) || !validID(o.Peer) {
			l.Refuse(http.StatusBadRequest, "bad relayed connection")
			return
		}
		c := ws.newConn(o.Room, o.Peer, o.Remote)
		c.log = c.log.With(zap.String("edge", l.Peer()))
		c.link = l
		ctx, cancel := context.WithTimeout(context.Background(), relayDialTimeout)
		session, err := h.admitProtected(ctx, c, opts)
		cancel()
		if err != nil {
			l.Refuse(c.refused("relayed connection refused", err))
			return
		}
		c.session = session
		l.Bind(cluster.Handler{
			Frame: c.relayFrame,
			// The client went away, or the relay broke: like a socket closed.
			Closed: func(int, string) { c.shutdown(0, "", false) },
		})
		c.log.Debug("relayed connection admitted")
		go c.dispatchLoop()
		go c.relayWriteLoop()
	}
}

func (h *Handler) admitProtected(ctx context.Context, c *Conn, opts Options) (s Session, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("accept panicked", zap.Any("panic", p), zap.Stack("stack"))
			s, err = nil, Errorf(http.StatusInternalServerError, "internal error")
		}
	}()
	return h.admitLocal(ctx, c, opts)
}

// relayFrame is a client frame arriving over the relay (in order, on the
// relay's goroutine).
func (c *Conn) relayFrame(binary bool, b []byte) {
	select {
	case <-c.closing:
		return
	default:
	}
	c.handleFrame(binary, b)
}

// relayWriteLoop is the owner's writer of a relayed connection: it admits
// the peer on the edge, sends the queued frames in order, then the close.
func (c *Conn) relayWriteLoop() {
	l := c.link
	if err := l.Accept(); err != nil {
		c.shutdown(0, "", false)
	}
	c.pump(l.SendText, nil, nil)
	if c.closeFlush {
		c.flushQueued(l.SendText)
	}
	// With code 0 (the edge closed, or the link broke) the link is already
	// done and this sends nothing.
	l.Close(c.closeCode, c.closeReason)
	c.finish()
}

// A relayed peer is a PeerConn like any other on the owner.
var _ room.PeerConn = peerConn{}
