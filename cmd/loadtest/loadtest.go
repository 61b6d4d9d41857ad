package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
)

// Config is one load test run.
type Config struct {
	URL   string // ws://127.0.0.1:4443
	Rooms int    // rooms
	Peers int    // peers per room
	// Producers per room (0: every peer, a full mesh). The first Producers
	// peers of each room produce audio and video and consume each other;
	// the others (viewers) only consume, with a receiving transport alone,
	// and start once every producing peer of the run has produced.
	Producers int
	Mode      string        // "signaling" or "media"
	Duration  time.Duration // closed-loop phase (0: skip it)
	// Hold: during Duration, send no requests, only hold the peers (and
	// in media mode their media): the phase measures media alone.
	Hold           bool
	Timeout        time.Duration // bounds setup-to-full-mesh, and teardown, each
	RequestTimeout time.Duration // one request
	Concurrency    int           // peers setting up at once (0: all)
	ServerPid      int           // the server's pid, for CPU/RSS (0: not sampled)
	RoomPrefix     string        // room ids are PREFIX-r0, PREFIX-r1, … ("" = lt-<random>)
	SampleInterval time.Duration // CPU/RSS sampling interval (default 250 ms)
	Progress       io.Writer     // progress bar (nil: none)
	// Mode floor: no server; the same operations straight through
	// mediasoup-go on workers this process starts.
	WorkerBin string // mediasoup-worker binary
	Workers   int    // default 2
	RtcPort   int    // worker i's WebRtcServer port is RtcPort+i (0: any free port)
}

// Report is the outcome of a run. Durations are in milliseconds.
type Report struct {
	Mode         string `json:"mode"`
	URL          string `json:"url"`
	Rooms        int    `json:"rooms"`
	PeersPerRoom int    `json:"peersPerRoom"`
	// ProducersPerRoom: peers of each room that produce (= PeersPerRoom:
	// a full mesh).
	ProducersPerRoom int       `json:"producersPerRoom"`
	Peers            int       `json:"peers"`
	StartedAt        time.Time `json:"startedAt"`
	Host             HostInfo  `json:"host"`

	PeersJoined int `json:"peersJoined"`
	PeersFailed int `json:"peersFailed"`

	// Setup is the join latency: from starting the WebSocket dial to the
	// join answer (dial, getRouterRtpCapabilities, two transports created
	// and connected, join), per peer. Dial is the WebSocket handshake alone.
	Setup Latency `json:"joinLatency"`
	Dial  Latency `json:"dialLatency"`

	// The full mesh: every peer holds a consumer of every other peer's
	// producers in its room, R × P × (P−1) × 2 consumers.
	ExpectedConsumers int  `json:"expectedConsumers"`
	Consumers         int  `json:"consumers"`
	MissingConsumers  int  `json:"missingConsumers"`
	FullMesh          bool `json:"fullMesh"`
	// From the first dial to the last expected consumer accepted.
	FullMeshMs float64 `json:"fullMeshMs"`
	// From the last produce answer to the last expected consumer accepted.
	MeshAfterProduceMs float64 `json:"meshAfterLastProduceMs"`
	// Consumers announced per second over FullMeshMs.
	ConsumersPerSecond float64 `json:"consumersPerSecond"`
	// CPU time the server process and its workers spent in the setup phase
	// (first dial to full mesh) per expected consumer, in ms (0: not
	// sampled). The phase also creates 2 transports and 2 producers per
	// peer; with P peers a room has P² consumers, so for large P this is
	// the cost of one consumer.
	ServerCPUPerConsumerMs float64 `json:"serverCpuPerConsumerMs"`
	WorkerCPUPerConsumerMs float64 `json:"workerCpuPerConsumerMs"`
	// Routers the server reported once the mesh was complete.
	RoutersAtMesh int64 `json:"routersAtMesh"`

	Methods []MethodStats `json:"methods"`
	Loop    *LoopStats    `json:"loop,omitempty"`
	Media   *MediaStats   `json:"media,omitempty"` // mode media

	Teardown  TeardownStats  `json:"teardown"`
	Processes []ProcStats    `json:"processes,omitempty"`
	Notifs    map[string]int `json:"notifications"`
	Errors    []string       `json:"errors,omitempty"`
	Notes     []string       `json:"notes,omitempty"`
}

