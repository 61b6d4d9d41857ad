// Package worker owns the pool of mediasoup-worker subprocesses: it spawns
// them (one WebRtcServer each), places new routers on the least-loaded live
// worker, notices a worker's death, tells subscribers, and respawns it with
// backoff. It knows nothing of rooms or peers.
package worker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// Errors returned by the pool.
var (
	ErrNoWorker = errors.New("no live mediasoup worker")
	ErrClosed   = errors.New("worker pool closed")
)

// Options configure a Pool. Zero values take the defaults noted.
type Options struct {
	Bin              string // mediasoup-worker binary (required; see FindBinary)
	Count            int    // number of workers (required, > 0)
	RtcPort          int    // worker i's WebRtcServer listens UDP and TCP on RtcPort+i (required)
	ListenIP         string // IP the WebRtcServers bind (default 127.0.0.1)
	AnnouncedAddress string // address put in ICE candidates (default: none, ListenIP is used)
	LogLevel         string // the worker's own log level (default warn)
	// ListenInfos, when not empty, replaces ListenIP/AnnouncedAddress: every
	// address each WebRtcServer binds (on its RtcPort+i), with its own
	// announced address.
	ListenInfos []ListenInfo

	RespawnMinDelay time.Duration // first respawn delay (default 100ms)
	RespawnMaxDelay time.Duration // backoff cap (default 10s)
	// A worker that lived at least StableAfter before dying restarts the
	// backoff from RespawnMinDelay (default 30s).
	StableAfter time.Duration

	Logger *zap.Logger // default: a no-op logger
}

// ListenInfo is one address a WebRtcServer binds.
type ListenInfo struct {
	Protocol         string // "udp", "tcp", or "" for both
	IP               string
	AnnouncedAddress string // put in ICE candidates instead of IP
	ExposeInternalIP bool   // also offer IP when AnnouncedAddress is set
}

// State of one worker slot.
type State string

// Worker slot states.
const (
	StateStarting State = "starting"
	StateAlive    State = "alive"
	StateDead     State = "dead" // died; a respawn is scheduled
	StateClosed   State = "closed"
)

// Death tells subscribers that a worker process died unexpectedly. Every
// router it hosted is gone; the slot is respawned after a backoff.
type Death struct {
	Index    int
	Pid      int
	Err      error // the exit reason reported by mediasoup-go (may be nil)
	Restarts int   // how many times this slot had been respawned before
}

// Pool is a fixed set of worker slots. Each slot holds at most one live
// mediasoup-worker process at a time and keeps its index and port for life.
type Pool struct {
	opts   Options
	log    *zap.Logger
	slog   *mediasoupLogger
	slots  []*Worker
	closed atomic.Bool

	mu     sync.Mutex // guards subs, nextID and placement decisions
	subs   map[int]func(Death)
	nextID int
	// Listeners of every completed worker request (OnRequest), copied on write.
	reqSubs atomic.Pointer[[]func(int, mediasoup.ChannelRequestStats)]

	wg sync.WaitGroup // respawn goroutines
}

// Worker is one slot of the pool. Its methods are safe for concurrent use.
type Worker struct {
	pool  *Pool
	index int
	port  int

	mu        sync.Mutex
	ms        *mediasoup.Worker
	msClosed  chan struct{} // closed once mediasoup-go finished closing ms
	msExited  chan struct{} // closed once mediasoup-go's waiter is done with ms's process
	server    *mediasoup.WebRtcServer
	state     State
	pid       int
	restarts  int
	failures  int // consecutive early deaths or failed spawns
	startedAt time.Time
	lastErr   error
	timer     *time.Timer
	gen       uint64 // bumped on every spawn; load counts of older generations are ignored

	routers, transports, producers, consumers atomic.Int64

	inflight   chan struct{} // Do's slots
	background chan struct{} // DoBackground's
}

// MaxInFlight bounds the requests in flight to one worker through Do.
// mediasoup-go sends every request of a worker under one mutex, which its
// response reader takes too: with hundreds of requests queued on it (a room
// of 2,000 filling up at once), every response waited behind them, and
// worker round trips took a quarter of a second with the worker idle.
// Requests beyond this wait their turn here instead, where they hold up no
// response.
const MaxInFlight = 32

