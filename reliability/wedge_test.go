package reliability

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"go.uber.org/goleak"
)

// The tests that can wedge the server run last (this file sorts last):
// the goroutines a wedge leaves stuck forever would skew the figures of the
// tests after them.

// ---- fixed bug (worked around in room/): mediasoup-go (v2.4.1, still v2.6.0) leaves a transport locked ----
//
// Transport.ConsumeContext (transport.go:866–880 in v2.4.1, 931–951 in
// v2.6.0; reproduced by worker's
// TestUpstreamConsumeLeavesTransportLockedWhenProducerCloses) takes the
// transport's mutex after the worker answered the consume request, then,
// if the producer closed meanwhile, closes the new consumer and returns
// "original Producer closed" WITHOUT unlocking. Every later call that takes
// that transport's mutex blocks forever: the next Consume on it (the room's
// consume goroutine), and Transport.Close when its peer leaves — so the
// peer's Close never returns, its room never closes, the router stays in
// the worker, and room.Manager.CloseAll (server shutdown) hangs. A producer
// closing while another peer's consumer of it is being created is a normal
// race (a peer leaves as another joins; closeProducer right after produce).

const wedgeBug = "mediasoup-go-consume-lock"

var (
	wedgeMu      sync.Mutex
	wedgeIgnores []goleak.Option
	wedgeSeen    = map[string]bool{}
	// wedgeOld: goroutines stuck since an earlier test; a later test's
	// server is not wedged by them.
	wedgeOld = map[string]bool{}
)

// forgetWedges marks the goroutines stuck now as an earlier test's.
func forgetWedges() {
	ids := wedgedIDs()
	wedgeMu.Lock()
	defer wedgeMu.Unlock()
	for _, id := range ids {
		wedgeOld[id] = true
	}
}

func wedgedIDs() []string {
	var ids []string
	for _, g := range stuckOnTransport() {
		ids = append(ids, g.id)
	}
	return ids
}

var transportFunc = regexp.MustCompile(`github\.com/jiyeyuran/mediasoup-go/v2\.\(\*Transport\)\.[A-Za-z]+`)

type stuckGoroutine struct {
	id, fn, stack string
}

// stuckOnTransport lists the goroutines blocked on a mediasoup-go
// Transport's mutex.
func stuckOnTransport() []stuckGoroutine {
	var out []stuckGoroutine
	for _, g := range testutil.Goroutines() {
		header, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(header, "Lock") && !strings.Contains(header, "semacquire") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(header, "goroutine "), " ")
		lines := strings.Split(g, "\n")
		// The blocked frame: the first mediasoup-go Transport frame, right
		// after the sync frames.
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "sync.") || strings.HasPrefix(l, "internal/sync.") || strings.HasPrefix(l, "\t") {
				continue
			}
			if f := transportFunc.FindString(l); f != "" {
				out = append(out, stuckGoroutine{id: id, fn: f, stack: g})
			}
			break
		}
	}
	return out
}

// wedgeTracker finds goroutines stuck on a mediasoup-go Transport's mutex:
// blocked there in two of its samples at least after apart (a goroutine
// waiting for a transport busy with a worker request is not stuck: give it
// more than the worker request deadline), and not known from an earlier test.
type wedgeTracker struct {
	after time.Duration
	first map[string]time.Time // goroutine id → when first seen blocked
}

// check samples the goroutines and returns how many are stuck, the
// Transport functions they are blocked in, and one stack.
func (w *wedgeTracker) check() (n int, funcs []string, sample string) {
	if w.first == nil {
		w.first = map[string]time.Time{}
	}
	now := time.Now()
	seen := map[string]bool{}
	wedgeMu.Lock()
	defer wedgeMu.Unlock()
	for _, g := range stuckOnTransport() {
		if wedgeOld[g.id] {
			continue
		}
		key := g.id + " " + g.fn
		seen[key] = true
		since, ok := w.first[key]
		if !ok {
			w.first[key] = now
			continue
		}
		if now.Sub(since) < w.after {
			continue
		}
		n++
		if !slices.Contains(funcs, g.fn) {
			funcs = append(funcs, g.fn)
		}
		if sample == "" {
			sample = g.stack
		}
	}
	for k := range w.first {
		if !seen[k] {
			delete(w.first, k)
		}
	}
	return n, funcs, sample
}

