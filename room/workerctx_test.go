package room

import (
	"context"
	"testing"
	"time"
)

// workerContext's shared contexts: each ends WorkerRequestTimeout after
// its call, at most workerContextGrain sooner (never later: it must stay
// under mediasoup-go's own 5 s timeout); a caller's cancel does not end it
// for the others; calls of the same moment share one; a later call gets a
// new one.
func TestWorkerContextShared(t *testing.T) {
	t0 := time.Now()
	ctx, cancel := workerContext()
	t1 := time.Now()
	d, ok := ctx.Deadline()
	if !ok || d.Before(t0.Add(WorkerRequestTimeout-workerContextGrain)) || d.After(t1.Add(WorkerRequestTimeout)) {
		t.Fatalf("deadline %v after the call, want %v less at most %v", d.Sub(t0), WorkerRequestTimeout, workerContextGrain)
	}
	cancel()
	if ctx.Err() != nil {
		t.Fatalf("one caller's cancel ended the shared context: %v", ctx.Err())
	}
	var last context.Context
	for range 1000 {
		a, _ := workerContext()
		b, _ := workerContext()
		if a == b {
			last = a
			break
		}
	}
	if last == nil {
		t.Fatal("back-to-back calls never shared a context")
	}
	time.Sleep(workerContextGrain + 10*time.Millisecond)
	if later, _ := workerContext(); later == last {
		t.Fatalf("a call more than %v later got the same context", workerContextGrain)
	}
}
