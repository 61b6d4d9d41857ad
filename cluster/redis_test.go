package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testredis"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

// fakeNode is what a test node reports: its load and rooms, set by the test.
type fakeNode struct {
	mu       sync.Mutex
	load     Load
	rooms    []string
	draining bool
	lost     chan string
}

func (f *fakeNode) stats() (Load, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load, slices.Clone(f.rooms)
}

func (f *fakeNode) set(load Load, rooms ...string) {
	f.mu.Lock()
	f.load, f.rooms = load, rooms
	f.mu.Unlock()
}

// fast: short heartbeats, so that the tests see expiries in about a second.
func fast(url, id string, f *fakeNode, t *testing.T) RedisOptions {
	return RedisOptions{
		URL: url, NodeID: id, Stats: f.stats, Logger: zaptest.NewLogger(t).Named(id),
		Draining:          func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.draining },
		OnLost:            func(id string) { f.lost <- id },
		HeartbeatInterval: 100 * time.Millisecond, HeartbeatTTL: 600 * time.Millisecond,
		LeaseTTL: 2 * time.Second, CommandTimeout: time.Second,
	}
}

func startNode(t *testing.T, opts RedisOptions) *Redis {
	t.Helper()
	n, err := NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	testutil.Eventually(t, 30*time.Second, func() bool { return n.Ready() == nil }, "node %s never ready", opts.NodeID)
	return n
}

func checkLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
}

func probe(t *testing.T, srv *testredis.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func locate(t *testing.T, n *Redis, room string) Owner {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := n.Locate(ctx, room)
	if err != nil {
		t.Fatalf("%s: locate %s: %v", n.NodeID(), room, err)
	}
	return o
}

// A room is claimed for the least-loaded live node that is not draining,
// whoever asks; every node then answers that owner.
func TestPlacementLeastLoadedAndStable(t *testing.T) {
	checkLeaks(t)
	srv := testredis.Start(t)
	fa, fb := &fakeNode{lost: make(chan string, 8)}, &fakeNode{lost: make(chan string, 8)}
	fa.set(Load{Peers: 10, WorkersAlive: 1})
	fb.set(Load{Peers: 1, WorkersAlive: 1})
	a := startNode(t, fast(srv.URL(), "a", fa, t))
	b := startNode(t, fast(srv.URL(), "b", fb, t))
	testutil.Eventually(t, 30*time.Second, func() bool { return len(a.candidates()) == 2 }, "a does not see b")

	// a is asked, b is less loaded: b owns it, for everyone.
	if o := locate(t, a, "r1"); o.Node != "b" || o.Local {
		t.Fatalf("a: r1 owned by %+v, want b", o)
	}
	if o := locate(t, b, "r1"); o.Node != "b" || !o.Local {
		t.Fatalf("b: r1 owned by %+v, want b (local)", o)
	}
	// Loads change: the owner of r1 does not.
	fb.set(Load{Peers: 100, WorkersAlive: 1})
	testutil.Eventually(t, 30*time.Second, func() bool { return a.candidates()[0] == "a" }, "a never saw b's load")
	if o := locate(t, a, "r1"); o.Node != "b" {
		t.Fatalf("r1 moved to %+v", o)
	}
	if o := locate(t, b, "r2"); o.Node != "a" {
		t.Fatalf("r2 owned by %+v, want a (least loaded)", o)
	}
	// A draining node claims nothing new, even the least loaded.
	fa.mu.Lock()
	fa.draining = true
	fa.mu.Unlock()
	testutil.Eventually(t, 30*time.Second, func() bool { return slices.Equal(b.candidates(), []string{"b"}) }, "b never saw a draining")
	if o := locate(t, a, "r3"); o.Node != "b" {
		t.Fatalf("r3 owned by %+v, want b (a drains)", o)
	}
	nodes, err := a.Nodes(context.Background())
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes %+v, %v", nodes, err)
	}
}