// MaxBackground of those may be background work (DoBackground): the
// consumers a join or a produce creates for the room. A client's own
// requests (a transport, its connect) then never queue behind a room's
// fan-out of thousands of consumes.
const MaxBackground = 16

// Do runs f, which sends requests to this worker, once fewer than
// MaxInFlight others are running; ctx bounds the wait.
func (w *Worker) Do(ctx context.Context, f func() error) error {
	if !takeSlot(w.inflight, ctx.Done) {
		return ctx.Err()
	}
	defer func() { <-w.inflight }()
	return f()
}

// DoBackground is Do for background work: at most MaxBackground at a
// time. It waits at most wait for its turn (the error is then
// context.DeadlineExceeded); a turn that is free costs no timer: a room's
// fan-out runs thousands of these.
func (w *Worker) DoBackground(wait time.Duration, f func() error) error {
	var t *time.Timer
	expired := func() <-chan time.Time {
		if t == nil {
			t = time.NewTimer(wait)
		}
		return t.C
	}
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	if !takeSlot(w.background, expired) {
		return context.DeadlineExceeded
	}
	defer func() { <-w.background }()
	if !takeSlot(w.inflight, expired) {
		return context.DeadlineExceeded
	}
	defer func() { <-w.inflight }()
	return f()
}

// takeSlot takes one of slots' places: at once if one is free, else once
// one frees up, unless giveUp()'s channel is ready first (false).
func takeSlot[T any](slots chan struct{}, giveUp func() <-chan T) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	select {
	case slots <- struct{}{}:
		return true
	case <-giveUp():
		return false
	}
}

// Router is a router placed on a worker by the pool, with the WebRtcServer
// of that worker for the transports created on it.
type Router struct {
	*mediasoup.Router
	Worker       *Worker
	WebRtcServer *mediasoup.WebRtcServer
	Pid          int
}

// Info is a snapshot of one slot, for health checks and metrics.
type Info struct {
	Index      int       `json:"index"`
	Pid        int       `json:"pid"`
	State      State     `json:"state"`
	Port       int       `json:"rtcPort"`
	Restarts   int       `json:"restarts"`
	Routers    int64     `json:"routers"`
	Transports int64     `json:"transports"`
	Producers  int64     `json:"producers"`
	Consumers  int64     `json:"consumers"`
	Since      time.Time `json:"since"`
	LastError  string    `json:"lastError,omitempty"`
	// Requests in flight to the worker (a climbing figure: the worker is
	// falling behind).
	PendingRequests int `json:"pendingRequests"`
}

// New starts opts.Count workers and their WebRtcServers. It fails, leaving
// no process behind, if any of them cannot start.
func New(opts Options) (*Pool, error) {
	if opts.Bin == "" {
		return nil, errors.New("worker pool: no worker binary given")
	}
	if opts.Count <= 0 {
		return nil, fmt.Errorf("worker pool: count must be > 0, got %d", opts.Count)
	}
	if opts.RtcPort <= 0 || opts.RtcPort+opts.Count-1 > 65535 {
		return nil, fmt.Errorf("worker pool: rtc ports %d..%d out of range", opts.RtcPort, opts.RtcPort+opts.Count-1)
	}
	if opts.ListenIP == "" {
		opts.ListenIP = "127.0.0.1"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if opts.RespawnMinDelay <= 0 {
		opts.RespawnMinDelay = 100 * time.Millisecond
	}
	if opts.RespawnMaxDelay < opts.RespawnMinDelay {
		opts.RespawnMaxDelay = max(10*time.Second, opts.RespawnMinDelay)
	}
	if opts.StableAfter <= 0 {
		opts.StableAfter = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	p := &Pool{
		opts: opts,
		log:  opts.Logger,
		subs: map[int]func(Death){},
	}
	p.slog = newMediasoupLogger(opts.Logger)
	for i := range opts.Count {
		w := &Worker{pool: p, index: i, port: opts.RtcPort + i, state: StateStarting, inflight: make(chan struct{}, MaxInFlight),
			background: make(chan struct{}, MaxBackground)}
		p.slots = append(p.slots, w)
	}
	for _, w := range p.slots {
		if err := w.spawn(false); err != nil {
			p.Close()
			return nil, fmt.Errorf("worker %d: %w", w.index, err)
		}
	}
	p.log.Info("worker pool started", zap.Int("workers", opts.Count), zap.String("bin", opts.Bin),
		zap.String("listen", p.listenDesc()), zap.Int("rtcPort", opts.RtcPort))
	return p, nil
}

// Workers returns every slot, in index order.
func (p *Pool) Workers() []*Worker { return append([]*Worker(nil), p.slots...) }

// Infos returns a snapshot of every slot.
func (p *Pool) Infos() []Info {
	out := make([]Info, len(p.slots))
	for i, w := range p.slots {
		out[i] = w.Info()
	}
	return out
}

// Alive reports whether every slot holds a live worker.
func (p *Pool) Alive() bool {
	for _, w := range p.slots {
		if w.State() != StateAlive {
			return false
		}
	}
	return true
}

// OnDeath registers fn to be called (on its own goroutine per death, after the
// worker's routers are closed) whenever a worker dies unexpectedly. The
// returned function unregisters it.
func (p *Pool) OnDeath(fn func(Death)) (cancel func()) {
	p.mu.Lock()
	id := p.nextID
	p.nextID++
	p.subs[id] = fn
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.subs, id)
		p.mu.Unlock()
	}
}