// HostInfo describes where the load generator ran.
type HostInfo struct {
	CPUs       int    `json:"cpus"`
	LoadBefore string `json:"loadavgBefore"`
	LoadAfter  string `json:"loadavgAfter"`
}

// LoopStats is the closed-loop phase: every peer sends getTransportStats
// back to back, one in flight per peer.
type LoopStats struct {
	DurationS      float64 `json:"durationS"`
	Peers          int     `json:"peers"`
	Requests       int     `json:"requests"`
	OK             int     `json:"ok"`
	RateLimited    int     `json:"rateLimited"` // 429 answers
	Failed         int     `json:"failed"`      // any other error
	OKPerSec       float64 `json:"okPerSec"`
	RequestsPerSec float64 `json:"requestsPerSec"`
	RTT            Latency `json:"rtt"`            // successful requests
	RateLimitedRTT Latency `json:"rateLimitedRtt"` // 429 answers
	// CPU the server process and its workers spent in the loop phase per
	// request (any answer, 429s included), in µs (0: not sampled).
	ServerCPUPerRequestUs float64 `json:"serverCpuPerRequestUs"`
	WorkerCPUPerRequestUs float64 `json:"workerCpuPerRequestUs"`
}

// TeardownStats is closing every socket until the server reports its
// routers gone.
type TeardownStats struct {
	CloseMs       float64 `json:"closeMs"` // closing the sockets
	Ms            float64 `json:"ms"`      // until /healthz shows the routers gone
	Complete      bool    `json:"complete"`
	RoutersBefore int64   `json:"routersBefore"` // before the run (other users of the server)
	RoutersAfter  int64   `json:"routersAfter"`
}

// Run runs the load test and returns its report. The error is for runs
// that could not start; a run whose mesh is incomplete returns a report
// with MissingConsumers > 0 and no error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	lt := newLoadtest(cfg)
	return lt.run(ctx)
}

func (cfg *Config) check() error {
	if cfg.Rooms < 1 || cfg.Peers < 1 {
		return errors.New("-rooms and -peers must be at least 1")
	}
	if cfg.Producers < 0 || cfg.Producers > cfg.Peers {
		return fmt.Errorf("-producers %d: must be between 0 (every peer) and -peers (%d)", cfg.Producers, cfg.Peers)
	}
	if cfg.Producers == 0 {
		cfg.Producers = cfg.Peers
	}
	switch cfg.Mode {
	case "signaling", "media":
	case "floor":
		if cfg.Workers < 1 {
			cfg.Workers = 2
		}
	default:
		return fmt.Errorf("-mode %q: must be signaling, media or floor", cfg.Mode)
	}
	if cfg.Mode != "floor" {
		u, err := url.Parse(cfg.URL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("-url %q: not a ws://host:port URL", cfg.URL)
		}
		switch u.Scheme {
		case "ws", "wss", "http", "https":
		default:
			return fmt.Errorf("-url %q: scheme must be ws, wss, http or https", cfg.URL)
		}
	}
	if cfg.Duration < 0 || cfg.Timeout <= 0 {
		return errors.New("-duration must be ≥ 0 and -timeout > 0")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = 250 * time.Millisecond
	}
	if cfg.RoomPrefix == "" {
		cfg.RoomPrefix = "lt-" + strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)
	}
	return nil
}

type loadtest struct {
	cfg    Config
	rec    *recorder
	health *healthClient
	smp    *sampler
	peers  []*lpeer
	start  time.Time

	phase      atomic.Value // string
	setupEnded atomic.Int64 // peers whose setup ended (ok or not)
	joined     atomic.Int64
	failed     atomic.Int64
	consumers  atomic.Int64
	complete   atomic.Int64 // peers holding all their expected consumers
	meshDone   chan struct{}
	lastCons   atomic.Int64 // ns since start of the last consumer accepted
	lastProd   atomic.Int64 // ns since start of the last produce answer
	loopReqs   atomic.Int64
	loopEnd    atomic.Int64 // unix ns
	floor      *floor       // mode floor
	teardownOf atomic.Int64 // routers still to go, for the progress bar

	mu     sync.Mutex
	errs   []string
	nerrs  int
	notes  []string
	notifs map[string]int
}

