package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testserver"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// newServer starts a real server in-process (as signaling's tests do): a
// worker pool of real mediasoup workers, the rooms and the WebSocket edge
// on a loopback httptest listener. It returns the server's URL.
func newServer(t testing.TB, mod ...func(*signaling.Limits)) string {
	t.Helper()
	return newServerWith(t, 1, nil, mod...)
}

// newServerWith is newServer with n workers and room options set by ropts.
func newServerWith(t testing.TB, n int, ropts func(*room.Options), mod ...func(*signaling.Limits)) string {
	t.Helper()
	log := zap.NewNop() // a load test logs too much for zaptest
	pool := testserver.Pool(t, n, log)
	opts := room.Options{Logger: log, ServerRequestTimeout: 5 * time.Second}
	if ropts != nil {
		ropts(&opts)
	}
	rooms := room.NewManager(pool, opts)
	limits := signaling.DefaultLimits()
	for _, m := range mod {
		m(&limits)
	}
	h := signaling.NewHandler(signaling.Options{
		Workers: pool, Rooms: rooms, Limits: limits, Logger: log, Version: worker.Version,
	})
	return testserver.Serve(t, pool, rooms, h)
}

// One producing peer and 11 viewers over two workers (a budget of 10
// consumers per router: five viewers of audio and video): every viewer
// consumes both producers, viewers make no producing transport, and the room
// spreads.
func TestLoadtestOneToManySpreads(t *testing.T) {
	url := newServerWith(t, 2, func(o *room.Options) { o.RouterConsumerBudget = 10 })
	rep, err := Run(context.Background(), Config{
		URL: url, Rooms: 1, Peers: 12, Producers: 1, Mode: "signaling",
		Duration: 300 * time.Millisecond, Timeout: 30 * time.Second, RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.FullMesh || rep.ExpectedConsumers != 22 || rep.Consumers != 22 || rep.MissingConsumers != 0 ||
		rep.PeersJoined != 12 || len(rep.Errors) != 0 || rep.ProducersPerRoom != 1 {
		t.Fatalf("one-to-many: complete %v, consumers %d of %d, joined %d, producers %d, errors %v",
			rep.FullMesh, rep.Consumers, rep.ExpectedConsumers, rep.PeersJoined, rep.ProducersPerRoom, rep.Errors)
	}
	counts := map[string]int{}
	for _, m := range rep.Methods {
		counts[m.Method] = m.RTT.Count
	}
	if counts["createWebRtcTransport"] != 13 || counts["produce"] != 2 {
		t.Errorf("%d transports and %d produces, want 13 (2 + 11 viewers) and 2", counts["createWebRtcTransport"], counts["produce"])
	}
	if rep.RoutersAtMesh != 2 {
		t.Errorf("routers at mesh: %d, want 2 (the room spread)", rep.RoutersAtMesh)
	}
	if rep.Loop == nil || rep.Loop.Peers != 12 || rep.Loop.Failed != 0 {
		t.Errorf("closed loop: %+v", rep.Loop)
	}
}

func TestLoadtestReachesFullMesh(t *testing.T) {
	url := newServer(t)
	var prog bytes.Buffer
	rep, err := Run(context.Background(), Config{
		URL: url, Rooms: 1, Peers: 3, Mode: "signaling",
		Duration: time.Second, Timeout: 30 * time.Second, RequestTimeout: 5 * time.Second,
		ServerPid: os.Getpid(), SampleInterval: 50 * time.Millisecond, Progress: &prog,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.FullMesh || rep.MissingConsumers != 0 || rep.Consumers != 12 || rep.ExpectedConsumers != 12 {
		t.Fatalf("mesh: full %v, consumers %d of %d, missing %d; errors %v",
			rep.FullMesh, rep.Consumers, rep.ExpectedConsumers, rep.MissingConsumers, rep.Errors)
	}
	if rep.PeersJoined != 3 || rep.PeersFailed != 0 || len(rep.Errors) != 0 {
		t.Fatalf("peers joined %d, failed %d, errors %v", rep.PeersJoined, rep.PeersFailed, rep.Errors)
	}
	// Sane numbers: positive, ordered, bounded by the run.
	sane := func(name string, l Latency, n int) {
		t.Helper()
		if l.Count != n || l.P50Ms <= 0 || l.P50Ms > l.P95Ms || l.P95Ms > l.P99Ms || l.P99Ms > l.MaxMs || l.MaxMs > 30_000 {
			t.Errorf("%s: %+v (want %d samples)", name, l, n)
		}
	}
	sane("join", rep.Setup, 3)
	sane("dial", rep.Dial, 3)
	if rep.Setup.MaxMs < rep.Dial.MaxMs {
		t.Errorf("join latency %v < dial latency %v", rep.Setup.MaxMs, rep.Dial.MaxMs)
	}
	counts := map[string]int{}
	for _, m := range rep.Methods {
		counts[m.Method] = m.RTT.Count
	}
	for m, n := range map[string]int{"getRouterRtpCapabilities": 3, "createWebRtcTransport": 6,
		"connectWebRtcTransport": 6, "join": 3, "produce": 6} {
		if counts[m] != n {
			t.Errorf("%s: %d successful round trips, want %d (%+v)", m, counts[m], n, rep.Methods)
		}
	}
	if rep.FullMeshMs <= 0 || rep.FullMeshMs < rep.Setup.MaxMs || rep.FullMeshMs > 30_000 || rep.ConsumersPerSecond <= 0 {
		t.Errorf("full mesh after %v ms (join max %v ms), %v consumers/s", rep.FullMeshMs, rep.Setup.MaxMs, rep.ConsumersPerSecond)
	}
	if rep.RoutersAtMesh != 1 {
		t.Errorf("routers at mesh: %d, want 1", rep.RoutersAtMesh)
	}
	l := rep.Loop
	if l == nil || l.Peers != 3 || l.OK == 0 || l.OKPerSec <= 0 || l.Failed != 0 || l.Requests != l.OK+l.RateLimited ||
		l.DurationS < 0.9 || l.DurationS > 10 || l.RTT.Count != l.OK || l.RTT.P50Ms <= 0 {
		t.Errorf("closed loop: %+v", l)
	}
	if td := rep.Teardown; !td.Complete || td.RoutersBefore != 0 || td.RoutersAfter != 0 || td.Ms <= 0 || td.Ms < td.CloseMs {
		t.Errorf("teardown: %+v", td)
	}
	names := map[string]ProcStats{}
	for _, p := range rep.Processes {
		names[p.Name] = p
	}
	for _, n := range []string{"server", "worker 0"} {
		p, ok := names[n]
		if !ok || p.Error != "" || p.PeakRSSMB <= 0 {
			t.Errorf("process %q: %+v (all: %+v)", n, p, rep.Processes)
		}
	}
	// The test process is both the server and the load generator: one entry.
	if _, ok := names["loadtest"]; ok {
		t.Errorf("the server pid is tracked twice: %+v", rep.Processes)
	}
	if names["worker 0"].PhaseCPUSeconds["setup"] < 0 || rep.WorkerCPUPerConsumerMs < 0 {
		t.Errorf("worker CPU: %+v", names["worker 0"])
	}
	if rep.Notifs["newPeer"] != 3 { // p1 sees p2, p0 sees p1 and p2 (or any order: 0+1+2)
		t.Errorf("newPeer notifications: %d, want 3 (%v)", rep.Notifs["newPeer"], rep.Notifs)
	}
	if !strings.Contains(prog.String(), "100%") {
		t.Errorf("no progress output: %q", prog.String())
	}

	var table bytes.Buffer
	printTable(&table, rep)
	for _, want := range []string{"full mesh:", "rtt join", "closed loop:", "teardown:", "worker 0"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestJSONOutputParses(t *testing.T) {
	url := newServer(t)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-url", url, "-rooms", "1", "-peers", "3", "-duration", "300ms",
		"-timeout", "30s", "-json", "-quiet"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr.String())
	}
	var rep Report
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("decoding the -json output: %v\n%s", err, stdout.String())
	}
	if !rep.FullMesh || rep.Consumers != 12 || rep.Loop == nil || rep.Loop.OK == 0 || !rep.Teardown.Complete {
		t.Fatalf("report: %+v", rep)
	}
	if stderr.Len() != 0 {
		t.Errorf("-quiet still wrote to stderr: %q", stderr.String())
	}
}

func TestBadFlagsAndNoServer(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-peers", "0"}, &out, &errb); code != 2 {
		t.Errorf("-peers 0: exit %d, want 2", code)
	}
	if code := run(context.Background(), []string{"-mode", "bogus"}, &out, &errb); code != 2 {
		t.Errorf("-mode bogus: exit %d, want 2", code)
	}
	errb.Reset()
	// Nothing listens on port 1: the run fails, non-zero.
	if code := run(context.Background(), []string{"-url", "ws://127.0.0.1:1", "-peers", "2", "-quiet", "-timeout", "2s", "-duration", "0"}, &out, &errb); code != 1 {
		t.Errorf("no server: exit %d, stderr %q", code, errb.String())
	}
}

func TestMediaModeReachesMediaMesh(t *testing.T) {
	url := newServer(t)
	rep, err := Run(context.Background(), Config{
		URL: url, Rooms: 1, Peers: 2, Mode: "media",
		Duration: time.Second, Timeout: 30 * time.Second, RequestTimeout: 10 * time.Second, ServerPid: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.FullMesh || rep.Consumers != 4 || rep.MissingConsumers != 0 || len(rep.Errors) != 0 {
		t.Fatalf("media: full %v, consumers %d, missing %d, errors %v", rep.FullMesh, rep.Consumers, rep.MissingConsumers, rep.Errors)
	}
	m := rep.Media
	if m == nil || m.ConsumersWithMedia != 4 || m.MeshMs <= 0 || m.MeshMs < rep.FullMeshMs || m.PacketsPerSec <= 0 || m.KbitPerSec <= 0 || m.PacketsSent == 0 {
		t.Fatalf("media: %+v (full mesh %v ms)", m, rep.FullMeshMs)
	}
	if rep.Loop == nil || rep.Loop.OK == 0 || !rep.Teardown.Complete {
		t.Fatalf("loop %+v, teardown %+v", rep.Loop, rep.Teardown)
	}
	// Two peers on loopback lose nothing; a broken counter would show.
	if m.LossPct > 1 || m.WorstLossPct > 1 {
		t.Fatalf("media loss %.3f %% (worst consumer %.3f %%) on a clean loopback run", m.LossPct, m.WorstLossPct)
	}
}

func TestSeqTrackerCountsGapsAcrossWrap(t *testing.T) {
	var s seqTracker
	for _, q := range []uint16{65530, 65531, 65533, 65535, 0, 1, 3} { // 65532, 65534, 2 lost
		s.add(q)
	}
	if e, l := s.expectedLost(); e != 10 || l != 3 {
		t.Fatalf("expected %d lost %d, want 10 and 3", e, l)
	}
}

func TestFloorModeReachesFullMesh(t *testing.T) {
	rep, err := Run(context.Background(), Config{
		Mode: "floor", WorkerBin: testutil.WorkerBin(t), Workers: 1, Rooms: 2, Peers: 3,
		Duration: 300 * time.Millisecond, Timeout: 30 * time.Second, RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.FullMesh || rep.Consumers != 24 || rep.MissingConsumers != 0 || rep.PeersJoined != 6 || len(rep.Errors) != 0 {
		t.Fatalf("floor: full %v, consumers %d, missing %d, joined %d, errors %v",
			rep.FullMesh, rep.Consumers, rep.MissingConsumers, rep.PeersJoined, rep.Errors)
	}
	if rep.Loop == nil || rep.Loop.OK == 0 || rep.Loop.Failed != 0 || !rep.Teardown.Complete || rep.Setup.Count != 6 {
		t.Fatalf("floor: loop %+v, teardown %+v, setup %+v", rep.Loop, rep.Teardown, rep.Setup)
	}
	for _, m := range rep.Methods {
		if m.Method == "consume (floor)" && m.RTT.Count != 24 {
			t.Errorf("consume: %+v", m)
		}
	}
}
