package room

import (
	"context"
	"errors"
	"slices"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// A room may spread over several workers: it owns one router per worker it
// uses. Each peer lives on one router (all its transports are created there).
// New peers go to the room's least-loaded router; when every router holds
// RouterConsumerBudget consumers or more, the room takes a router on a worker
// it does not use yet (up to MaxWorkersPerRoom). A consumer on router B of a
// producer on router A is served through PipeToRouter: the producer is piped
// to B once, on demand, and the piped copy closes with the producer
// (mediasoup-go mirrors pause, resume and close across the pipe). Clients see
// nothing of this.

// pipeKey names a producer (or data producer) piped to a router.
type pipeKey struct {
	id string
	to *worker.Router
}

// pipe is one PipeToRouter, done once whoever asks first.
type pipe struct {
	done chan struct{}
	err  error
}

// Routers returns the room's routers, the first one first (it holds the
// audio observers).
func (r *Room) Routers() []*worker.Router {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*worker.Router(nil), r.routers...)
}

// Pipes is the number of producers and data producers currently piped
// between the room's routers.
func (r *Room) Pipes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pipes)
}

// PipeTransports is the number of pipe transport pairs between the room's routers.
func (r *Room) PipeTransports() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pairObjs)
}

// expectedProducers is how many producers a producing peer is expected to
// have (audio and video) before it has made them.
const expectedProducers = 2

