package room

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// Room is one router with its peers. All maps of the room and of its peers
// are guarded by mu, which is never held while waiting on a worker or a client.
type Room struct {
	m   *Manager
	id  string
	log *zap.Logger

	ready   chan struct{} // closed once init finished
	initErr error

	router        *worker.Router // the first router: audio observers; RTP capabilities
	audioObserver *mediasoup.RtpObserver
	speakerObs    *mediasoup.RtpObserver
	growMu        sync.Mutex // one router added at a time (spread.go)
	// The last grow that found no worker: when, and the routers then (r.mu).
	noWorkerAt      time.Time
	noWorkerRouters int
	// routerMu and prodLocks keep a producer from closing while one of its
	// consumers is being created (see consuming): a router close holds
	// routerMu for writing, a producer close its id's lock in prodLocks.
	routerMu  sync.RWMutex
	prodLocks producerLocks

	mu       sync.Mutex
	closed   bool
	closing  int // peers still closing their transports (the router must outlive them)
	peers    map[string]*Peer
	joined   []*Peer               // the joined peers (joinedLocked)
	owner    map[string]string     // every live object id → the id of the peer owning it
	routers  []*worker.Router      // one per worker the room uses, r.router first
	pipes    map[pipeKey]*pipe     // producers and data producers piped to another router
	pairs    map[pipeKey]*pipe     // pipe transport pairs being or been created
	pairObjs map[pipeKey]*pipePair // the pairs made
}

func newRoom(m *Manager, id string) *Room {
	return &Room{
		m: m, id: id, log: m.log.With(zap.String("room", id)),
		ready: make(chan struct{}),
		peers: map[string]*Peer{}, owner: map[string]string{}, pipes: map[pipeKey]*pipe{},
		pairs: map[pipeKey]*pipe{}, pairObjs: map[pipeKey]*pipePair{},
	}
}

// ID is the room id.
func (r *Room) ID() string { return r.id }

// Router is the room's router (with the worker it lives on).
func (r *Room) Router() *worker.Router { return r.router }

// ReadyRouters is Routers once the room is set up, or nil while it is
// still being created (or failed to be): unlike Router and Routers, it is
// safe to call on any room listed by Manager.Rooms (the admin view does).
func (r *Room) ReadyRouters() []*worker.Router {
	if !r.isReady() {
		return nil
	}
	return r.Routers()
}

func (r *Room) init(ctx context.Context) error {
	router, err := r.m.pool.CreateRouterExcept(ctx, r.routerOptions(), nil)
	if err != nil {
		return errorf(ErrRoomClosed, "room %q: no router: %v", r.id, err)
	}
	r.router = router
	r.routers = []*worker.Router{router}
	obs, err := router.CreateAudioLevelObserver(&mediasoup.AudioLevelObserverOptions{
		MaxEntries: 1, Threshold: -80, Interval: 800,
	})
	if err != nil {
		router.Close()
		return workerError("audio level observer", err)
	}
	r.audioObserver = obs
	speaker, err := router.CreateActiveSpeakerObserver(&mediasoup.ActiveSpeakerObserverOptions{})
	if err != nil {
		router.Close()
		return workerError("active speaker observer", err)
	}
	r.speakerObs = speaker
	obs.OnVolume(func(volumes []mediasoup.AudioLevelObserverVolume) {
		if len(volumes) == 0 || volumes[0].Producer == nil {
			return
		}
		r.broadcast(nil, "activeSpeaker", mediasoup.H{
			"peerId": volumes[0].Producer.AppData()["peerId"], "volume": volumes[0].Volume,
		})
	})
	obs.OnSilence(func() { r.broadcast(nil, "activeSpeaker", mediasoup.H{"peerId": nil}) })
	router.OnWorkerClosed(func(context.Context) { go r.workerDied() })
	r.log.Info("room created", zap.Int("worker", router.Worker.Index()), zap.Int("pid", router.Pid))
	return nil
}

// isReady reports whether init finished successfully.
func (r *Room) isReady() bool {
	select {
	case <-r.ready:
		return r.initErr == nil
	default:
		return false
	}
}

