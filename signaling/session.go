package signaling

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/mediasoup-server/mediasoup-server/room"
	"go.uber.org/zap"
)

// session binds one WebSocket connection to its peer in a room.
type session struct {
	conn    *Conn
	rooms   *room.Manager
	log     *zap.Logger
	release func() // called once the connection is gone and the peer freed

	mu   sync.Mutex
	peer *room.Peer
}

func (s *session) current() *room.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// HandleRequest dispatches one client request through the handlers table.
func (s *session) HandleRequest(ctx context.Context, method string, data json.RawMessage) (any, error) {
	if method == "leaveRoom" {
		return s.leaveRoom(ctx)
	}
	h, ok := handlers[method]
	if !ok {
		return nil, Errorf(405, "unknown method %q", method)
	}
	p := s.current()
	if p == nil {
		return nil, Errorf(503, "peer is closed")
	}
	result, after, err := h(ctx, p, data)
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
	p, err := s.rooms.Connect(ctx, s.conn.RoomID(), s.conn.PeerID(), s.conn)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.peer = p
	s.mu.Unlock()
	return struct{}{}, nil
}

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
