package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// The turns of one worker: background work takes at most MaxBackground of
// the MaxInFlight; one more waits, and gives up after its wait; a
// client's own request (Do) still gets a turn meanwhile; a turn freed is
// taken by a waiter.
func TestWorkerTurns(t *testing.T) {
	w := &Worker{inflight: make(chan struct{}, MaxInFlight), background: make(chan struct{}, MaxBackground)}
	release := make(chan struct{})
	var started, wg sync.WaitGroup
	for range MaxBackground {
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.DoBackground(time.Minute, func() error { started.Done(); <-release; return nil })
		}()
	}
	started.Wait()

	ran := false
	err := w.DoBackground(20*time.Millisecond, func() error { ran = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("background work past MaxBackground: ran %v, err %v", ran, err)
	}
	if err := w.Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("a client's request while the background turns are taken: %v", err)
	}

	waiter := make(chan error, 1)
	go func() { waiter <- w.DoBackground(time.Minute, func() error { return errors.New("ran") }) }()
	close(release)
	if err := <-waiter; err == nil || err.Error() != "ran" {
		t.Fatalf("the waiter, once turns were free: %v", err)
	}
	wg.Wait()
	if len(w.inflight) != 0 || len(w.background) != 0 {
		t.Fatalf("turns left taken: %d in flight, %d background", len(w.inflight), len(w.background))
	}
}