func newLoadtest(cfg Config) *loadtest {
	lt := &loadtest{cfg: cfg, rec: newRecorder(), meshDone: make(chan struct{}), notifs: map[string]int{}}
	lt.phase.Store("starting")
	lt.health = newHealthClient(cfg.URL)
	return lt
}

func (lt *loadtest) fail(format string, args ...any) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.nerrs++
	if len(lt.errs) < 20 {
		lt.errs = append(lt.errs, fmt.Sprintf(format, args...))
	}
}

func (lt *loadtest) note(format string, args ...any) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.notes = append(lt.notes, fmt.Sprintf(format, args...))
}

func (lt *loadtest) onNotification(method string, _ json.RawMessage) {
	lt.mu.Lock()
	lt.notifs[method]++
	lt.mu.Unlock()
}

func (lt *loadtest) total() int { return lt.cfg.Rooms * lt.cfg.Peers }

func (lt *loadtest) since() int64 { return int64(time.Since(lt.start)) }

func (lt *loadtest) run(ctx context.Context) (*Report, error) {
	cfg := lt.cfg
	rep := &Report{Mode: cfg.Mode, URL: cfg.URL, Rooms: cfg.Rooms, PeersPerRoom: cfg.Peers, ProducersPerRoom: cfg.Producers,
		Peers: lt.total(), Host: HostInfo{CPUs: runtime.NumCPU(), LoadBefore: loadavg()}}
	rep.ExpectedConsumers = lt.expectedConsumers()

	lt.smp = newSampler(cfg.SampleInterval)
	var h0 *health
	var herr error
	if cfg.Mode == "floor" {
		f, err := startFloor(lt)
		if err != nil {
			return nil, err
		}
		lt.floor = f
		defer f.close()
		rep.URL = ""
		herr = errors.New("no server")
		lt.smp.track("server", os.Getpid())
		for i, w := range f.workers {
			lt.smp.track(fmt.Sprintf("worker %d", i), w.Pid())
		}
		lt.note("mode floor: the same operations straight through mediasoup-go in this process (no WebSocket, no JSON, no room layer); the \"server\" process is this one")
	} else {
		// Before: the server's workers and how many routers it has already.
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h0, herr = lt.health.get(hctx)
		cancel()
	}
	switch {
	case lt.floor != nil:
	case herr != nil:
		lt.note("GET %s failed (%v): no worker CPU/RSS, no teardown measure", lt.health.url, herr)
	default:
		rep.Teardown.RoutersBefore = h0.routers()
		if h0.routers() > 0 {
			lt.note("the server had %d routers before the run: someone else is using it", h0.routers())
		}
	}

	if lt.floor != nil {
		// tracked above
	} else if isLoopback(cfg.URL) {
		lt.smp.track("server", cfg.ServerPid)
		if herr == nil {
			for _, w := range h0.Workers {
				lt.smp.track(fmt.Sprintf("worker %d", w.Index), w.Pid)
			}
		}
	} else if cfg.ServerPid > 0 || herr == nil {
		lt.note("the server is not on loopback: its processes are not sampled (this only works on the same machine)")
	}
	lt.smp.track("loadtest", os.Getpid())
	lt.smp.start()

	// Phase 1: every peer sets up, joins and produces; wait for the mesh.
	lt.start = time.Now()
	rep.StartedAt = lt.start
	lt.setPhase("setup")
	prog := startProgress(cfg.Progress, lt.status)
	defer prog.end()
	for r := 0; r < cfg.Rooms; r++ {
		for i := 0; i < cfg.Peers; i++ {
			p := &lpeer{lt: lt, room: fmt.Sprintf("%s-r%d", cfg.RoomPrefix, r), id: fmt.Sprintf("p%d", i),
				produces: i < cfg.Producers, expected: cfg.Producers * 2, consumed: map[string]bool{}}
			if p.produces {
				p.expected -= 2 // its own
			}
			lt.peers = append(lt.peers, p)
		}
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, cfg.Timeout)
	var sem chan struct{}
	if cfg.Concurrency > 0 {
		sem = make(chan struct{}, cfg.Concurrency)
	}
	var wg sync.WaitGroup
	// The producing peers first, then (one-to-many) the viewers.
	wave := func(produces bool) {
		for _, p := range lt.peers {
			if p.produces != produces {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if sem != nil {
					select {
					case sem <- struct{}{}:
						defer func() { <-sem }()
					case <-setupCtx.Done():
						lt.failed.Add(1)
						lt.setupEnded.Add(1)
						return
					}
				}
				p.setup(setupCtx)
			}()
		}
	}
	wave(true)
	if cfg.Producers < cfg.Peers {
		wg.Wait()
		wave(false)
	}
	lt.waitMesh(setupCtx)
	// Every consumer arrived, but a producing peer may still be waiting
	// for its own produce answer: its viewers can hear of the producer
	// first (the server answers produce, then fans out, on other
	// connections). The setups end on their own or at setupCtx's timeout;
	// cancelling them here would fail a request that is being answered.
	wg.Wait()
	cancelSetup()
	meshAt := time.Now()
	if lt.complete.Load() == int64(lt.total()) {
		rep.FullMesh = true
	}
	if herr == nil {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if h, err := lt.health.get(hctx); err == nil {
			rep.RoutersAtMesh = h.routers()
		}
		cancel()
	}

	if cfg.Mode == "media" {
		mctx, cancel := context.WithTimeout(ctx, max(0, cfg.Timeout-time.Since(lt.start)))
		rep.Media = lt.waitMediaMesh(mctx, rep.ExpectedConsumers)
		cancel()
	}

	// Phase 2: closed loop.
	if cfg.Duration > 0 && ctx.Err() == nil {
		lt.setPhase("loop")
		_, _, p0, b0 := lt.mediaTotals()
		t0 := time.Now()
		if cfg.Hold {
			lt.loopEnd.Store(time.Now().Add(cfg.Duration).UnixNano())
			select {
			case <-time.After(cfg.Duration):
			case <-ctx.Done():
			}
		} else {
			rep.Loop = lt.closedLoop(ctx)
		}
		if rep.Media != nil {
			_, _, p1, b1 := lt.mediaTotals()
			el := time.Since(t0).Seconds()
			rep.Media.PacketsPerSec = round1(float64(p1-p0) / el)
			rep.Media.KbitPerSec = round1(float64(b1-b0) * 8 / 1000 / el)
		}
	}
	if rep.Media != nil {
		rep.Media.PacketsSent = lt.packetsSent()
		rep.Media.LossPct, rep.Media.WorstLossPct = lt.loss()
	}

	// Phase 3: teardown.
	lt.setPhase("teardown")
	if lt.floor != nil {
		rep.Teardown = lt.floor.teardown()
	} else {
		rep.Teardown = lt.teardown(ctx, rep.Teardown.RoutersBefore, herr == nil)
	}
	lt.smp.phase("")
	lt.setPhase("done")
	prog.end()
	lt.smp.close()

	// The report.
	var setups, dials []time.Duration
	for _, p := range lt.peers {
		if p.joinedIn > 0 {
			setups = append(setups, p.joinedIn)
		}
		if p.dialIn > 0 {
			dials = append(dials, p.dialIn)
		}
	}
	rep.Setup, rep.Dial = summarize(setups), summarize(dials)
	rep.PeersJoined = int(lt.joined.Load())
	rep.PeersFailed = int(lt.failed.Load())
	rep.Consumers = int(lt.consumers.Load())
	for _, p := range lt.peers {
		p.mu.Lock()
		rep.MissingConsumers += max(0, p.expected-len(p.consumed))
		p.mu.Unlock()
	}
	if rep.FullMesh {
		last := time.Duration(lt.lastCons.Load())
		if rep.ExpectedConsumers == 0 {
			last = time.Duration(lt.lastProd.Load())
		}
		rep.FullMeshMs = ms(last)
		rep.MeshAfterProduceMs = ms(max(0, last-time.Duration(lt.lastProd.Load())))
		if last > 0 {
			rep.ConsumersPerSecond = round1(float64(rep.ExpectedConsumers) / last.Seconds())
		}
	} else {
		lt.fail("full mesh not reached within -timeout %v: %d of %d consumers missing (waited %v)",
			cfg.Timeout, rep.MissingConsumers, rep.ExpectedConsumers, meshAt.Sub(lt.start).Round(time.Millisecond))
	}
	rep.Methods = lt.rec.stats()
	rep.Processes = lt.smp.stats()
	if rep.ExpectedConsumers > 0 && cfg.Mode != "media" { // media: the phase also carries media
		for _, ps := range rep.Processes {
			per := 1000 * ps.PhaseCPUSeconds["setup"] / float64(rep.ExpectedConsumers)
			switch {
			case ps.Name == "server":
				rep.ServerCPUPerConsumerMs += per
			case strings.HasPrefix(ps.Name, "worker"):
				rep.WorkerCPUPerConsumerMs += per
			}
		}
		rep.ServerCPUPerConsumerMs = math.Round(rep.ServerCPUPerConsumerMs*1000) / 1000
		rep.WorkerCPUPerConsumerMs = math.Round(rep.WorkerCPUPerConsumerMs*1000) / 1000
	}
	if l := rep.Loop; l != nil && l.Requests > 0 {
		for _, ps := range rep.Processes {
			per := 1e6 * ps.PhaseCPUSeconds["loop"] / float64(l.Requests)
			switch {
			case ps.Name == "server":
				l.ServerCPUPerRequestUs += per
			case strings.HasPrefix(ps.Name, "worker"):
				l.WorkerCPUPerRequestUs += per
			}
		}
		l.ServerCPUPerRequestUs = round1(l.ServerCPUPerRequestUs)
		l.WorkerCPUPerRequestUs = round1(l.WorkerCPUPerRequestUs)
	}
	rep.Host.LoadAfter = loadavg()
	lt.mu.Lock()
	// A copy: notifications may still arrive on connections that failed.
	rep.Notifs = maps.Clone(lt.notifs)
	rep.Errors = slices.Clone(lt.errs)
	if lt.nerrs > len(lt.errs) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("… and %d more errors", lt.nerrs-len(lt.errs)))
	}
	rep.Notes = lt.notes
	lt.mu.Unlock()
	if rep.Loop != nil && rep.Loop.RateLimited > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d of %d closed-loop requests were rate limited (429): the server allows signaling.requestsPerSecond per connection (default 50, burst 100); raise it in a -config file to measure the server's capacity",
			rep.Loop.RateLimited, rep.Loop.Requests))
	}
	return rep, ctx.Err()
}

