package room

// The producer locks (Room.consuming, Room.closingProducers) against real
// workers: a consume in flight holds back the close of its own producer
// only, never another peer's request, and the locks go when unused.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
)

// ids are the producer ids whose locks are held or waited on now.
func (l *producerLocks) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// writerWaiting reports whether a closer waits for (or holds) id's lock.
// Only for while a reader holds it: TryRLock then fails only because of
// a writer.
func (l *producerLocks) writerWaiting(id string) bool {
	pl := l.get(id)
	defer l.put(id, pl)
	if pl.TryRLock() {
		pl.RUnlock()
		return false
	}
	return true
}

// lockTestPeer connects and joins a peer whose client accepts every
// request at once; caps: its RTP capabilities (nil for a peer that only
// produces). The Afters of Join and Produce are not run: the test starts
// each consume itself.
func lockTestPeer(t *testing.T, m *Manager, roomID, peerID string, caps *mediasoup.RtpCapabilities) *Peer {
	t.Helper()
	ctx := context.Background()
	p, err := m.Connect(ctx, roomID, peerID, &broadcastBenchConn{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Join(JoinRequest{DisplayName: peerID, RtpCapabilities: caps}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateWebRtcTransport(ctx, TransportRequest{Producing: caps == nil, Consuming: caps != nil}); err != nil {
		t.Fatal(err)
	}
	return p
}

// lockTestProduce makes a VP8 producer on p's transport; mid and ssrc must
// be new on it.
func lockTestProduce(t *testing.T, p *Peer, mid string, ssrc uint32) *mediasoup.Producer {
	t.Helper()
	var rp mediasoup.RtpParameters
	if err := json.Unmarshal([]byte(consumeBenchRtpParameters), &rp); err != nil {
		t.Fatal(err)
	}
	rp.Mid, rp.Encodings[0].Ssrc = mid, ssrc
	r := p.Room()
	id, _, err := p.Produce(context.Background(), ProduceRequest{TransportID: aTransportID(p), Kind: mediasoup.MediaKindVideo, RtpParameters: &rp})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return p.producers[id]
}

// aTransportID is the id of one of p's transports (lockTestPeer makes one).
func aTransportID(p *Peer) string {
	r := p.Room()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range p.transports {
		return id
	}
	return ""
}

// routerCaps is the room's router's RTP capabilities, as a client sends them.
func routerCaps(t *testing.T, p *Peer) *mediasoup.RtpCapabilities {
	t.Helper()
	raw, err := json.Marshal(p.RouterRtpCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	caps := new(mediasoup.RtpCapabilities)
	if err := json.Unmarshal(raw, caps); err != nil {
		t.Fatal(err)
	}
	return caps
}

// consumerOf reports whether p holds a consumer of producerID.
func consumerOf(p *Peer, producerID string) bool {
	r := p.Room()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range p.consumers {
		if c.ProducerId() == producerID && !c.Closed() {
			return true
		}
	}
	return false
}

// done waits for ch: a generous bound that catches a deadlock, never a
// measure of speed.
func done[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still blocked after 30 s", what)
		panic("unreachable")
	}
}

// Issue 15: one peer's slow request (a consume waiting for the worker) does
// not delay another peer's unrelated request in the same room. A consume of
// producer X is held in flight; meanwhile another peer's producer Y closes,
// and while X's own close waits for that consume, a consume of another
// producer goes through. X closes once the consume is released, and no lock
// is left behind when the peers leave.
func TestConsumeInFlightHoldsOnlyItsProducer(t *testing.T) {
	m, _ := newTestManager(t, 1, Options{})
	ctx := context.Background()
	a := lockTestPeer(t, m, "locks", "a", nil)
	b := lockTestPeer(t, m, "locks", "b", nil)
	c := lockTestPeer(t, m, "locks", "c", routerCaps(t, a))
	x := lockTestProduce(t, a, "1", 1111)
	x2 := lockTestProduce(t, a, "2", 2222)
	y := lockTestProduce(t, b, "1", 3333)
	r := a.Room()

	// The consume of X, held in flight until release.
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the room closes, should the test fail
	held := make(chan error, 1)
	go func() {
		held <- r.consuming(x.Id(), func() error {
			close(entered)
			<-release
			return nil
		})
	}()
	done(t, entered, "consuming X")

	// (1) Another peer's producer closes while X's consume is held.
	closedY := make(chan error, 1)
	go func() { closedY <- b.ProducerOp(ctx, "close", y.Id()) }()
	if err := done(t, closedY, "closeProducer Y with a consume of X in flight"); err != nil {
		t.Fatalf("closeProducer Y: %v", err)
	}
	if !y.Closed() {
		t.Fatal("Y not closed")
	}
	if got := r.prodLocks.ids(); !slices.Equal(got, []string{x.Id()}) {
		t.Fatalf("producer locks %v, want only X's %s", got, x.Id())
	}

	// (3) X's own close waits for the consume of X...
	closedX := make(chan error, 1)
	go func() { closedX <- a.ProducerOp(ctx, "close", x.Id()) }()
	testutil.Eventually(t, 30*time.Second, func() bool { return r.prodLocks.writerWaiting(x.Id()) },
		"the close of X never reached X's lock")
	select {
	case err := <-closedX:
		t.Fatalf("closeProducer X returned (%v) while a consume of X was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if x.Closed() {
		t.Fatal("X closed while a consume of it was in flight")
	}

	// (2) ... and, with that close waiting (a room-wide lock would now stall
	// every consume of the room), a consume of another producer goes through.
	consumed := make(chan struct{})
	go func() { c.consume(a, x2); close(consumed) }()
	done(t, consumed, "consume of X2 while the close of X waits")
	if !consumerOf(c, x2.Id()) {
		t.Fatal("c has no consumer of X2")
	}
	select {
	case err := <-closedX:
		t.Fatalf("closeProducer X returned (%v) while a consume of X was in flight", err)
	default:
	}

	// (3) Released: X closes.
	unblock()
	if err := done(t, held, "the held consume"); err != nil {
		t.Fatal(err)
	}
	if err := done(t, closedX, "closeProducer X after the consume of X ended"); err != nil {
		t.Fatalf("closeProducer X: %v", err)
	}
	if !x.Closed() {
		t.Fatal("X not closed")
	}

	// Nothing left behind: every peer leaves (A still has X2, which c
	// consumes), the room closes, no producer lock remains.
	for _, p := range []*Peer{c, a, b} {
		p.Close()
	}
	if m.Room("locks") != nil {
		t.Fatal("room still open after its peers left")
	}
	if got := r.prodLocks.ids(); len(got) != 0 {
		t.Fatalf("producer locks left after the peers left: %v", got)
	}
}

// A producer consumed on another router (piped there, same id): the pipe's
// consume and the piped copy's close take that producer's lock too. When
// the producer closes, its piped copy follows; once the peers leave, no
// lock is left (the piped copy's close runs on its own goroutine).
func TestPipedProducerLocks(t *testing.T) {
	m, _ := newTestManager(t, 2, Options{RouterConsumerBudget: 1, MaxWorkersPerRoom: 2})
	ctx := context.Background()
	a := lockTestPeer(t, m, "piped", "a", nil)
	x := lockTestProduce(t, a, "1", 1111)
	caps := routerCaps(t, a)
	c := lockTestPeer(t, m, "piped", "c", caps)
	r := a.Room()
	r.mu.Lock()
	from, to := a.router, c.router
	r.mu.Unlock()
	if from == to {
		t.Fatal("the consuming peer is on the producer's router: no pipe to test")
	}
	c.consume(a, x)
	if !consumerOf(c, x.Id()) || r.Pipes() != 1 {
		t.Fatalf("consumer of X on the other router: %v, pipes %d (want 1)", consumerOf(c, x.Id()), r.Pipes())
	}
	if !to.CanConsume(x.Id(), CloneRtpCapabilities(caps)) {
		t.Fatal("X not piped to c's router")
	}

	if err := a.ProducerOp(ctx, "close", x.Id()); err != nil {
		t.Fatalf("closeProducer X: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return !consumerOf(c, x.Id()) && r.Pipes() == 0 && !to.CanConsume(x.Id(), CloneRtpCapabilities(caps))
	}, "X's piped copy and c's consumer of it did not close with X")

	c.Close()
	a.Close()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(r.prodLocks.ids()) == 0 },
		"producer locks left after the peers left")
}

// Data consumes hold the data producer's lock too: mediasoup-go's
// ConsumeDataContext leaves the transport locked when the data producer
// closed between the worker's answer and its own check (worker's
// TestUpstreamConsumeDataLeavesTransportLockedWhenDataProducerCloses, which
// hits that window on its first try with the same steps). The worker is
// stopped while b's data consume of a's data producer is in flight and a
// leaves: a's close must wait for the consume (nothing more reaches the
// worker), and once the worker runs again both end and b's transport is
// not locked (b can leave).
func TestDataConsumeRacingDataProducerClose(t *testing.T) {
	m, pool := newTestManager(t, 1, Options{})
	pid := pool.Infos()[0].Pid
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	pending := func() int { return pool.Infos()[0].PendingRequests }
	caps := routerCaps(t, lockTestPeer(t, m, "caps", "x", nil))
	for i := range 5 {
		roomID := fmt.Sprintf("data-%d", i)
		a := lockTestPeer(t, m, roomID, "a", nil)
		r := a.Room()
		ordered := true
		id, _, err := a.ProduceData(context.Background(), ProduceDataRequest{TransportID: aTransportID(a), Label: "chat",
			SctpStreamParameters: &mediasoup.SctpStreamParameters{StreamId: 1, Ordered: &ordered}})
		if err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		d := a.dataProds[id]
		r.mu.Unlock()
		b := lockTestPeer(t, m, roomID, "b", caps)

		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		consumed, left := make(chan struct{}), make(chan struct{})
		go func() { b.consumeData(a, d); close(consumed) }()
		testutil.Eventually(t, 30*time.Second, func() bool { return pending() >= 1 }, "the data consume never reached the worker")
		go func() { a.Close(); close(left) }()
		time.Sleep(100 * time.Millisecond) // time for a's close to reach the worker, were it not held
		if n := pending(); n != 1 {
			t.Fatalf("round %d: %d requests in flight while a data consume of a's data producer is: a's close did not wait for it", i, n)
		}
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		done(t, consumed, "b's data consume")
		done(t, left, "a's leave")
		bLeft := make(chan struct{})
		go func() { b.Close(); close(bLeft) }()
		done(t, bLeft, "b's leave (its transport locked?)")
	}
}