// wedged is called when a test already fails because the server did not
// empty or shut down: it tells whether goroutines are stuck on a wedged
// mediasoup-go transport (watching for up to 3 s; by then they have waited
// for longer than any worker request), and if so fails t with that
// diagnosis (the bug worked around since d6f8d05 is back) and lets the leak
// checks ignore those goroutines: they can never end.
func wedged(t *testing.T) bool {
	t.Helper()
	var n int
	var funcs []string
	var sample string
	w := wedgeTracker{after: 2 * time.Second}
	for range 7 {
		if n, funcs, sample = w.check(); n > 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n == 0 {
		return false
	}
	wedgeMu.Lock()
	for _, f := range funcs {
		wedgeIgnores = append(wedgeIgnores, goleak.IgnoreAnyFunction(f))
	}
	// A connection whose request handler is stuck (leaveRoom closing the
	// peer) never finishes either: its writer waits for the handler.
	wedgeIgnores = append(wedgeIgnores, goleak.IgnoreAnyFunction("github.com/mediasoup-server/mediasoup-server/signaling.(*Conn).finish"))
	first := !wedgeSeen[t.Name()]
	wedgeSeen[t.Name()] = true
	wedgeMu.Unlock()
	if first {
		t.Logf("goroutine stuck on a wedged transport:\n%s", sample)
		fixedBug(t, wedgeBug, "%s: %d goroutines blocked forever on a mediasoup-go Transport mutex left locked by ConsumeContext (in %s)",
			t.Name(), n, strings.Join(funcs, ", "))
	}
	return true
}

func wedgeSeenBy(t *testing.T) bool {
	wedgeMu.Lock()
	defer wedgeMu.Unlock()
	return wedgeSeen[t.Name()]
}

func wedgeLeakOptions() []goleak.Option {
	wedgeMu.Lock()
	defer wedgeMu.Unlock()
	return slices.Clone(wedgeIgnores)
}

// TestChurnSoakFree is TestChurnSoak without the gate: the peers act as
// real clients do, unsynchronised. It would hit the wedge (seconds to
// minutes in) without the room's workaround; it fails if it does.
func TestChurnSoakFree(t *testing.T) { churnSoak(t, false) }

// TestConsumeRacingProducerClose reproduces the wedge: a producer is closed
// right after it was created, while the room creates the other peers'
// consumers of it (eight consuming peers widen the window). When the room
// logs "original Producer closed" (the branch of ConsumeContext that keeps
// the lock), a second producer must still reach every consuming peer; with
// the bug, the peer whose transport stayed locked never gets it. Bounded:
// 1000 rounds or 10 s (60 s with -full).
func TestConsumeRacingProducerClose(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { checkLeaks(t, leaks) })
	// No rate limit: the rounds go as fast as the server answers.
	s := startServer(t, serverConfig{limits: signaling.Limits{RequestRate: -1}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := dialSig(ctx, s.url, "race", "a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	if err := a.setup(); err != nil {
		t.Fatal(err)
	}
	if err := a.join(false); err != nil {
		t.Fatal(err)
	}
	var consumers []*sigPeer
	for i := range 8 {
		b, err := dialSig(ctx, s.url, "race", fmt.Sprintf("b%d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.close)
		if err := b.setup(); err != nil {
			t.Fatal(err)
		}
		if err := b.join(true); err != nil {
			t.Fatal(err)
		}
		consumers = append(consumers, b)
	}

	const maxRounds = 1000
	deadline := time.Now().Add(pick(0, 10*time.Second, 60*time.Second))
	rounds, raced := 0, int64(0)
	for ; rounds < maxRounds && time.Now().Before(deadline); rounds++ {
		// The race: closeProducer goes out the moment produce is answered,
		// as the room starts creating the consumers.
		id, err := a.produce("audio")
		if err != nil {
			t.Fatalf("round %d: produce: %v", rounds, err)
		}
		if err := a.req("closeProducer", map[string]string{"producerId": id}, nil); err != nil {
			t.Fatalf("round %d: closeProducer: %v", rounds, err)
		}
		if n := s.logs.producerClosedInConsume.Load(); n == raced && rounds%50 != 49 {
			continue
		} else {
			raced = n
		}
		// The race happened (or a periodic check): every consuming peer
		// must still get a consumer of a producer that stays open.
		id2, err := a.produce("audio")
		if err != nil {
			t.Fatalf("round %d: produce: %v", rounds, err)
		}
		for _, b := range consumers {
			got := false
			// Generous: a consumer the worker is slow to create on a busy
			// machine still comes; one on a wedged transport never does.
			for wait := time.Now().Add(20 * time.Second); time.Now().Before(wait) && !got; {
				got = b.hasProducer(id2)
				time.Sleep(time.Millisecond)
			}
			if !got {
				if wedged(t) {
					figure(t, "regressions", wedgeBug+": reproduced", "in round %d (%d races of consume and producer close)", rounds+1, raced)
				}
				t.Fatalf("round %d: %s got no consumer of the open producer %s", rounds, b.PeerID(), id2)
			}
		}
		if err := a.req("closeProducer", map[string]string{"producerId": id2}, nil); err != nil {
			t.Fatalf("round %d: closeProducer: %v", rounds, err)
		}
	}
	figure(t, "regressions", wedgeBug+": reproduced", "no, in %d rounds (%d races of consume and producer close, none wedged)", rounds, raced)
	a.close()
	for _, b := range consumers {
		b.close()
	}
	s.waitEmpty(t, 10*time.Second)
}