// expectedConsumers is the consumers of a complete run: each peer of a
// room consumes the audio and video of every producing peer but itself.
func (lt *loadtest) expectedConsumers() int {
	return lt.cfg.Rooms * lt.cfg.Producers * 2 * (lt.cfg.Peers - 1)
}

func (lt *loadtest) setPhase(name string) {
	lt.phase.Store(name)
	if lt.smp != nil && name != "done" {
		lt.smp.phase(name)
	}
}

// waitMesh returns once every peer holds its expected consumers, or ctx
// ends, or the mesh cannot complete any more (a peer failed and no consumer
// came for 2 s after the last setup ended).
func (lt *loadtest) waitMesh(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-lt.meshDone:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if lt.setupEnded.Load() == int64(lt.total()) && lt.failed.Load() > 0 &&
				(lt.joined.Load() == 0 || time.Duration(lt.since()-lt.lastCons.Load()) > 2*time.Second) {
				return
			}
		}
	}
}

// status feeds the progress bar.
func (lt *loadtest) status() (float64, string) {
	phase, _ := lt.phase.Load().(string)
	el := time.Since(lt.start).Round(100 * time.Millisecond)
	exp := lt.expectedConsumers()
	cons := lt.consumers.Load()
	switch phase {
	case "loop":
		left := time.Until(time.Unix(0, lt.loopEnd.Load()))
		return 1 - float64(left)/float64(lt.cfg.Duration), fmt.Sprintf("loop: %d requests  %v", lt.loopReqs.Load(), el)
	case "teardown", "done":
		return 1, fmt.Sprintf("%s: %d routers to go  %v", phase, lt.teardownOf.Load(), el)
	}
	frac := float64(lt.setupEnded.Load()) / float64(lt.total())
	if exp > 0 {
		frac = 0.3*frac + 0.7*float64(cons)/float64(exp)
	}
	return frac, fmt.Sprintf("%s: joined %d/%d  failed %d  consumers %d/%d  %v",
		phase, lt.joined.Load(), lt.total(), lt.failed.Load(), cons, exp, el)
}