// OnRequest registers fn to be called after every request to a worker
// completes, with the worker's index and mediasoup-go's figures (method,
// duration, error). It runs on the requesting goroutine: it must not block.
// The returned function unregisters it.
func (p *Pool) OnRequest(fn func(index int, s mediasoup.ChannelRequestStats)) (cancel func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var subs []func(int, mediasoup.ChannelRequestStats)
	if cur := p.reqSubs.Load(); cur != nil {
		subs = append(subs, *cur...)
	}
	subs = append(subs, fn)
	p.reqSubs.Store(&subs)
	i := len(subs) - 1
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		cur := p.reqSubs.Load()
		if cur == nil || i >= len(*cur) {
			return
		}
		next := append([]func(int, mediasoup.ChannelRequestStats){}, *cur...)
		next[i] = nil
		p.reqSubs.Store(&next)
	}
}

// requestDone hands a completed worker request to the OnRequest listeners.
func (p *Pool) requestDone(index int, s mediasoup.ChannelRequestStats) {
	if subs := p.reqSubs.Load(); subs != nil {
		for _, fn := range *subs {
			if fn != nil {
				fn(index, s)
			}
		}
	}
}

// Pick returns the least-loaded live worker; see PickExcept.
func (p *Pool) Pick() (*Worker, error) { return p.PickExcept(nil) }

// PickExcept returns the least-loaded live worker not in except. The rule: fewest consumers, then
// fewest transports, then fewest routers, then lowest index. Consumers are
// what costs a worker CPU (each forwards a stream); transports and routers
// break ties so that empty routers still spread across workers.
func (p *Pool) PickExcept(except map[*Worker]bool) (*Worker, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	var best *Worker
	for _, w := range p.slots {
		if !w.live() || except[w] {
			continue
		}
		if best == nil || w.lessLoaded(best) {
			best = w
		}
	}
	if best == nil {
		return nil, ErrNoWorker
	}
	return best, nil
}

func (w *Worker) lessLoaded(o *Worker) bool {
	a := [3]int64{w.consumers.Load(), w.transports.Load(), w.routers.Load()}
	b := [3]int64{o.consumers.Load(), o.transports.Load(), o.routers.Load()}
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return w.index < o.index
}

// CreateRouter creates a router on the least-loaded live worker.
func (p *Pool) CreateRouter(ctx context.Context, opts *mediasoup.RouterOptions) (*Router, error) {
	return p.CreateRouterExcept(ctx, opts, nil)
}

