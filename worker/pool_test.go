package worker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap/zaptest"
)

var opusRouter = &mediasoup.RouterOptions{MediaCodecs: []*mediasoup.RtpCodecCapability{{
	Kind: mediasoup.MediaKindAudio, MimeType: "audio/opus", ClockRate: 48000, Channels: 2,
}}}

// settle bounds every wait for something the pool does on its own (a death
// reported, a worker respawned): generous, so that only a pool that never
// does it fails, never a slow machine. How long it took is logged.
const settle = 30 * time.Second

func newPool(t *testing.T, n int, mod ...func(*worker.Options)) *worker.Pool {
	t.Helper()
	opts := worker.Options{
		Bin:             testutil.WorkerBin(t),
		Count:           n,
		RtcPort:         testutil.FreePorts(t, n),
		ListenIP:        "127.0.0.1",
		RespawnMinDelay: 50 * time.Millisecond,
		RespawnMaxDelay: time.Second,
		Logger:          zaptest.NewLogger(t),
	}
	for _, m := range mod {
		m(&opts)
	}
	p, err := worker.New(opts)
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func pids(p *worker.Pool) []int {
	var out []int
	for _, in := range p.Infos() {
		out = append(out, in.Pid)
	}
	return out
}

func TestPoolStartsNWorkersWithWebRtcServers(t *testing.T) {
	p := newPool(t, 2)
	infos := p.Infos()
	if len(infos) != 2 {
		t.Fatalf("got %d workers, want 2", len(infos))
	}
	seen := map[int]bool{}
	for i, in := range infos {
		if in.State != worker.StateAlive || in.Pid <= 0 || seen[in.Pid] {
			t.Fatalf("worker %d: %+v", i, in)
		}
		seen[in.Pid] = true
		if !testutil.ProcessAlive(in.Pid) {
			t.Fatalf("worker %d: pid %d is not running", i, in.Pid)
		}
		// The WebRtcServer holds its UDP and TCP port: binding them must fail.
		addr := fmt.Sprintf("127.0.0.1:%d", in.Port)
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			t.Fatalf("worker %d: TCP %s is not held by its WebRtcServer", i, addr)
		}
		if c, err := net.ListenPacket("udp", addr); err == nil {
			c.Close()
			t.Fatalf("worker %d: UDP %s is not held by its WebRtcServer", i, addr)
		}
	}
	if infos[1].Port != infos[0].Port+1 {
		t.Fatalf("ports %d, %d: want rtcPort+index", infos[0].Port, infos[1].Port)
	}
	if !p.Alive() {
		t.Fatal("pool not alive")
	}
}

func TestPoolRoutersSpreadAndAreAccounted(t *testing.T) {
	p := newPool(t, 2)
	ctx := context.Background()
	var routers []*worker.Router
	for range 4 {
		r, err := p.CreateRouter(ctx, opusRouter)
		if err != nil {
			t.Fatal(err)
		}
		routers = append(routers, r)
	}
	for _, in := range p.Infos() {
		if in.Routers != 2 {
			t.Fatalf("worker %d has %d routers, want 2 (infos %+v)", in.Index, in.Routers, p.Infos())
		}
	}
	if routers[0].Worker == routers[1].Worker {
		t.Fatal("two routers in a row landed on the same worker")
	}

	// A transport on worker A makes worker B the least loaded.
	r0 := routers[0]
	tr, err := r0.CreateWebRtcTransport(&mediasoup.WebRtcTransportOptions{WebRtcServer: r0.WebRtcServer})
	if err != nil {
		t.Fatal(err)
	}
	if got := r0.Worker.Info().Transports; got != 1 {
		t.Fatalf("transports on worker %d = %d, want 1", r0.Worker.Index(), got)
	}
	next, err := p.Pick()
	if err != nil {
		t.Fatal(err)
	}
	if next == r0.Worker {
		t.Fatal("Pick chose the worker that has more transports")
	}
	// The transport listens on the worker's shared WebRtcServer port.
	if cands := tr.Data().WebRtcTransportData.IceCandidates; len(cands) == 0 || int(cands[0].Port) != r0.Worker.Port() {
		t.Fatalf("ICE candidates %+v: want port %d", cands, r0.Worker.Port())
	}

	for _, r := range routers {
		r.Close()
	}
	for _, in := range p.Infos() {
		if in.Routers != 0 || in.Transports != 0 {
			t.Fatalf("after closing: %+v", in)
		}
	}
	for _, w := range p.Workers() {
		d, err := w.Dump(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.RouterIds) != 0 {
			t.Fatalf("worker %d still holds routers %v", w.Index(), d.RouterIds)
		}
	}
}