// closedLoop has every joined peer send getTransportStats back to back.
func (lt *loadtest) closedLoop(ctx context.Context) *LoopStats {
	d := lt.cfg.Duration
	start := time.Now()
	end := start.Add(d)
	lt.loopEnd.Store(end.UnixNano())
	loopCtx, cancel := context.WithDeadline(ctx, end.Add(lt.cfg.RequestTimeout))
	defer cancel()
	type result struct {
		ok, limited []time.Duration
		failed      int
	}
	var mu sync.Mutex
	var all result
	var wg sync.WaitGroup
	peers := 0
	for _, p := range lt.peers {
		var stats func(context.Context) error
		switch {
		case lt.floor != nil:
			if stats = lt.floor.stats(p); stats == nil {
				continue
			}
		case p.conn == nil || p.send.ID == "" && p.recv.ID == "":
			continue
		default:
			id := p.send.ID
			if id == "" { // a viewer
				id = p.recv.ID
			}
			data := json.RawMessage(`{"transportId":` + strconv.Quote(id) + `}`)
			stats = func(ctx context.Context) error { return p.conn.Request(ctx, "getTransportStats", data, nil) }
		}
		peers++
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r result
		requests:
			for time.Now().Before(end) && loopCtx.Err() == nil {
				t0 := time.Now()
				err := stats(loopCtx)
				el := time.Since(t0)
				lt.loopReqs.Add(1)
				switch code := errorCode(err); {
				case err == nil:
					r.ok = append(r.ok, el)
				case code == 429:
					r.limited = append(r.limited, el)
				default:
					r.failed++
					lt.fail("%s/%s: getTransportStats: %v", p.room, p.id, err)
					if p.conn == nil {
						break requests // floor: a failed worker call fails again
					}
					if code == 0 {
						select {
						case <-p.conn.Done():
							break requests
						default:
						}
					}
				}
			}
			mu.Lock()
			all.ok = append(all.ok, r.ok...)
			all.limited = append(all.limited, r.limited...)
			all.failed += r.failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	errs := map[int]int{}
	if len(all.limited) > 0 {
		errs[429] = len(all.limited)
	}
	if all.failed > 0 {
		errs[0] = all.failed
	}
	lt.rec.merge("getTransportStats", all.ok, errs)
	st := &LoopStats{DurationS: round1(el.Seconds()), Peers: peers,
		Requests: len(all.ok) + len(all.limited) + all.failed, OK: len(all.ok), RateLimited: len(all.limited), Failed: all.failed}
	st.OKPerSec = round1(float64(st.OK) / el.Seconds())
	st.RequestsPerSec = round1(float64(st.Requests) / el.Seconds())
	st.RTT = summarize(all.ok)
	st.RateLimitedRTT = summarize(all.limited)
	return st
}

// teardown closes every socket at once, then polls /healthz until the
// server's router count is back to what it was before the run.
func (lt *loadtest) teardown(ctx context.Context, before int64, haveHealth bool) TeardownStats {
	st := TeardownStats{RoutersBefore: before}
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, p := range lt.peers {
		if p.conn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.media != nil {
				p.media.Close()
			} else {
				_ = p.conn.Close()
			}
		}()
	}
	wg.Wait()
	st.CloseMs = ms(time.Since(t0))
	if !haveHealth {
		return st
	}
	tctx, cancel := context.WithTimeout(ctx, lt.cfg.Timeout)
	defer cancel()
	for {
		h, err := lt.health.get(tctx)
		if err == nil {
			st.RoutersAfter = h.routers()
			lt.teardownOf.Store(max(0, h.routers()-before))
			if h.routers() <= before {
				st.Complete = true
				st.Ms = ms(time.Since(t0))
				return st
			}
		}
		select {
		case <-tctx.Done():
			st.Ms = ms(time.Since(t0))
			lt.fail("teardown: %d routers still there after %v (%d before the run)", st.RoutersAfter, lt.cfg.Timeout, before)
			return st
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ---- one peer ----

type lpeer struct {
	lt       *loadtest
	room, id string
	produces bool // audio and video (else a viewer: consumes only)
	expected int  // consumers of a complete run

	conn       *client.Conn
	caps       json.RawMessage
	send, recv client.TransportInfo
	dialIn     time.Duration
	joinedIn   time.Duration // dial start → join answer
	floor      *floorPeer    // mode floor
	media      *client.Peer  // mode media
	producers  []*client.Producer

	mu       sync.Mutex
	consumed map[string]bool // producer ids this peer consumes
	complete bool
	seqs     []*seqTracker // mode media: one per consumer
}

// req sends one request and records its round trip.
func (p *lpeer) req(ctx context.Context, method string, data, result any) error {
	t0 := time.Now()
	err := p.conn.Request(ctx, method, data, result)
	p.lt.rec.add(method, time.Since(t0), err)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", p.room, p.id, err)
	}
	return nil
}

// fingerprint is a syntactically valid DTLS fingerprint: the worker takes it
// and waits for a DTLS handshake that never comes (signaling mode).
var fingerprint = map[string]any{"role": "client", "fingerprints": []map[string]string{{
	"algorithm": "sha-256",
	"value":     "82:5A:68:3D:36:C3:0A:DE:AF:E7:32:43:D2:88:83:57:AC:2D:65:E5:80:C4:B6:FB:AF:1A:A0:21:9F:6D:0C:AD",
}}}

var ssrc atomic.Uint32

// rtpParams are synthetic but valid RTP parameters (opus or VP8, one
// encoding with a unique SSRC), as mediasoup-client would send them.
func rtpParams(kind string) json.RawMessage {
	codec := `{"mimeType":"audio/opus","payloadType":111,"clockRate":48000,"channels":2,"parameters":{"useinbandfec":1},"rtcpFeedback":[{"type":"transport-cc"}]}`
	mid := "0"
	if kind == "video" {
		codec = `{"mimeType":"video/VP8","payloadType":96,"clockRate":90000,"rtcpFeedback":[{"type":"nack"},{"type":"nack","parameter":"pli"},{"type":"ccm","parameter":"fir"},{"type":"goog-remb"},{"type":"transport-cc"}]}`
		mid = "1"
	}
	return json.RawMessage(fmt.Sprintf(`{"mid":%q,"codecs":[%s],"headerExtensions":[],"encodings":[{"ssrc":%d}],"rtcp":{"cname":"loadtest","reducedSize":true}}`,
		mid, codec, 100000+ssrc.Add(1)))
}

// onRequest accepts every newConsumer and counts it.
func (p *lpeer) onRequest(method string, data json.RawMessage) (any, error) {
	if method != "newConsumer" {
		return nil, nil // newDataConsumer: accepted, not counted
	}
	var nc client.NewConsumer
	if err := json.Unmarshal(data, &nc); err != nil {
		return nil, &client.ResponseError{Code: 400, Reason: err.Error()}
	}
	p.gotConsumer(nc.ProducerID)
	return nil, nil
}

// gotConsumer counts a consumer of producerID (once per producer).
func (p *lpeer) gotConsumer(producerID string) {
	lt := p.lt
	p.mu.Lock()
	if p.consumed[producerID] {
		p.mu.Unlock()
		return
	}
	p.consumed[producerID] = true
	n := len(p.consumed)
	p.mu.Unlock()
	lt.consumers.Add(1)
	lt.lastCons.Store(lt.since())
	if n >= p.expected {
		p.markComplete()
	}
}

func (p *lpeer) markComplete() {
	p.mu.Lock()
	done := p.complete
	p.complete = true
	p.mu.Unlock()
	if !done && p.lt.complete.Add(1) == int64(p.lt.total()) {
		close(p.lt.meshDone)
	}
}

// setup: dial, capabilities, two transports, connect both, join, produce
// audio and video.
func (p *lpeer) setup(ctx context.Context) {
	lt := p.lt
	defer lt.setupEnded.Add(1)
	var err error
	switch {
	case lt.floor != nil:
		err = lt.floor.setup(ctx, p)
	case lt.cfg.Mode == "media":
		err = p.mediaSetup(ctx)
	default:
		err = p.doSetup(ctx)
	}
	if err != nil {
		lt.failed.Add(1)
		lt.fail("%v", err)
		return
	}
	if p.expected == 0 {
		p.markComplete()
	}
}

func (p *lpeer) doSetup(ctx context.Context) error {
	lt := p.lt
	t0 := time.Now()
	c, err := client.Dial(ctx, lt.cfg.URL, p.room, p.id, &client.DialOptions{
		RequestTimeout:      lt.cfg.RequestTimeout,
		NotificationBacklog: -1,
		OnRequest:           p.onRequest,
		OnNotification:      lt.onNotification,
	})
	if err != nil {
		return fmt.Errorf("%s/%s: %w", p.room, p.id, err)
	}
	p.dialIn = time.Since(t0)
	p.conn = c
	if err := p.req(ctx, "getRouterRtpCapabilities", nil, &p.caps); err != nil {
		return err
	}
	if p.produces {
		if err := p.req(ctx, "createWebRtcTransport", client.CreateWebRtcTransportRequest{Producing: true}, &p.send); err != nil {
			return err
		}
	}
	if err := p.req(ctx, "createWebRtcTransport", client.CreateWebRtcTransportRequest{Consuming: true}, &p.recv); err != nil {
		return err
	}
	for _, id := range []string{p.send.ID, p.recv.ID} {
		if id == "" {
			continue
		}
		if err := p.req(ctx, "connectWebRtcTransport", map[string]any{"transportId": id, "dtlsParameters": fingerprint}, nil); err != nil {
			return err
		}
	}
	// The answer (the peers already in the room) is not decoded: in a room
	// filling up that is O(peers) per joiner, on the cores the server uses.
	if err := p.req(ctx, "join", client.JoinRequest{
		DisplayName: p.id, Device: client.Device{Flag: "loadtest", Name: "mediasoup-server loadtest", Version: "1"},
		RtpCapabilities: p.caps,
	}, nil); err != nil {
		return err
	}
	p.joinedIn = time.Since(t0)
	lt.joined.Add(1)
	if !p.produces {
		return nil
	}
	for _, kind := range []string{"audio", "video"} {
		var res client.IDResponse
		if err := p.req(ctx, "produce", client.ProduceRequest{TransportID: p.send.ID, Kind: kind, RtpParameters: rtpParams(kind)}, &res); err != nil {
			return err
		}
	}
	lt.produced()
	return nil
}

// produced records that a peer's producers are all answered.
func (lt *loadtest) produced() {
	now := lt.since()
	for {
		old := lt.lastProd.Load()
		if now <= old || lt.lastProd.CompareAndSwap(old, now) {
			return
		}
	}
}

// ---- the server's /healthz ----

type healthClient struct {
	url string
	hc  *http.Client
}

type health struct {
	Status  string `json:"status"`
	Workers []struct {
		Index   int    `json:"index"`
		Pid     int    `json:"pid"`
		State   string `json:"state"`
		Routers int64  `json:"routers"`
	} `json:"workers"`
}

func (h *health) routers() int64 {
	var n int64
	for _, w := range h.Workers {
		n += w.Routers
	}
	return n
}

// newHealthClient derives http(s)://HOST/healthz from the WebSocket URL.
func newHealthClient(wsURL string) *healthClient {
	u, err := url.Parse(wsURL)
	if err != nil {
		return &healthClient{url: wsURL + "/healthz", hc: http.DefaultClient}
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path, u.RawQuery = "/healthz", ""
	return &healthClient{url: u.String(), hc: &http.Client{Timeout: 5 * time.Second}}
}

func (h *healthClient) get(ctx context.Context) (*health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out health
	// 503 (a worker not alive) still carries the body.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("GET %s: %s: %w", h.url, resp.Status, err)
	}
	return &out, nil
}

// isLoopback reports whether the URL's host is this machine's loopback.
func isLoopback(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