// routerFor returns the router p lives on, choosing it on first use;
// producing tells whether the transport being created is for sending.
//
// The choice cannot wait for consumers to exist: when a room fills at once
// (a meeting starting, a reconnect storm), every peer creates its transports
// before anyone has produced. So a router's load is projected: each peer on
// it counts as many consumers as it will have in a full mesh, that is the
// producers of every other producing peer in the room (a peer produces once it
// created a producing transport; it is expected to have expectedProducers of
// them until it has more), or its actual consumers if there are more. A
// broadcast viewer that produces nothing adds only the broadcaster's producers
// to each other peer, so one-to-many rooms spread by viewer count.
func (r *Room) routerFor(ctx context.Context, p *Peer, producing bool) (*worker.Router, error) {
	r.mu.Lock()
	if p.router != nil {
		rt := p.router
		p.producing = p.producing || producing
		r.mu.Unlock()
		return rt, nil
	}
	p.producing = p.producing || producing
	rt, full := r.leastLoadedLocked(p)
	if !full || len(r.routers) >= r.m.maxWorkersPerRoom() || r.growFutileLocked() {
		p.router = rt
		r.mu.Unlock()
		return rt, nil
	}
	r.mu.Unlock()
	switch grown, err := r.grow(ctx, p); {
	case err == nil:
		return grown, nil
	case errors.Is(err, worker.ErrNoWorker):
		// Every live worker is in use by this room already.
	case errors.Is(err, ErrPeerClosed), errors.Is(err, ErrRoomClosed):
		return nil, err
	default:
		r.log.Warn("cannot add a router to the room", zap.Error(err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.closed {
		return nil, ErrPeerClosed
	}
	if p.router == nil {
		p.router, _ = r.leastLoadedLocked(p)
	}
	return p.router, nil
}

// leastLoadedLocked returns the router with the least projected load (see
// routerFor) and whether placing p on it would take it past the budget.
// r.mu held.
func (r *Room) leastLoadedLocked(p *Peer) (*worker.Router, bool) {
	producers := func(q *Peer) int {
		if !q.producing && len(q.producers) == 0 {
			return 0
		}
		return max(len(q.producers), expectedProducers)
	}
	total := 0
	for _, q := range r.peers {
		total += producers(q)
	}
	// What q is expected to consume: every other peer's producers.
	// Broadcasters consume only what they ask for.
	consumes := func(q *Peer) int {
		if q.IsBroadcaster() {
			return len(q.consumers)
		}
		return max(len(q.consumers), total-producers(q))
	}
	load := make(map[*worker.Router]int, len(r.routers))
	for _, q := range r.peers {
		if q.router != nil && q != p {
			load[q.router] += consumes(q)
		}
	}
	best := r.routers[0]
	for _, rt := range r.routers[1:] {
		if load[rt] < load[best] {
			best = rt
		}
	}
	budget := r.m.opts.RouterConsumerBudget
	return best, load[best] >= budget || load[best]+consumes(p) > budget
}

// growFutileLocked: a grow found no worker to add a moment ago and the room
// has as many routers as then. In a room filling up, every new peer finds
// the routers full: without this each would queue for growMu (and scan the
// room twice more under r.mu) only to learn again that there is none.
// r.mu held.
func (r *Room) growFutileLocked() bool {
	return len(r.routers) == r.noWorkerRouters && time.Since(r.noWorkerAt) < noWorkerRetry
}

// noWorkerRetry: how long a room takes "no worker to grow onto" for granted
// (a worker may come back, or another room release one).
const noWorkerRetry = time.Second

// grow adds a router on a worker the room does not use yet and places p on
// it (or on the least-loaded router if another grow made room meanwhile).
func (r *Room) grow(ctx context.Context, p *Peer) (*worker.Router, error) {
	r.growMu.Lock()
	defer r.growMu.Unlock()
	r.mu.Lock()
	if p.closed {
		r.mu.Unlock()
		return nil, ErrPeerClosed
	}
	if rt, full := r.leastLoadedLocked(p); !full { // someone grew meanwhile
		p.router = rt
		r.mu.Unlock()
		return rt, nil
	}
	used := make(map[*worker.Worker]bool, len(r.routers))
	for _, rt := range r.routers {
		used[rt.Worker] = true
	}
	r.mu.Unlock()
	rt, err := r.m.pool.CreateRouterExcept(ctx, r.routerOptions(), used)
	if errors.Is(err, worker.ErrNoWorker) {
		r.mu.Lock()
		r.noWorkerAt, r.noWorkerRouters = time.Now(), len(used)
		r.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = rt.Close()
		return nil, ErrRoomClosed
	}
	r.routers = append(r.routers, rt)
	n := len(r.routers)
	closed := p.closed
	if !closed {
		p.router = rt
	}
	r.mu.Unlock()
	rt.OnWorkerClosed(func(context.Context) { go r.workerDied() })
	r.log.Info("room spread to another worker", zap.Int("worker", rt.Worker.Index()),
		zap.Int("pid", rt.Pid), zap.Int("routers", n))
	if closed {
		return nil, ErrPeerClosed
	}
	return rt, nil
}

func (r *Room) routerOptions() *mediasoup.RouterOptions {
	return &mediasoup.RouterOptions{MediaCodecs: r.m.opts.MediaCodecs, AppData: mediasoup.H{"roomId": r.id}}
}

// ensurePipe makes producer (or data producer) id, living on router from,
// available on router to, with the same id. Concurrent callers share one
// pipe. (Not mediasoup-go's Router.PipeToRouter: its pair-creation race of
// v2.4.1 is fixed since v2.5, but its consume on the pipe transport would run
// outside r.consuming, exposed to the ConsumeContext lock fault still in
// v2.6.0 — see consuming — and it takes no part in the room's pipe lifecycle.)
func (r *Room) ensurePipe(ctx context.Context, id string, data bool, from, to *worker.Router) error {
	if from == nil || to == nil || from == to {
		return nil
	}
	return r.once(r.pipes, pipeKey{id: id, to: to}, ctx, func(forget func()) error {
		pair, err := r.pipePair(ctx, from, to)
		if err != nil {
			return err
		}
		if data {
			return r.pipeData(ctx, id, pair, forget)
		}
		return r.pipeMedia(ctx, id, pair, forget)
	})
}

// once runs create for key unless a run for it succeeded or is under way
// (then it waits for that one). create gets a forget func that drops the key
// (called when what it made closes), so that a later caller creates anew.
func (r *Room) once(m map[pipeKey]*pipe, key pipeKey, ctx context.Context, create func(forget func()) error) error {
	r.mu.Lock()
	pp, ok := m[key]
	if !ok {
		pp = &pipe{done: make(chan struct{})}
		m[key] = pp
	}
	r.mu.Unlock()
	if ok {
		select {
		case <-pp.done:
			return pp.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	forget := func() {
		r.mu.Lock()
		if m[key] == pp {
			delete(m, key)
		}
		r.mu.Unlock()
	}
	pp.err = create(forget)
	if pp.err != nil {
		forget()
	}
	close(pp.done)
	return pp.err
}

// pipePair is a connected pair of pipe transports, local on the source
// router and remote on the target.
type pipePair struct{ local, remote *mediasoup.Transport }

// pipePair returns the pipe transports from → to, creating them once.
func (r *Room) pipePair(ctx context.Context, from, to *worker.Router) (*pipePair, error) {
	key := pipeKey{id: "\x00pair:" + from.Id(), to: to}
	err := r.once(r.pairs, key, ctx, func(forget func()) error {
		opts := &mediasoup.PipeTransportOptions{
			ListenInfo: mediasoup.TransportListenInfo{Protocol: mediasoup.TransportProtocolUDP, Ip: "127.0.0.1"},
			EnableSctp: true,
		}
		local, err := from.CreatePipeTransportContext(ctx, opts)
		if err != nil {
			return workerError("create pipe transport", err)
		}
		remote, err := to.CreatePipeTransportContext(ctx, opts)
		if err != nil {
			_ = local.Close()
			return workerError("create pipe transport", err)
		}
		connect := func(t, peer *mediasoup.Transport) error {
			d := peer.Data().PipeTransportData
			port := d.Tuple.LocalPort
			return t.ConnectContext(ctx, &mediasoup.TransportConnectOptions{Ip: d.Tuple.LocalAddress, Port: &port})
		}
		if err := errors.Join(connect(local, remote), connect(remote, local)); err != nil {
			_ = local.Close()
			_ = remote.Close()
			return workerError("connect pipe transports", err)
		}
		pair := &pipePair{local: local, remote: remote}
		r.mu.Lock()
		r.pairObjs[key] = pair
		r.mu.Unlock()
		// Either side closing (its router closed) ends the pair.
		end := func(other *mediasoup.Transport) func(context.Context) {
			return func(context.Context) {
				forget()
				r.mu.Lock()
				if r.pairObjs[key] == pair {
					delete(r.pairObjs, key)
				}
				r.mu.Unlock()
				_ = other.Close()
			}
		}
		local.OnClose(end(remote))
		remote.OnClose(end(local))
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pair := r.pairObjs[key]
	if pair == nil || pair.local.Closed() || pair.remote.Closed() {
		return nil, errorf(ErrRoomClosed, "pipe between workers closed")
	}
	return pair, nil
}

// pipeMedia consumes producer id on the local pipe transport and produces it
// with the same id on the remote one; pause, resume and close follow.
func (r *Room) pipeMedia(ctx context.Context, id string, pair *pipePair, forget func()) error {
	var pc *mediasoup.Consumer
	err := r.consuming(id, func() (err error) {
		pc, err = pair.local.ConsumeContext(ctx, &mediasoup.ConsumerOptions{ProducerId: id})
		return err
	})
	if err != nil {
		return workerError("pipe consume", err)
	}
	pp, err := pair.remote.ProduceContext(ctx, &mediasoup.ProducerOptions{
		Id: id, Kind: pc.Kind(), RtpParameters: pc.RtpParameters(), Paused: pc.ProducerPaused(),
		AppData: pc.AppData(),
	})
	if err != nil {
		_ = pc.Close()
		return workerError("pipe produce", err)
	}
	// Closing the piped copy is a close of producer id (see Room.consuming);
	// this runs on mediasoup-go's channel goroutine, hence the goroutine.
	pc.OnClose(func(context.Context) {
		forget()
		go r.closingProducers([]string{id}, func() { _ = pp.Close() })
	})
	pp.OnClose(func(context.Context) { forget(); _ = pc.Close() })
	pc.OnProducerPause(func(context.Context) { _ = pp.Pause() })
	pc.OnProducerResume(func(context.Context) { _ = pp.Resume() })
	// The producer may have paused or resumed while we were wiring.
	if pc.ProducerPaused() != pp.Paused() {
		if pc.ProducerPaused() {
			return pp.Pause()
		}
		return pp.Resume()
	}
	return nil
}

// pipeData does for a data producer what pipeMedia does for a producer,
// under the same producer lock (mediasoup-go's ConsumeDataContext has
// ConsumeContext's fault, see Room.consuming).
func (r *Room) pipeData(ctx context.Context, id string, pair *pipePair, forget func()) error {
	var dc *mediasoup.DataConsumer
	err := r.consuming(id, func() (err error) {
		dc, err = pair.local.ConsumeDataContext(ctx, &mediasoup.DataConsumerOptions{DataProducerId: id})
		return err
	})
	if err != nil {
		return workerError("pipe consume data", err)
	}
	dp, err := pair.remote.ProduceDataContext(ctx, &mediasoup.DataProducerOptions{
		Id: id, SctpStreamParameters: dc.SctpStreamParameters(), Label: dc.Label(), Protocol: dc.Protocol(),
	})
	if err != nil {
		_ = dc.Close()
		return workerError("pipe produce data", err)
	}
	// As for media: closing the piped copy is a close of data producer id,
	// and this runs on mediasoup-go's channel goroutine.
	dc.OnClose(func(context.Context) {
		forget()
		go r.closingProducers([]string{id}, func() { _ = dp.Close() })
	})
	dp.OnClose(func(context.Context) { forget(); _ = dc.Close() })
	return nil
}

// releaseRouter closes rt, a router the room took on another worker, once
// no peer lives on it any more: its pipe transports go with it (and, through
// them, the pipe consumers on the other routers), so no media keeps crossing
// to a worker nobody listens on. The room's first router stays (it holds the
// audio observers); it goes with the room.
func (r *Room) releaseRouter(rt *worker.Router) {
	if rt == nil || rt == r.router {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return // closeRouters does it
	}
	for _, q := range r.peers {
		if q.router == rt {
			r.mu.Unlock()
			return
		}
	}
	i := slices.Index(r.routers, rt)
	if i < 0 {
		r.mu.Unlock()
		return // released already
	}
	r.routers = slices.Delete(r.routers, i, i+1)
	n := len(r.routers)
	r.mu.Unlock()
	r.closeRouter(rt)
	r.log.Info("room released a worker (its last peer left)", zap.Int("worker", rt.Worker.Index()),
		zap.Int("pid", rt.Pid), zap.Int("routers", n))
}

// closeRouter closes one of the room's routers. Closing a router closes
// the producers on it, whichever they are: it waits for every consume in
// the room (see Room.consuming).
func (r *Room) closeRouter(rt *worker.Router) {
	r.routerMu.Lock()
	defer r.routerMu.Unlock()
	ctx, cancel := workerContext()
	defer cancel()
	if err := rt.CloseContext(ctx); err != nil {
		r.log.Debug("router close", zap.Error(err))
	}
}

// closeRouters closes every router of the room (and with them the pipes).
func (r *Room) closeRouters() {
	for _, rt := range r.Routers() {
		r.closeRouter(rt)
	}
}

// maxWorkersPerRoom is the cap on routers per room (0 in Options: no cap).
func (m *Manager) maxWorkersPerRoom() int {
	if m.opts.MaxWorkersPerRoom > 0 {
		return m.opts.MaxWorkersPerRoom
	}
	return 1 << 30
}
