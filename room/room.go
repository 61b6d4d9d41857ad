// Package room holds rooms, their peers, and every mediasoup object a peer
// owns. A room reaches its peers through the small PeerConn interface, never
// through a socket. Every id that comes from a client is looked up in that
// peer's own maps: there is no way to reach another peer's objects.
package room

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/internal/syncutil"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// WebSocket close codes the rooms use when they close a peer on purpose.
const (
	// CloseKicked tells protoo-client not to reconnect (kicked, room closed
	// for good, server shutting down).
	CloseKicked = 4000
	// CloseWorkerDied lets the client reconnect: it lands in a new room of
	// the same id on a live worker.
	CloseWorkerDied = 4500
	// CloseTransportFailed: the peer's ICE/DTLS failed for longer than the
	// grace period; reconnecting builds new transports.
	CloseTransportFailed = 4501
)

// PeerConn is how a room talks to one peer's connection.
type PeerConn interface {
	// Notify sends a notification; it never blocks.
	Notify(method string, data any) error
	// NotifyShared sends a notification that goes to many peers (see
	// Notification); it never blocks.
	NotifyShared(n *Notification) error
	// Request sends a server→client request and waits for the answer. If
	// data has a method Queued(), it is called once the request is queued
	// (in order with the connection's other frames), before the wait, on
	// the caller's goroutine; not at all if the request is not sent.
	Request(ctx context.Context, method string, data any) (json.RawMessage, error)
	// Close closes the connection with a WebSocket close code.
	Close(code int, reason string)
}

// Notification is one notification that goes to many peers (a room's
// broadcast, newPeer to everyone in the room): the connections encode it
// once for all of them (Frame), not once per peer.
type Notification struct {
	Method string
	Data   any

	once  sync.Once
	frame []byte
	err   error
}

// NewNotification returns a notification to send to many peers.
func NewNotification(method string, data any) *Notification {
	return &Notification{Method: method, Data: data}
}

// Frame returns encode(Method, Data), encoded on the first call only: every
// connection gets the same bytes, which none may modify. (One protocol per
// process: the first call's encoder is the one that counts.)
func (n *Notification) Frame(encode func(method string, data any) ([]byte, error)) ([]byte, error) {
	n.once.Do(func() { n.frame, n.err = encode(n.Method, n.Data) })
	return n.frame, n.err
}

// Pool is what rooms need of the worker pool.
type Pool interface {
	// CreateRouterExcept creates a router on the least-loaded live worker not in except.
	CreateRouterExcept(ctx context.Context, opts *mediasoup.RouterOptions, except map[*worker.Worker]bool) (*worker.Router, error)
}

// Options configure rooms. Zero values take the defaults of PROTOCOL.md §6.
type Options struct {
	MediaCodecs []*mediasoup.RtpCodecCapability

	InitialAvailableOutgoingBitrate uint32 // 1,000,000
	MaxIncomingBitrate              uint32 // 1,500,000
	MaxSctpMessageSize              uint32 // 262,144
	NumSctpStreams                  uint16 // 1024 (OS and MIS) when the client gives none

	MaxPeersPerRoom         int // 200
	MaxTransportsPerPeer    int // 4
	MaxProducersPerPeer     int // 32
	MaxDataProducersPerPeer int // 32

	// Where broadcasters' plain RTP transports listen (default 127.0.0.1)
	// and the address they announce (default none).
	PlainListenIP         string
	PlainAnnouncedAddress string

	// Spreading a room over workers (spread.go): a router holding this many
	// consumers of the room is full (default 400); a room uses at most
	// MaxWorkersPerRoom workers (0: all of them; 1: never spread).
	RouterConsumerBudget int
	MaxWorkersPerRoom    int

	// A transport whose ICE stays disconnected this long frees its peer.
	// mediasoup declares ICE disconnected when the client's consent checks
	// (STUN binding requests) have stopped for 30 s (mediasoup-go, v2.4.1
	// and still v2.6.0, drops WebRtcTransportOptions.IceConsentTimeout), so a peer whose
	// network died is freed about 30 s + this after.
	IceDisconnectGrace time.Duration // 30s
	// How long a client may take to answer newConsumer / newDataConsumer.
	ServerRequestTimeout time.Duration // 15s

	Logger *zap.Logger
}