// The owner renews the lease while it holds the room and drops it once the
// room is gone; a room held here whose lease another live node holds is
// reported lost.
func TestLeaseRenewReleaseAndConflict(t *testing.T) {
	checkLeaks(t)
	srv := testredis.Start(t)
	rc := probe(t, srv)
	fa, fb := &fakeNode{lost: make(chan string, 8)}, &fakeNode{lost: make(chan string, 8)}
	fa.set(Load{WorkersAlive: 1})
	fb.set(Load{Peers: 5, WorkersAlive: 1})
	a := startNode(t, fast(srv.URL(), "a", fa, t))
	startNode(t, fast(srv.URL(), "b", fb, t))
	if o := locate(t, a, "r"); !o.Local {
		t.Fatalf("r owned by %+v", o)
	}
	fa.set(Load{Rooms: 1, WorkersAlive: 1}, "r")
	// Renewed past its TTL (2 s).
	time.Sleep(3 * time.Second)
	if v, err := rc.Get(context.Background(), "mediasoup:room:r").Result(); err != nil || v != "a" {
		t.Fatalf("lease after 3 s: %q %v", v, err)
	}
	// The room closes: the lease goes with the next heartbeat.
	fa.set(Load{WorkersAlive: 1})
	testutil.Eventually(t, 30*time.Second, func() bool {
		return rc.Exists(context.Background(), "mediasoup:room:r").Val() == 0
	}, "lease kept after the room closed")
	// b holds a lease on a room a also has: a reports it lost.
	if err := rc.Set(context.Background(), "mediasoup:room:dup", "b", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	fa.set(Load{Rooms: 1, WorkersAlive: 1}, "dup")
	select {
	case id := <-fa.lost:
		if id != "dup" {
			t.Fatalf("lost %q", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a never reported the duplicate room")
	}
}

// An owner that stops heartbeating (a crash) loses its rooms once its
// record expires: the room is claimable by the live nodes.
func TestOwnerLostRoomClaimable(t *testing.T) {
	srv := testredis.Start(t)
	fa, fb := &fakeNode{lost: make(chan string, 8)}, &fakeNode{lost: make(chan string, 8)}
	fa.set(Load{WorkersAlive: 1})
	fb.set(Load{Peers: 5, WorkersAlive: 1})
	a := startNode(t, fast(srv.URL(), "a", fa, t))
	b := startNode(t, fast(srv.URL(), "b", fb, t))
	if o := locate(t, b, "r"); o.Node != "a" {
		t.Fatalf("r owned by %+v", o)
	}
	fa.set(Load{Rooms: 1, WorkersAlive: 1}, "r")
	a.crash()
	start := time.Now()
	testutil.Eventually(t, 30*time.Second, func() bool { return locate(t, b, "r").Node == "b" }, "r never moved to b")
	t.Logf("room claimable %v after its owner stopped (heartbeat TTL 600ms)", time.Since(start).Round(10*time.Millisecond))
}

// Redis away: the node is not ready (why is said) and places nothing; back:
// ready again by itself, its record and leases restored.
func TestRedisRestartReadiness(t *testing.T) {
	checkLeaks(t)
	srv := testredis.Start(t)
	rc := probe(t, srv)
	fa := &fakeNode{lost: make(chan string, 8)}
	fa.set(Load{Rooms: 1, WorkersAlive: 1}, "kept")
	a := startNode(t, fast(srv.URL(), "a", fa, t))
	srv.Stop()
	testutil.Eventually(t, 30*time.Second, func() bool { return a.Ready() != nil }, "still ready without redis")
	t.Logf("not ready: %v", a.Ready())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Locate(ctx, "x"); err == nil {
		t.Fatal("placed a room without redis")
	}
	srv.Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return a.Ready() == nil }, "not ready after redis came back")
	testutil.Eventually(t, 30*time.Second, func() bool {
		return rc.Get(context.Background(), "mediasoup:room:kept").Val() == "a"
	}, "lease of the room held here not restored")
}

// A batch of frames sent with SendText, larger than one pipeline, arrives
// whole and in order, interleaved correctly with single sends around it;
// a batch on a closed link fails and sends nothing.
func TestRelaySendTextKeepsOrder(t *testing.T) {
	checkLeaks(t)
	srv := testredis.Start(t)
	fa, fb := &fakeNode{lost: make(chan string, 8)}, &fakeNode{lost: make(chan string, 8)}
	a := startNode(t, fast(srv.URL(), "a", fa, t))
	b := startNode(t, fast(srv.URL(), "b", fb, t))

	owner := make(chan Link, 1)
	b.Relay().Serve(func(l Link, _ Open) {
		if err := l.Accept(); err != nil {
			t.Errorf("accept: %v", err)
		}
		l.Bind(Handler{Frame: func(bool, []byte) {}, Closed: func(int, string) {}})
		owner <- l
	})
	const n = 3*256 + 17
	got := make(chan string, n+2)
	closed := make(chan int, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	edge, err := a.Relay().Dial(ctx, "b", Open{Kind: "ws", Room: "r", Peer: "p"}, Handler{
		Frame:  func(_ bool, f []byte) { got <- string(f) },
		Closed: func(code int, _ string) { closed <- code },
	})
	if err != nil {
		t.Fatal(err)
	}
	ol := <-owner

	var want []string
	if err := ol.Send(false, []byte("first")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "first")
	var batch [][]byte
	for i := range n {
		f := fmt.Sprintf("frame %d", i)
		batch = append(batch, []byte(f))
		want = append(want, f)
	}
	if err := ol.SendText(batch); err != nil {
		t.Fatal(err)
	}
	if err := ol.Send(false, []byte("last")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "last")
	for i, w := range want {
		select {
		case f := <-got:
			if f != w {
				t.Fatalf("frame %d: got %q, want %q", i, f, w)
			}
		case <-ctx.Done():
			t.Fatalf("frame %d (%q) never arrived", i, w)
		}
	}

	ol.Close(4000, "bye")
	if c := <-closed; c != 4000 {
		t.Fatalf("edge closed with %d, want 4000", c)
	}
	if err := ol.SendText(batch[:3]); !errors.Is(err, ErrLinkClosed) {
		t.Fatalf("SendText on a closed link: %v", err)
	}
	edge.Close(0, "")
}