// CreateRouterExcept creates a router on the least-loaded live worker not in
// except (a room spreading over workers wants one it does not use yet).
func (p *Pool) CreateRouterExcept(ctx context.Context, opts *mediasoup.RouterOptions, except map[*Worker]bool) (*Router, error) {
	// Pick and reserve under one lock so that concurrent callers spread.
	p.mu.Lock()
	w, err := p.PickExcept(except)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	w.routers.Add(1) // reservation; the router's own accounting replaces it below
	p.mu.Unlock()
	defer w.routers.Add(-1)
	return w.CreateRouter(ctx, opts)
}

// CreateRouter creates a router on this worker.
func (w *Worker) CreateRouter(ctx context.Context, opts *mediasoup.RouterOptions) (*Router, error) {
	w.mu.Lock()
	ms, server, state, pid := w.ms, w.server, w.state, w.pid
	w.mu.Unlock()
	if state != StateAlive || ms == nil {
		return nil, fmt.Errorf("worker %d is %s: %w", w.index, state, ErrNoWorker)
	}
	r, err := ms.CreateRouterContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("worker %d (pid %d): create router: %w", w.index, pid, err)
	}
	return &Router{Router: r, Worker: w, WebRtcServer: server, Pid: pid}, nil
}

// Close closes every worker and waits for their processes to exit. No
// mediasoup-worker process of this pool survives it. Safe to call twice.
func (p *Pool) Close() {
	if p.closed.Swap(true) {
		return
	}
	for _, w := range p.slots {
		w.mu.Lock()
		if w.timer != nil && w.timer.Stop() {
			p.wg.Done() // the scheduled respawn will never run
		}
		w.mu.Unlock()
	}
	p.wg.Wait() // a respawn in progress finishes, sees closed, and stops its worker
	var wg sync.WaitGroup
	for _, w := range p.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.close()
		}()
	}
	wg.Wait()
	p.log.Info("worker pool closed")
}

// Index is the slot's position in the pool (stable across respawns).
func (w *Worker) Index() int { return w.index }

// Port is the slot's WebRtcServer port (UDP and TCP).
func (w *Worker) Port() int { return w.port }

// live reports whether the slot's worker is alive. mediasoup-go marks a dead
// worker closed, and closes its routers, before our close listener runs:
// checking it too keeps Pick from choosing a worker in that window.
func (w *Worker) live() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state == StateAlive && w.ms != nil && !w.ms.Closed()
}

// State is the slot's current state.
func (w *Worker) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Pid is the live worker's process id, or 0.
func (w *Worker) Pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != StateAlive {
		return 0
	}
	return w.pid
}

// Info returns a snapshot of the slot.
func (w *Worker) Info() Info {
	w.mu.Lock()
	defer w.mu.Unlock()
	in := Info{
		Index: w.index, Pid: w.pid, State: w.state, Port: w.port, Restarts: w.restarts,
		Routers: w.routers.Load(), Transports: w.transports.Load(),
		Producers: w.producers.Load(), Consumers: w.consumers.Load(), Since: w.startedAt,
	}
	if w.state != StateAlive {
		in.Pid = 0
	} else if w.ms != nil {
		in.PendingRequests = w.ms.ChannelPendingRequests()
	}
	if w.lastErr != nil {
		in.LastError = w.lastErr.Error()
	}
	return in
}

// ResourceUsage asks the live worker for its getrusage() figures.
func (w *Worker) ResourceUsage(ctx context.Context) (*mediasoup.WorkerResourceUsage, error) {
	w.mu.Lock()
	ms, state := w.ms, w.state
	w.mu.Unlock()
	if state != StateAlive || ms == nil {
		return nil, fmt.Errorf("worker %d is %s: %w", w.index, state, ErrNoWorker)
	}
	return ms.GetResourceUsageContext(ctx)
}

// Dump asks the live worker which routers and WebRtcServers it holds.
func (w *Worker) Dump(ctx context.Context) (*mediasoup.WorkerDump, error) {
	w.mu.Lock()
	ms, state := w.ms, w.state
	w.mu.Unlock()
	if state != StateAlive || ms == nil {
		return nil, fmt.Errorf("worker %d is %s: %w", w.index, state, ErrNoWorker)
	}
	return ms.DumpContext(ctx)
}

