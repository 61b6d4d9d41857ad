// Package cluster decides which node serves a room and carries the
// signaling of a room owned by another node. It sits beside room/, under
// signaling/: signaling asks a Placement "who owns room R?" once per
// connection and then serves the peer locally (room/) or relays its frames
// to the owner (Relay). room/ never learns about nodes: a relayed peer is a
// PeerConn like any other on the owner.
//
// Two implementations: Local (one node, no Redis: every room is local,
// today's behaviour) and Redis (cluster mode, NewRedis): nodes register
// with an expiring heartbeat, a room is owned through a lease, and frames
// travel over Redis pub/sub.
package cluster

import (
	"context"
	"time"
)

// Owner is the node that serves a room.
type Owner struct {
	Node  string // the owner's node id
	Local bool   // the owner is this node
}

// Load is what a node reports of itself; placement picks the node with
// the least (see Load.Less).
type Load struct {
	Rooms        int `json:"rooms"`
	Peers        int `json:"peers"`
	Consumers    int `json:"consumers"`
	WorkersAlive int `json:"workersAlive"`
}

// score orders loads: consumers cost the most (forwarding), peers next,
// rooms last; a node without a live worker is the most loaded of all.
func (l Load) score() float64 {
	if l.WorkersAlive <= 0 {
		return 1e18
	}
	return (float64(l.Consumers) + 10*float64(l.Peers) + 50*float64(l.Rooms)) / float64(l.WorkersAlive)
}

// Less reports whether l is less loaded than o.
func (l Load) Less(o Load) bool { return l.score() < o.score() }

// NodeInfo is one live node as the registry sees it.
type NodeInfo struct {
	ID       string    `json:"id"`
	Draining bool      `json:"draining"`
	Load     Load      `json:"load"`
	Rooms    []string  `json:"rooms"` // the rooms it owns, sorted
	Seen     time.Time `json:"seen"`  // its last heartbeat
	Self     bool      `json:"self,omitempty"`
}

// Placement answers "who owns room R?" and tells whether this node can
// place new peers at all.
type Placement interface {
	// NodeID is this node's id.
	NodeID() string
	// Locate returns the node that owns roomID. When no live node owns it,
	// it claims the room (atomically) for the least-loaded live node that
	// is not draining, which may be another node. An error means no peer
	// can be placed now (Redis unreachable, no live node): refuse with 503.
	Locate(ctx context.Context, roomID string) (Owner, error)
	// Ready is nil when new peers can be placed, else the reason.
	Ready() error
	// Nodes lists the live nodes, with their load and rooms.
	Nodes(ctx context.Context) ([]NodeInfo, error)
	// Relay carries connections to rooms owned elsewhere; nil for one node.
	Relay() Relay
}

// Stats is what the node tells about itself: its load and the rooms it
// holds (cmd wires it to the room manager and the worker pool).
type Stats func() (Load, []string)

// Local is the placement of a single node: every room is local.
type Local struct {
	ID    string // node id ("" = "local")
	Stats Stats  // nil: no load shown
}

// NodeID is the node's id.
func (l *Local) NodeID() string {
	if l == nil || l.ID == "" {
		return "local"
	}
	return l.ID
}

// Locate answers this node, always.
func (l *Local) Locate(context.Context, string) (Owner, error) {
	return Owner{Node: l.NodeID(), Local: true}, nil
}

// Ready is always nil.
func (*Local) Ready() error { return nil }

// Relay is nil: nothing is ever owned elsewhere.
func (*Local) Relay() Relay { return nil }

// Nodes lists this node alone.
func (l *Local) Nodes(context.Context) ([]NodeInfo, error) {
	n := NodeInfo{ID: l.NodeID(), Seen: time.Now().UTC(), Self: true, Rooms: []string{}}
	if l != nil && l.Stats != nil {
		n.Load, n.Rooms = l.Stats()
		if n.Rooms == nil {
			n.Rooms = []string{}
		}
	}
	return []NodeInfo{n}, nil
}

// Open describes a connection relayed to the owner of its room.
type Open struct {
	Kind   string `json:"kind"` // "ws"
	Room   string `json:"room"`
	Peer   string `json:"peer"`
	Remote string `json:"remote"` // the client's address as the edge saw it
}

// Handler receives what the other end of a Link sends. Its functions are
// called in order, on the relay's receiving goroutine: they must not block.
type Handler struct {
	// Frame is one WebSocket frame (text unless binary), unchanged.
	Frame func(binary bool, b []byte)
	// Closed: the other end closed the connection (the owner with a
	// WebSocket close code; the edge with 0 when its client went away), or
	// the link broke (the other node was lost, a frame was lost, Redis was
	// lost): code CloseRelayLost. Called at most once; nothing follows.
	Closed func(code int, reason string)
}

// CloseRelayLost is the close code of a relayed connection whose relay
// broke: the client may reconnect (like a dead worker's 4500).
const CloseRelayLost = 4500

// Relay carries the frames of connections whose room is owned by another
// node. Frames of one connection, in each direction, arrive in the order
// they were sent, or the link breaks (Handler.Closed with CloseRelayLost).
type Relay interface {
	// Dial relays a new connection to node, the owner of open.Room: it waits
	// (within ctx) for the owner to admit the peer. A refusal is a *Refused
	// carrying the owner's HTTP status and reason. h receives the owner's
	// frames from the moment the owner admits the peer.
	Dial(ctx context.Context, node string, open Open, h Handler) (Link, error)
	// Serve sets what runs, each on a goroutine of its own, for every
	// connection relayed to this node. It must answer with Link.Accept or
	// Link.Refuse, then Bind a Handler.
	Serve(func(l Link, open Open))
}

// Link is one relayed connection, seen from either end.
type Link interface {
	// Send sends a frame to the other end, in order with the others; it
	// blocks (for at most the relay's publish deadline) and fails once the
	// link is closed or broken.
	Send(binary bool, frame []byte) error
	// SendText sends text frames as Send does, in order, in one round trip
	// to the relay where it can (the owner's writer hands over everything
	// its connection queued at once).
	SendText(frames [][]byte) error
	// Accept (owner) admits the peer: the edge's Dial returns.
	Accept() error
	// Refuse (owner) refuses the peer with an HTTP status; the link is done.
	Refuse(status int, reason string)
	// Bind (owner) sets the Handler; what arrived before is delivered first.
	Bind(h Handler)
	// Close ends the link and tells the other end: the owner sends its
	// WebSocket close code, the edge 0 (its client went away). Idempotent;
	// the local Handler's Closed is not called.
	Close(code int, reason string)
	// Peer is the node at the other end.
	Peer() string
}

// Refused is the owner's refusal of a relayed connection.
type Refused struct {
	Status int
	Reason string
}

func (e *Refused) Error() string { return e.Reason }

// Unavailable is a placement that cannot place peers (why is the reason).
type Unavailable struct{ Why string }

func (e *Unavailable) Error() string { return e.Why }