func (o *Options) defaults() {
	if len(o.MediaCodecs) == 0 {
		o.MediaCodecs = DefaultMediaCodecs()
	}
	setDefault(&o.InitialAvailableOutgoingBitrate, 1_000_000)
	setDefault(&o.MaxIncomingBitrate, 1_500_000)
	setDefault(&o.MaxSctpMessageSize, 262_144)
	setDefault(&o.NumSctpStreams, 1024)
	setDefault(&o.MaxPeersPerRoom, 200)
	setDefault(&o.MaxTransportsPerPeer, 4)
	setDefault(&o.MaxProducersPerPeer, 32)
	setDefault(&o.MaxDataProducersPerPeer, 32)
	setDefault(&o.PlainListenIP, "127.0.0.1")
	setDefault(&o.RouterConsumerBudget, 400)
	setDefault(&o.IceDisconnectGrace, 30*time.Second)
	setDefault(&o.ServerRequestTimeout, 15*time.Second)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// DefaultMediaCodecs are the demo's router codecs (PROTOCOL.md §6).
func DefaultMediaCodecs() []*mediasoup.RtpCodecCapability {
	return []*mediasoup.RtpCodecCapability{
		{Kind: mediasoup.MediaKindAudio, MimeType: "audio/opus", ClockRate: 48000, Channels: 2},
		{Kind: mediasoup.MediaKindVideo, MimeType: "video/VP8", ClockRate: 90000},
		{Kind: mediasoup.MediaKindVideo, MimeType: "video/VP9", ClockRate: 90000,
			Parameters: mediasoup.RtpCodecSpecificParameters{ProfileId: 2}},
		{Kind: mediasoup.MediaKindVideo, MimeType: "video/h264", ClockRate: 90000,
			Parameters: mediasoup.RtpCodecSpecificParameters{PacketizationMode: 1, ProfileLevelId: "4d0032",
				LevelAsymmetryAllowed: 1}},
		{Kind: mediasoup.MediaKindVideo, MimeType: "video/h264", ClockRate: 90000,
			Parameters: mediasoup.RtpCodecSpecificParameters{PacketizationMode: 1, ProfileLevelId: "42e01f",
				LevelAsymmetryAllowed: 1}},
	}
}

// Manager owns every room of this server.
type Manager struct {
	pool Pool
	opts Options
	log  *zap.Logger

	mu    sync.Mutex
	rooms map[string]*Room

	bg sync.WaitGroup // consume goroutines in flight
}

// spawn runs fn on a goroutine that Wait waits for.
func (m *Manager) spawn(fn func()) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		fn()
	}()
}

// Wait blocks until the background work the rooms started (consumers being
// created and announced) has finished, or ctx ends. Call it after CloseAll
// and before closing the worker pool, so that the rooms' work ends with
// answers rather than "channel closed" errors. (It is no longer a matter of
// safety: mediasoup-go v2.4.1 could abort the process when a worker closed
// with requests in flight; v2.6.0 cannot, see worker's
// TestUpstreamWorkerDeathWithRequestsInFlight.)
func (m *Manager) Wait(ctx context.Context) error {
	return syncutil.Wait(ctx, &m.bg)
}

// NewManager returns a room manager that places rooms on pool.
func NewManager(pool Pool, opts Options) *Manager {
	opts.defaults()
	return &Manager{pool: pool, opts: opts, log: opts.Logger, rooms: map[string]*Room{}}
}

// Connect admits a peer to a room, creating the room if needed. A peer with
// the same id already in the room is replaced: it is closed (its resources
// freed, peerClosed sent if it had joined) and the new one takes its place.
func (m *Manager) Connect(ctx context.Context, roomID, peerID string, conn PeerConn) (*Peer, error) {
	return m.connect(ctx, roomID, peerID, conn, true)
}

// ConnectNew is Connect that never replaces: a peer with this id already in
// the room is a 409 (broadcasters must not kick a WebSocket peer).
func (m *Manager) ConnectNew(ctx context.Context, roomID, peerID string, conn PeerConn) (*Peer, error) {
	return m.connect(ctx, roomID, peerID, conn, false)
}

func (m *Manager) connect(ctx context.Context, roomID, peerID string, conn PeerConn, replace bool) (*Peer, error) {
	for range 3 {
		r, err := m.room(ctx, roomID)
		if err != nil {
			return nil, err
		}
		p, err := r.admit(peerID, conn, replace)
		if err == ErrRoomClosed {
			continue // the room closed under us (its last peer left): make a new one
		}
		return p, err
	}
	return nil, errorf(ErrRoomClosed, "room %q keeps closing", roomID)
}

// Rooms returns a snapshot of the open rooms (those whose router is ready).
func (m *Manager) Rooms() []*Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		if r.isReady() {
			out = append(out, r)
		}
	}
	return out
}

// Room returns the open room with this id, or nil (also while it is being
// created).
func (m *Manager) Room(id string) *Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rooms[id]; r != nil && r.isReady() {
		return r
	}
	return nil
}

// CloseAll closes every room, closing its peers with code.
func (m *Manager) CloseAll(code int, reason string) {
	for _, r := range m.Rooms() {
		r.Close(code, reason)
	}
}

// room returns the open room with this id, creating it (once, whoever races)
// on the least-loaded worker.
func (m *Manager) room(ctx context.Context, id string) (*Room, error) {
	m.mu.Lock()
	r := m.rooms[id]
	if r == nil {
		r = newRoom(m, id)
		m.rooms[id] = r
		m.mu.Unlock()
		if err := r.init(ctx); err != nil {
			m.forget(r)
			r.initErr = err
			close(r.ready)
			return nil, err
		}
		close(r.ready)
		return r, nil
	}
	m.mu.Unlock()
	select {
	case <-r.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.initErr != nil {
		return nil, r.initErr
	}
	return r, nil
}

func (m *Manager) forget(r *Room) {
	m.mu.Lock()
	if m.rooms[r.id] == r {
		delete(m.rooms, r.id)
	}
	m.mu.Unlock()
}