// spawn starts a worker process and its WebRtcServer in this slot;
// respawn counts it as a restart, in the same step that makes it alive.
func (w *Worker) spawn(respawn bool) error {
	p := w.pool
	ms, err := p.startWorker(w.index)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.opts.Bin, err)
	}
	// Closed once mediasoup-go's process waiter is done with ms (it logs the
	// exit before it calls these listeners).
	exited := make(chan struct{})
	ms.OnSubprocessClose(func(context.Context) { close(exited) })
	server, err := ms.CreateWebRtcServer(&mediasoup.WebRtcServerOptions{ListenInfos: p.listenInfos(w.port)})
	if err != nil {
		stop(ms, exited)
		return fmt.Errorf("WebRtcServer on port %d (%s): %w", w.port, p.listenDesc(), err)
	}

	closed := make(chan struct{})
	w.mu.Lock()
	w.gen++
	gen := w.gen
	w.ms, w.server, w.pid, w.msClosed, w.msExited = ms, server, ms.Pid(), closed, exited
	w.state = StateAlive
	if respawn {
		w.restarts++
	}
	w.startedAt = time.Now()
	w.routers.Store(0)
	w.transports.Store(0)
	w.producers.Store(0)
	w.consumers.Store(0)
	w.mu.Unlock()

	w.account(ms, gen)
	ms.OnClose(func(context.Context) {
		w.onClose(ms, gen)
		close(closed)
	})
	p.log.Info("worker started", zap.Int("index", w.index), zap.Int("pid", ms.Pid()), zap.Int("rtcPort", w.port))
	return nil
}

// startAttempts bounds the starts of one spawn that time out.
const startAttempts = 3

// spawnMu makes the process start its workers one at a time: mediasoup-go
// gives each one second, and workers starting together share the CPU.
var spawnMu sync.Mutex

// abandonedStarts counts the worker starts of this process that timed out.
var abandonedStarts atomic.Int64

// AbandonedStarts returns how many worker starts in this process exceeded
// mediasoup-go's start timeout. Each one's process was killed, but
// mediasoup-go (v2.4.1, still v2.6.0: NewWorker's doneCh is unbuffered) keeps
// two goroutines of it (the process waiter, blocked forever sending on a
// channel nobody reads, and the channel's reader) and its four pipe ends: a
// small leak per timed-out start, fixed only upstream.
func AbandonedStarts() int64 { return abandonedStarts.Load() }

// startWorker starts a mediasoup-worker process. mediasoup-go's NewWorker
// waits one second for the worker to report it is running; on a loaded
// machine that can pass, and NewWorker then returns ErrWorkerStartTimeout
// leaving the process running, unreachable (no Worker is returned) and its
// output readers with it. Each start is marked with a token in the process's
// environment, so that a timed-out start's process can be found and killed;
// then it tries again.
func (p *Pool) startWorker(index int) (*mediasoup.Worker, error) {
	spawnMu.Lock()
	defer spawnMu.Unlock()
	for attempt := 1; ; attempt++ {
		token := spawnToken()
		ms, err := mediasoup.NewWorker(p.opts.Bin, func(s *mediasoup.WorkerSettings) {
			s.LogLevel = mediasoup.WorkerLogLevel(p.opts.LogLevel)
			s.Logger = p.slog.with(index)
			s.AppData = mediasoup.H{"index": index}
			s.Env = []string{spawnTokenEnv + "=" + token}
			s.OnChannelRequest = func(st mediasoup.ChannelRequestStats) { p.requestDone(index, st) }
		})
		if !errors.Is(err, mediasoup.ErrWorkerStartTimeout) {
			return ms, err
		}
		abandonedStarts.Add(1)
		killed := killSpawned(token)
		p.log.Warn("worker start timed out; its process was killed", zap.Int("index", index),
			zap.Int("attempt", attempt), zap.Ints("killed", killed))
		if attempt == startAttempts {
			return nil, err
		}
	}
}

// spawnTokenEnv names the environment variable that marks a worker process
// with the token of its start.
const spawnTokenEnv = "MEDIASOUP_SERVER_SPAWN"

func spawnToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// killSpawned kills this process's children whose environment holds the
// spawn token, waits for them to exit, and returns their pids.
func killSpawned(token string) []int {
	want := []byte(spawnTokenEnv + "=" + token + "\x00")
	var killed []int
	for _, pid := range childPids() {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		// The worker leads its own process group (mediasoup-go sets
		// Setpgid): kill the group, anything it started goes with it.
		if syscall.Kill(-pid, syscall.SIGKILL) == nil || syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
			waitExit(pid, 5*time.Second)
		}
	}
	return killed
}

// childPids lists the processes whose parent is this process (Linux /proc).
func childPids() []int {
	entries, _ := os.ReadDir("/proc")
	me := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) >= 2 && f[1] == strconv.Itoa(me) {
			out = append(out, pid)
		}
	}
	return out
}

// listenInfos are the WebRtcServer's sockets on port: UDP before TCP for
// each address (Options.ListenInfos, else ListenIP/AnnouncedAddress).
func (p *Pool) listenInfos(port int) []*mediasoup.TransportListenInfo {
	infos := p.opts.ListenInfos
	if len(infos) == 0 {
		infos = []ListenInfo{{IP: p.opts.ListenIP, AnnouncedAddress: p.opts.AnnouncedAddress}}
	}
	var out []*mediasoup.TransportListenInfo
	for _, in := range infos {
		for _, proto := range []mediasoup.TransportProtocol{mediasoup.TransportProtocolUDP, mediasoup.TransportProtocolTCP} {
			if in.Protocol != "" && !strings.EqualFold(in.Protocol, string(proto)) {
				continue
			}
			out = append(out, &mediasoup.TransportListenInfo{
				Protocol:         proto,
				Ip:               in.IP,
				AnnouncedAddress: in.AnnouncedAddress,
				ExposeInternalIp: in.ExposeInternalIP && in.AnnouncedAddress != "",
				Port:             uint16(port),
			})
		}
	}
	return out
}

