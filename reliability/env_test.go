package reliability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testserver"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// server is a real server in-process, wired as cmd/mediasoup-server wires
// it: a worker pool on the real mediasoup-worker binary, the rooms, the
// signaling handler, and an http.Server on a loopback port.
type server struct {
	t       *testing.T
	pool    *worker.Pool
	rooms   *room.Manager
	handler *signaling.Handler
	http    *http.Server
	addr    string // 127.0.0.1:port
	url     string // http://127.0.0.1:port
	logs    *testLog

	served   chan struct{}
	stopOnce sync.Once
}

type serverConfig struct {
	workers int // default 1
	room    room.Options
	limits  signaling.Limits // zero fields: DefaultLimits
	// readHeaderTimeout of the http.Server (cmd/mediasoup-server: 10s).
	readHeaderTimeout time.Duration
}

func startServer(t *testing.T, cfg serverConfig) *server {
	t.Helper()
	if cfg.workers == 0 {
		cfg.workers = 1
	}
	if cfg.readHeaderTimeout == 0 {
		cfg.readHeaderTimeout = 10 * time.Second
	}
	forgetWedges() // stuck since an earlier test: not this server's
	logs := newTestLog(t)
	log := logs.logger
	pool := testserver.Pool(t, cfg.workers, log)
	ropts := cfg.room
	ropts.Logger = log.Named("room")
	if ropts.ServerRequestTimeout == 0 {
		ropts.ServerRequestTimeout = 5 * time.Second
	}
	rooms := room.NewManager(pool, ropts)
	h := signaling.NewHandler(signaling.Options{
		Workers: pool, Rooms: rooms, Limits: cfg.limits, Logger: log.Named("signaling"), Version: worker.Version,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pool.Close()
		t.Fatal(err)
	}
	s := &server{
		t: t, pool: pool, rooms: rooms, handler: h, logs: logs,
		http:   &http.Server{Handler: h, ReadHeaderTimeout: cfg.readHeaderTimeout, ErrorLog: zap.NewStdLog(log.Named("http"))},
		addr:   ln.Addr().String(),
		url:    "http://" + ln.Addr().String(),
		served: make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		_ = s.http.Serve(ln)
	}()
	t.Cleanup(s.stop)
	return s
}

// stop shuts the server down in the order of cmd/mediasoup-server (no
// worker closes while a request to it is in flight). Idempotent. The wait
// for the rooms is bounded: a room stuck on a wedged mediasoup-go transport
// (see wedged) would otherwise hang it forever; the workers are closed
// in any case, so that no process outlives the test.
func (s *server) stop() {
	s.stopOnce.Do(func() {
		defer s.logs.stop()
		defer s.pool.Close()
		_ = s.http.Close() // listener and every non-hijacked connection
		<-s.served
		done := make(chan error, 1)
		go func() {
			s.rooms.CloseAll(room.CloseKicked, "test over")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := s.handler.Wait(ctx); err != nil {
				done <- fmt.Errorf("peer connections did not end: %w", err)
				return
			}
			if err := s.rooms.Wait(ctx); err != nil {
				done <- fmt.Errorf("room work did not end: %w", err)
				return
			}
			done <- nil
		}()
		var err error
		wait := 20 * time.Second
		if wedgeSeenBy(s.t) {
			wait = 2 * time.Second // it will hang: the test already knows why
		}
		select {
		case err = <-done:
		case <-time.After(wait):
			err = errors.New("closing the rooms hangs")
		}
		if err != nil {
			wedged(s.t)
			s.t.Errorf("server shutdown: %v", err)
		}
	})
}

// emptyWithin waits until no room, no peer and nothing in the workers is
// left, and returns what is left otherwise.
func (s *server) emptyWithin(timeout time.Duration) (bool, string) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		routers, objects, err := s.workerObjects(ctx)
		cancel()
		rooms, peers := len(s.rooms.Rooms()), s.peers()
		if err == nil && rooms == 0 && peers == 0 && routers == 0 && objects == 0 {
			return true, ""
		}
		if time.Now().After(deadline) {
			return false, fmt.Sprintf("after %v the server still holds %d rooms, %d peers; the workers %d routers, %d other objects (dump error: %v)",
				(timeout - time.Until(deadline)).Round(100*time.Millisecond), rooms, peers, routers, objects, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEmpty is emptyWithin that fails the test (saying so when the fixed
// mediasoup-go wedge explains it).
func (s *server) waitEmpty(t *testing.T, timeout time.Duration) {
	t.Helper()
	if ok, left := s.emptyWithin(timeout); !ok {
		wedged(t)
		t.Fatal(left)
	}
}

// peers counts the peers in every room (joined or not).
func (s *server) peers() int {
	n := 0
	for _, r := range s.rooms.Rooms() {
		n += len(r.Peers())
	}
	return n
}

// workerObjects sums, over the live workers, the routers and the channel
// request handlers beyond the WebRtcServer's: every router, transport,
// producer, consumer, data producer/consumer and RTP observer a worker
// holds registers one handler, so 0 means the worker holds nothing but its
// WebRtcServer.
func (s *server) workerObjects(ctx context.Context) (routers, objects int, err error) {
	for _, w := range s.pool.Workers() {
		d, err := w.Dump(ctx)
		if err != nil {
			return 0, 0, err
		}
		routers += len(d.RouterIds)
		if d.ChannelMessageHandlers != nil {
			for _, id := range d.ChannelMessageHandlers.ChannelRequestHandlers {
				if !slices.Contains(d.WebRtcServerIds, id) {
					objects++
				}
			}
		}
	}
	return routers, objects, nil
}

// ---- memory and goroutines ----

type memSample struct {
	heap, stacks, rss uint64 // live heap after GC, goroutine stacks, process RSS
	goroutines        int
}

func sampleMemory() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapAlloc, stacks: ms.StackInuse, rss: rss(os.Getpid()), goroutines: runtime.NumGoroutine()}
}

// writeHeapProfile writes the live heap (after a GC) to file.
func writeHeapProfile(t *testing.T, file string) {
	f, err := os.Create(file)
	if err != nil {
		t.Errorf("heap profile: %v", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Errorf("heap profile: %v", err)
	}
	t.Logf("heap profile written to %s", file)
}

// heapNow is the heap in use now, without a GC.
func heapNow() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rss is VmRSS of a process in bytes (0 if unknown).
func rss(pid int) uint64 {
	return procStatus(pid, "VmRSS:")
}

func procStatus(pid int, key string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func signedMiB(a, b uint64) string {
	return fmt.Sprintf("%+.1f MiB", (float64(b)-float64(a))/(1<<20))
}

// waitGoroutines polls until at most n goroutines run, and returns the last
// count.
func waitGoroutines(n int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		g := runtime.NumGoroutine()
		if g <= n || time.Now().After(deadline) {
			return g
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- latency statistics ----

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// quantile q in [0,1] (nearest rank), 0 when empty.
func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	return quantile(d, q)
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(q*float64(len(d)) + 0.5)
	return d[min(max(i-1, 0), len(d)-1)]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

// summary is "p50 X, p99 Y, max Z (n N)".
func (l *latencies) summary() string {
	return fmt.Sprintf("p50 %s, p99 %s, max %s (n=%d)", ms(l.quantile(0.5)), ms(l.quantile(0.99)), ms(l.quantile(1)), l.count())
}

// ---- logging ----

// testLog is the servers' logger. Warnings and errors are counted by
// message and the last logRing lines kept; they go to the test's log only
// if the test failed (when the server stops). Writing every line to t.Log
// would keep them all in the test's output buffer (without -v) and show up
// as heap growth in the figures.
type testLog struct {
	logger   *zap.Logger
	t        *testing.T
	warnings atomic.Int64
	errors   atomic.Int64
	// producerClosedInConsume counts "original Producer closed": mediasoup-go's
	// ConsumeContext (v2.4.1 to v2.6.0) took the branch that leaves the
	// transport locked (wedge_test.go).
	producerClosedInConsume atomic.Int64

	mu      sync.Mutex
	stopped bool
	ring    []string
	next    int
	byMsg   map[string]int // "LEVEL logger: message" → count
}

const logRing = 300

func newTestLog(t *testing.T) *testLog {
	l := &testLog{t: t, byMsg: map[string]int{}}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.AddSync(l), zap.WarnLevel)
	core = zapcore.RegisterHooks(core, func(e zapcore.Entry) error {
		switch {
		case e.Level >= zap.ErrorLevel:
			l.errors.Add(1)
		case e.Level == zap.WarnLevel:
			l.warnings.Add(1)
		}
		key := fmt.Sprintf("%s %s: %s", e.Level.CapitalString(), e.LoggerName, logIDs.ReplaceAllString(e.Message, "…"))
		l.mu.Lock()
		l.byMsg[key]++
		l.mu.Unlock()
		return nil
	})
	l.logger = zap.New(core)
	return l
}

// logIDs are the object ids and numbers in log messages, so that messages
// differing only by them count as one.
var logIDs = regexp.MustCompile(`\b(rt|tr|pr|co|dp|dc|ro|pe)_[0-9a-z]+\b|\b[0-9a-f]{8}-[0-9a-f-]{27}\b`)

func (l *testLog) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("original Producer closed")) {
		l.producerClosedInConsume.Add(1)
	}
	if *logFlag != "" {
		appendServerLog(b)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	line := strings.TrimRight(string(b), "\n")
	if len(l.ring) < logRing {
		l.ring = append(l.ring, line)
	} else {
		l.ring[l.next] = line
		l.next = (l.next + 1) % logRing
	}
	return len(b), nil
}

var serverLog struct {
	sync.Mutex
	f *os.File
}

// appendServerLog appends a log line to the -serverlog file.
func appendServerLog(b []byte) {
	serverLog.Lock()
	defer serverLog.Unlock()
	if serverLog.f == nil {
		f, err := os.OpenFile(*logFlag, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return
		}
		serverLog.f = f
	}
	_, _ = serverLog.f.Write(b)
}

// top returns the n most frequent warning and error messages with counts.
func (l *testLog) top(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.byMsg))
	for k := range l.byMsg {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return l.byMsg[b] - l.byMsg[a] })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%d× %s", l.byMsg[k], k))
	}
	return strings.Join(parts, "; ")
}

// stop ends the logging; a failed test gets the last lines.
func (l *testLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.stopped = true
	if l.t.Failed() && len(l.ring) > 0 {
		lines := append(slices.Clone(l.ring[l.next:]), l.ring[:l.next]...)
		l.t.Logf("the server's last %d warnings and errors:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}