// admit adds a peer; one with the same id is replaced, or with replace false
// the admission fails (409).
func (r *Room) admit(peerID string, conn PeerConn, replace bool) (*Peer, error) {
	p := &Peer{
		room: r, id: peerID, conn: conn,
		log:          r.log.With(zap.String("peer", peerID)),
		transports:   map[string]*mediasoup.Transport{},
		producers:    map[string]*mediasoup.Producer{},
		consumers:    map[string]*mediasoup.Consumer{},
		dataProds:    map[string]*mediasoup.DataProducer{},
		dataConsumes: map[string]*mediasoup.DataConsumer{},
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrRoomClosed
	}
	old := r.peers[peerID]
	if old != nil && !replace {
		r.mu.Unlock()
		return nil, errorf(ErrConflict, "peer %q is already in room %q", peerID, r.id)
	}
	if old == nil && len(r.peers) >= r.m.opts.MaxPeersPerRoom {
		r.mu.Unlock()
		return nil, errorf(ErrLimit, "room %q is full (%d peers)", r.id, r.m.opts.MaxPeersPerRoom)
	}
	// The new peer takes the slot before the old one leaves, so the room is
	// never empty in between and cannot close under the reconnecting peer.
	r.peers[peerID] = p
	r.mu.Unlock()
	if old != nil {
		old.log.Info("replaced by a new connection")
		old.conn.Close(CloseKicked, "replaced by a new connection")
		old.Close()
	}
	p.log.Debug("peer connected")
	return p, nil
}

// joinedLocked returns the joined peers, in the order they joined. The
// slice is never modified (a join or a leave replaces it), so it may be
// read after r.mu is released. r.mu held.
func (r *Room) joinedLocked() []*Peer { return r.joined }

// addJoinedLocked and removeJoinedLocked replace r.joined. r.mu held.
func (r *Room) addJoinedLocked(p *Peer) {
	r.joined = append(slices.Clip(r.joined), p)
}

func (r *Room) removeJoinedLocked(p *Peer) {
	if i := slices.Index(r.joined, p); i >= 0 {
		r.joined = slices.Concat(r.joined[:i], r.joined[i+1:])
	}
}

// broadcast notifies every joined peer but except.
func (r *Room) broadcast(except *Peer, method string, data any) {
	r.mu.Lock()
	peers := r.joinedLocked()
	r.mu.Unlock()
	n := NewNotification(method, data)
	for _, q := range peers {
		if q != except {
			q.notifyShared(n)
		}
	}
}

// closeIfEmpty closes the room when no peer is left.
func (r *Room) closeIfEmpty() {
	r.mu.Lock()
	if r.closed || len(r.peers) > 0 || r.closing > 0 {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.m.forget(r)
	r.closeRouters()
	r.log.Info("room closed (last peer left)")
}

// Close closes the room: every peer's connection is closed with code and its
// resources freed, then the router.
func (r *Room) Close(code int, reason string) {
	r.m.forget(r)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	peers := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()
	for _, p := range peers {
		p.conn.Close(code, reason)
		p.Close()
	}
	r.closeRouters()
	r.log.Info("room closed", zap.String("reason", reason))
}

// workerDied runs when the router's worker died: the room is gone. Its peers
// are closed with a code that lets them reconnect into a new room of this id.
func (r *Room) workerDied() {
	r.log.Warn("a worker of the room died: closing its peers so they reconnect")
	r.Close(CloseWorkerDied, "mediasoup worker died")
}

// Peers returns a snapshot of the room's peers.
func (r *Room) Peers() []*Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		out = append(out, p)
	}
	return out
}

// Snapshot is every peer of the room at one moment, taken in one hold of
// the room's lock: /metrics, the admin view and the cluster heartbeat read
// whole rooms, and a lock per peer made them a thousand turns on the lock
// that joins wait for in a room of a thousand.
func (r *Room) Snapshot() []PeerSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PeerSnapshot, 0, len(r.peers))
	for _, p := range r.peers {
		out = append(out, p.snapshotLocked())
	}
	return out
}

// lookup finds id in one of p's maps; an id owned by another peer is 403,
// an unknown one 404. r.mu held.
func lookup[T any](r *Room, p *Peer, m map[string]T, kind, id string) (T, error) {
	if v, ok := m[id]; ok {
		return v, nil
	}
	var zero T
	if owner, ok := r.owner[id]; ok && owner != p.id {
		return zero, errorf(ErrForbidden, "%s %q belongs to another peer", kind, id)
	}
	return zero, errorf(ErrNotFound, "%s %q not found", kind, id)
}