// listenDesc describes the listen infos: "udp:IP[=ANNOUNCED],tcp:…".
func (p *Pool) listenDesc() string {
	var parts []string
	for _, in := range p.listenInfos(0) {
		s := string(in.Protocol) + ":" + in.Ip
		if in.AnnouncedAddress != "" {
			s += "=" + in.AnnouncedAddress
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// closer is what the counted mediasoup objects have in common.
type closer interface {
	OnClose(func(context.Context)) (remove func())
}

// account keeps the slot's load counters in step with the worker's objects.
func (w *Worker) account(ms *mediasoup.Worker, gen uint64) {
	counter := func(c *atomic.Int64, obj closer) {
		if w.generation() != gen {
			return
		}
		c.Add(1)
		obj.OnClose(func(context.Context) {
			if w.generation() == gen {
				c.Add(-1)
			}
		})
	}
	ms.OnNewRouter(func(_ context.Context, r *mediasoup.Router) {
		counter(&w.routers, r)
		r.OnNewTransport(func(_ context.Context, t *mediasoup.Transport) {
			counter(&w.transports, t)
			t.OnNewProducer(func(_ context.Context, pr *mediasoup.Producer) { counter(&w.producers, pr) })
			t.OnNewConsumer(func(_ context.Context, c *mediasoup.Consumer) { counter(&w.consumers, c) })
		})
	})
}

func (w *Worker) generation() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// onClose runs when a worker of generation gen has closed, by our hand or not.
func (w *Worker) onClose(ms *mediasoup.Worker, gen uint64) {
	p := w.pool
	if !ms.Died() { // closed on purpose, by close or spawn
		return
	}
	w.mu.Lock()
	if w.gen != gen || w.state != StateAlive {
		w.mu.Unlock()
		return
	}
	err := ms.Err()
	lived := time.Since(w.startedAt)
	if lived >= p.opts.StableAfter {
		w.failures = 0
	}
	w.failures++
	delay := w.backoff()
	death := Death{Index: w.index, Pid: w.pid, Err: err, Restarts: w.restarts}
	w.state = StateDead
	w.lastErr = err
	if err == nil {
		w.lastErr = errors.New("worker process exited")
	}
	w.ms, w.server = nil, nil
	w.gen++ // invalidate the dead worker's load accounting
	w.routers.Store(0)
	w.transports.Store(0)
	w.producers.Store(0)
	w.consumers.Store(0)
	if !p.closed.Load() {
		p.wg.Add(1)
		w.timer = time.AfterFunc(delay, w.respawn)
	}
	w.mu.Unlock()

	p.log.Error("worker died", zap.Int("index", w.index), zap.Int("pid", death.Pid),
		zap.Duration("lived", lived), zap.Error(err), zap.Duration("respawnIn", delay))
	p.mu.Lock()
	subs := make([]func(Death), 0, len(p.subs))
	for _, fn := range p.subs {
		subs = append(subs, fn)
	}
	p.mu.Unlock()
	for _, fn := range subs {
		go fn(death)
	}
}

// backoff is RespawnMinDelay doubled per consecutive failure, capped. w.mu held.
func (w *Worker) backoff() time.Duration {
	o := w.pool.opts
	d := o.RespawnMinDelay
	for i := 1; i < w.failures && d < o.RespawnMaxDelay; i++ {
		d *= 2
	}
	return min(d, o.RespawnMaxDelay)
}

func (w *Worker) respawn() {
	p := w.pool
	defer p.wg.Done()
	w.mu.Lock()
	w.timer = nil
	w.state = StateStarting
	w.mu.Unlock()
	if p.closed.Load() {
		return
	}
	err := w.spawn(true)
	if err == nil {
		if p.closed.Load() { // Close ran while we were spawning
			w.close()
		}
		return
	}
	w.mu.Lock()
	w.failures++
	w.lastErr = err
	w.state = StateDead
	delay := w.backoff()
	if !p.closed.Load() {
		p.wg.Add(1)
		w.timer = time.AfterFunc(delay, w.respawn)
	}
	w.mu.Unlock()
	p.log.Error("worker respawn failed", zap.Int("index", w.index), zap.Error(err), zap.Duration("retryIn", delay))
}

// close stops the slot's worker, if any, and waits for its process to exit.
func (w *Worker) close() {
	w.mu.Lock()
	ms, pid, closed, exited := w.ms, w.pid, w.msClosed, w.msExited
	w.state = StateClosed
	w.ms, w.server = nil, nil
	w.mu.Unlock()
	if ms == nil {
		return
	}
	if !stop(ms, exited) {
		w.pool.log.Warn("worker process did not exit", zap.Int("index", w.index), zap.Int("pid", pid))
	}
	// mediasoup-go reaps the process, then closes its channel, routers and
	// Worker and logs it: Close returns after that, not before.
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		w.pool.log.Warn("mediasoup-go did not finish closing the worker", zap.Int("index", w.index), zap.Int("pid", pid))
	}
}

// stop closes a worker and waits until mediasoup-go's process waiter is done
// with it (exited: closed by an OnSubprocessClose listener). Worker.Close asks
// the worker to close and kills the process if it is still there a second
// later; since mediasoup-go v2.5 it no longer races with the process waiter
// (v2.4.1 read cmd.ProcessState while cmd.Wait wrote it), so the pool uses it
// instead of signalling the process itself. It reports false if that took
// more than 5 s.
func stop(ms *mediasoup.Worker, exited <-chan struct{}) bool {
	ms.Close()
	select {
	case <-exited:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// waitExit polls until process pid is gone (and reaped), or timeout.
func waitExit(pid int, timeout time.Duration) bool {
	if pid <= 0 {
		return true
	}
	deadline := time.Now().Add(timeout)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mediasoupLogger bridges mediasoup-go's *slog.Logger to zap (demoting the
// messages quietHandler knows to be benign).
type mediasoupLogger struct{ base *zap.Logger }

func newMediasoupLogger(l *zap.Logger) *mediasoupLogger { return &mediasoupLogger{base: l} }

func (m *mediasoupLogger) with(index int) *slog.Logger {
	return slog.New(quietHandler{Handler: zapslog.NewHandler(m.base.With(zap.Int("worker", index)).Core(),
		zapslog.WithName(strings.TrimPrefix(m.base.Name()+".mediasoup", ".")))})
}
