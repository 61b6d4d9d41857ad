package signaling

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/mediasoup-server/mediasoup-server/room"
	"go.uber.org/zap"
)

// session binds one WebSocket connection to its peer in a room.
type session struct {
	conn     *Conn
	pc       room.PeerConn // conn as the rooms see it (counted by metrics)
	rooms    *room.Manager
	log      *zap.Logger
	release  func()      // called once the connection is gone and the peer freed
	draining func() bool // true: join is refused with 503
	metrics  *metrics

	mu   sync.Mutex
	peer *room.Peer
}

func (s *session) current() *room.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// HandleRequest dispatches one client request through the handlers table,
// counting it by method and response code and timing it.
func (s *session) HandleRequest(ctx context.Context, method string, data json.RawMessage) (res any, err error) {
	start := time.Now()
	code := http.StatusInternalServerError // stays so if the handler panics
	defer func() { s.metrics.request(method, code, time.Since(start)) }()
	res, err = s.dispatch(ctx, method, data)
	if err != nil {
		code, _ = ProtocolError(err)
	} else {
		code = http.StatusOK
	}
	return res, err
}

func (s *session) dispatch(ctx context.Context, method string, data json.RawMessage) (any, error) {
	if method == "leaveRoom" {
		return s.leaveRoom(ctx)
	}
	if method == "join" && s.draining != nil && s.draining() {
		return nil, errDraining
	}
	h, ok := handlers[method]
	if !ok {
		return nil, Errorf(405, "unknown method %q", method)
	}
	p := s.current()
	if p == nil {
		return nil, Errorf(503, "peer is closed")
	}
	// Under mediasoup-go's own 5 s request timeout, which would hang the
	// request forever (see room.WorkerRequestTimeout).
	hctx, cancel := context.WithTimeout(ctx, room.WorkerRequestTimeout)
	defer cancel()
	result, after, err := h(hctx, p, data)
	if err != nil {
		return nil, err
	}
	if after != nil {
		return Deferred{Data: result, After: after}, nil
	}
	return result, nil
}

// leaveRoom runs the leave steps and gives the connection a fresh, unjoined
// peer in the same room, so that it may join again (PROTOCOL.md extension).
func (s *session) leaveRoom(ctx context.Context) (any, error) {
	s.mu.Lock()
	old := s.peer
	s.peer = nil
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	pc := s.pc
	if pc == nil {
		pc = s.conn
	}
	p, err := s.rooms.Connect(ctx, s.conn.RoomID(), s.conn.PeerID(), pc)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.peer = p
	s.mu.Unlock()
	return struct{}{}, nil
}

// holdsDuring: what the room queues for a peer while its join runs goes
// out after the join's answer (Conn.handleRequest): the answer lists the
// peers as the join found them, and a peerClosed or newPeer produced after
// that must not overtake it (a client would show a peer that left).
func (s *session) holdsDuring(method string) bool { return method == "join" }

// HandleNotification logs client notifications; the protocol defines none.
func (s *session) HandleNotification(method string, _ json.RawMessage) {
	s.log.Debug("client notification ignored", zap.String("method", method))
}

// Closed frees the peer when the connection is gone.
func (s *session) Closed() {
	s.mu.Lock()
	p := s.peer
	s.peer = nil
	s.mu.Unlock()
	if p != nil {
		p.Close()
	}
	if s.release != nil {
		s.release()
	}
}
