package room

import (
	"context"
	"errors"
	"fmt"

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

// routerFor returns the router p lives on, choosing it on first use.
func (r *Room) routerFor(ctx context.Context, p *Peer) (*worker.Router, error) {
	r.mu.Lock()
	if p.router != nil {
		rt := p.router
		r.mu.Unlock()
		return rt, nil
	}
	rt, full := r.leastLoadedLocked()
	canGrow := len(r.routers) < r.m.maxWorkersPerRoom()
	r.mu.Unlock()
	if full && canGrow {
		grown, err := r.grow(ctx)
		switch {
		case err == nil:
			rt = grown
		case errors.Is(err, worker.ErrNoWorker):
			// Every live worker is in use by this room already.
		default:
			r.log.Warn("cannot add a router to the room", zap.Error(err))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.closed {
		return nil, ErrPeerClosed
	}
	if p.router == nil {
		p.router = rt
	}
	return p.router, nil
}

// leastLoadedLocked returns the router with the fewest consumers and whether
// even that one is at the budget. r.mu held.
func (r *Room) leastLoadedLocked() (*worker.Router, bool) {
	load := make(map[*worker.Router]int, len(r.routers))
	for _, q := range r.peers {
		if q.router != nil {
			load[q.router] += len(q.consumers)
		}
	}
	best := r.routers[0]
	for _, rt := range r.routers[1:] {
		if load[rt] < load[best] {
			best = rt
		}
	}
	return best, load[best] >= r.m.opts.RouterConsumerBudget
}

// grow adds a router on a worker the room does not use yet.
func (r *Room) grow(ctx context.Context) (*worker.Router, error) {
	r.growMu.Lock()
	defer r.growMu.Unlock()
	r.mu.Lock()
	if rt, full := r.leastLoadedLocked(); !full { // someone grew meanwhile
		r.mu.Unlock()
		return rt, nil
	}
	used := make(map[*worker.Worker]bool, len(r.routers))
	for _, rt := range r.routers {
		used[rt.Worker] = true
	}
	r.mu.Unlock()
	rt, err := r.m.pool.CreateRouterExcept(ctx, r.routerOptions(), used)
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
	r.mu.Unlock()
	rt.OnWorkerClosed(func(context.Context) { go r.workerDied() })
	r.log.Info("room spread to another worker", zap.Int("worker", rt.Worker.Index()),
		zap.Int("pid", rt.Pid), zap.Int("routers", n))
	return rt, nil
}

func (r *Room) routerOptions() *mediasoup.RouterOptions {
	return &mediasoup.RouterOptions{MediaCodecs: r.m.opts.MediaCodecs, AppData: mediasoup.H{"roomId": r.id}}
}

// ensurePipe makes producer (or data producer) id, living on router from,
// available on router to. Concurrent callers share one PipeToRouter.
func (r *Room) ensurePipe(ctx context.Context, id string, data bool, from, to *worker.Router) error {
	if from == nil || to == nil || from == to {
		return nil
	}
	key := pipeKey{id: id, to: to}
	r.mu.Lock()
	pp, ok := r.pipes[key]
	if !ok {
		pp = &pipe{done: make(chan struct{})}
		r.pipes[key] = pp
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
	defer close(pp.done)
	opts := &mediasoup.PipeToRouterOptions{Router: to.Router}
	if data {
		opts.DataProducerId = id
	} else {
		opts.ProducerId = id
	}
	forget := func(context.Context) {
		r.mu.Lock()
		if r.pipes[key] == pp {
			delete(r.pipes, key)
		}
		r.mu.Unlock()
	}
	res, err := from.PipeToRouterContext(ctx, opts)
	if err != nil {
		pp.err = fmt.Errorf("pipe %s to worker %d: %w", id, to.Worker.Index(), err)
		forget(ctx)
		return pp.err
	}
	// The piped copy closes with the original; then a later consumer pipes anew.
	if res.PipeProducer != nil {
		res.PipeProducer.OnClose(forget)
	}
	if res.PipeDataProducer != nil {
		res.PipeDataProducer.OnClose(forget)
	}
	return nil
}

// closeRouters closes every router of the room (and with them the pipes).
func (r *Room) closeRouters() {
	for _, rt := range r.Routers() {
		if err := rt.Close(); err != nil {
			r.log.Debug("router close", zap.Error(err))
		}
	}
}

// maxWorkersPerRoom is the cap on routers per room (0 in Options: no cap).
func (m *Manager) maxWorkersPerRoom() int {
	if m.opts.MaxWorkersPerRoom > 0 {
		return m.opts.MaxWorkersPerRoom
	}
	return 1 << 30
}