func (r *Room) String() string { return fmt.Sprintf("room %q", r.id) }

// consuming runs f, a Consume of producer producerID on a transport, with
// that producer closing nowhere in the room meanwhile: neither the producer
// itself nor a copy of it piped to another router (same id), by itself or
// with its transport or router. mediasoup-go's Transport.ConsumeContext
// (v2.4.1, still in v2.6.0: worker's
// TestUpstreamConsumeLeavesTransportLockedWhenProducerCloses) returns
// "original Producer closed" without unlocking the transport when the
// producer closed between the worker's answer and its check; that transport
// then blocks forever (its next Consume, its Close, the peer's leave, the
// room's close). Every producer close holds that producer's lock for writing
// (closingProducers) and every router close holds routerMu for writing
// (closeRouter), so that branch is never taken. ConsumeDataContext has the
// same fault (worker's
// TestUpstreamConsumeDataLeavesTransportLockedWhenDataProducerCloses): data
// consumes run under the data producer's lock, and a peer's leave and a
// piped copy's close take it for its data producers too (ids are unique
// across producers and data producers).
//
// The lock is per producer id so that a producer's close (or its peer's
// leave) waits only for the consumes of that producer, and delays no other
// consume in the room: Go's RWMutex makes new readers wait behind a waiting
// writer, which a room-wide lock did to every consume of the room. Only a
// router close, which closes whatever producers are on the router, still
// takes the whole room (rare: the room closing, a router released).
//
// Never nest: consuming must not be called inside consuming or
// closingProducers, nor with routerMu held; a recursive RLock deadlocks as
// soon as a writer waits.
func (r *Room) consuming(producerID string, f func() error) error {
	r.routerMu.RLock()
	defer r.routerMu.RUnlock()
	pl := r.prodLocks.get(producerID)
	pl.RLock()
	defer func() {
		pl.RUnlock()
		r.prodLocks.put(producerID, pl)
	}()
	return f()
}

// closingProducers runs f, which may close the producers ids and no other,
// with no Consume of them in flight (see consuming). Their locks are taken in
// id order, so two closers never deadlock. It holds routerMu for reading
// too: a router close still waits for producer closes, as it did when one
// room lock did both. Never call it on mediasoup-go's channel goroutine (its
// event callbacks): a Consume waiting for the worker's answer would wait for
// that very goroutine. Never nest it either (see consuming).
func (r *Room) closingProducers(ids []string, f func()) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	r.routerMu.RLock()
	defer r.routerMu.RUnlock()
	locks := make([]*producerLock, len(ids))
	for i, id := range ids {
		locks[i] = r.prodLocks.get(id)
		locks[i].Lock()
	}
	defer func() {
		for i, id := range ids {
			locks[i].Unlock()
			r.prodLocks.put(id, locks[i])
		}
	}()
	f()
}

// workerQueueTimeout bounds how long background work (a consume, a resume)
// waits for a turn on its worker (worker.Worker.Do).
const workerQueueTimeout = 30 * time.Second

// workerDo runs f, background work (a consume, a resume), on rt's worker
// once it has a turn (worker.Worker.DoBackground), with a worker context
// (WorkerRequestTimeout) that starts then: a request that queued behind
// others in a stampede still gets its full time.
func workerDo(rt *worker.Router, f func(ctx context.Context) error) error {
	return rt.Worker.DoBackground(workerQueueTimeout, func() error {
		ctx, cancel := workerContext()
		defer cancel()
		return f(ctx)
	})
}

// workerDoNow is workerDo for a client's own request (a transport, its
// connect): a turn before the background work (worker.Worker.Do). ctx is
// the request's; its deadline bounds the request's worker calls, not the
// wait for a turn: f gets a worker context that starts with the turn, and
// only ctx's cancellation (the client gone) ends the wait early.
func workerDoNow(ctx context.Context, rt *worker.Router, f func(ctx context.Context) error) error {
	qctx, qcancel := context.WithTimeout(context.WithoutCancel(ctx), workerQueueTimeout)
	defer qcancel()
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			qcancel()
		}
	})
	defer stop()
	return rt.Worker.Do(qctx, func() error {
		wctx, cancel := context.WithTimeout(qctx, WorkerRequestTimeout)
		defer cancel()
		return f(wctx)
	})
}