func TestPoolReportsDeathAndRespawns(t *testing.T) {
	p := newPool(t, 2)
	deaths := make(chan worker.Death, 4)
	cancel := p.OnDeath(func(d worker.Death) { deaths <- d })
	defer cancel()

	victim := p.Workers()[0]
	other := p.Workers()[1]
	oldPid, otherPid := victim.Pid(), other.Pid()
	r, err := victim.CreateRouter(context.Background(), opusRouter)
	if err != nil {
		t.Fatal(err)
	}
	routerClosed := make(chan struct{})
	r.OnClose(func(context.Context) { close(routerClosed) })

	killed := time.Now()
	if err := syscall.Kill(oldPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The pool learns of the death from the worker's pipes closing, not
	// by polling: it is reported, the router closed and the worker replaced
	// at once (RespawnMinDelay 50 ms). How fast is a figure, logged below;
	// the bounds are only there to end a test that waits forever.
	var noticed, closed time.Duration
	select {
	case d := <-deaths:
		noticed = time.Since(killed)
		if d.Index != 0 || d.Pid != oldPid {
			t.Fatalf("death %+v, want index 0 pid %d", d, oldPid)
		}
	case <-time.After(settle):
		t.Fatalf("no death reported within %v of SIGKILL", settle)
	}
	select {
	case <-routerClosed:
		closed = time.Since(killed)
	case <-time.After(settle):
		t.Fatalf("the dead worker's router was not closed within %v", settle)
	}

	// A replacement serves.
	testutil.Eventually(t, settle, func() bool {
		return victim.State() == worker.StateAlive && victim.Pid() != oldPid
	}, "worker 0 not respawned: %+v", victim.Info())
	respawned := time.Since(killed)
	t.Logf("after SIGKILL: death reported in %v, router closed in %v, replacement alive in %v (respawn delay %v)",
		noticed.Round(time.Millisecond), closed.Round(time.Millisecond), respawned.Round(time.Millisecond), 50*time.Millisecond)
	if _, err := victim.CreateRouter(context.Background(), opusRouter); err != nil {
		t.Fatalf("respawned worker does not serve: %v", err)
	}
	if in := victim.Info(); in.Restarts != 1 || in.LastError == "" || in.Port != p.Workers()[0].Port() {
		t.Fatalf("after respawn: %+v", in)
	}
	if other.Pid() != otherPid || other.State() != worker.StateAlive {
		t.Fatalf("the other worker was disturbed: %+v", other.Info())
	}
	if testutil.ProcessAlive(oldPid) {
		t.Fatalf("killed pid %d still exists", oldPid)
	}
}

func TestPoolBacksOffWhenAWorkerKeepsDying(t *testing.T) {
	p := newPool(t, 1, func(o *worker.Options) {
		o.RespawnMinDelay = 100 * time.Millisecond
		o.RespawnMaxDelay = 400 * time.Millisecond
		o.StableAfter = time.Minute
	})
	w := p.Workers()[0]
	// Kill the worker as soon as it is back, three times: the gaps must grow
	// 100, 200, 400 ms rather than respawning in a tight loop.
	var gaps []time.Duration
	for range 3 {
		pid := w.Pid()
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, settle, func() bool {
			return w.State() == worker.StateAlive && w.Pid() != pid
		}, "no respawn")
		gaps = append(gaps, time.Since(killed))
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	t.Logf("kill → alive again: %v (backoff %v)", gaps, want)
	for i := range gaps {
		if gaps[i] < want[i] {
			t.Fatalf("respawn gaps %v: gap %d shorter than the backoff %v", gaps, i, want[i])
		}
	}
}

func TestPoolCloseLeavesNoWorkerProcess(t *testing.T) {
	p := newPool(t, 2)
	ps := pids(p)
	p.Close()
	for _, pid := range ps {
		if testutil.ProcessAlive(pid) {
			t.Fatalf("worker pid %d survived Close", pid)
		}
	}
	if _, err := p.CreateRouter(context.Background(), opusRouter); !errors.Is(err, worker.ErrClosed) {
		t.Fatalf("CreateRouter after Close: %v, want ErrClosed", err)
	}
	p.Close() // twice is fine
}

func TestPoolFailsCleanlyWhenPortIsTaken(t *testing.T) {
	port := testutil.FreePorts(t, 2)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = worker.New(worker.Options{Bin: testutil.WorkerBin(t), Count: 2, RtcPort: port, ListenIP: "127.0.0.1"})
	if err == nil {
		t.Fatal("pool started although worker 1's port is taken")
	}
	t.Logf("error as expected: %v", err)
	if left := testutil.WorkerChildren(); len(left) != 0 {
		t.Fatalf("worker processes left behind by the failed start: %v", left)
	}
}

func TestFindBinary(t *testing.T) {
	bin := testutil.WorkerBin(t)
	got, err := worker.FindBinary(bin)
	if err != nil || got == "" {
		t.Fatalf("FindBinary(%q) = %q, %v", bin, got, err)
	}
	if _, err := worker.FindBinary("/nonexistent/mediasoup-worker"); err == nil {
		t.Fatal("a wrong explicit path must be an error")
	}
	if _, err := worker.FindBinary(os.TempDir()); err == nil {
		t.Fatal("a directory is not a worker binary")
	}
}
