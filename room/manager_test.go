package room

import (
	"context"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// newTestManager is a Manager over a pool of n real workers, closed (rooms,
// then workers) when the test ends.
func newTestManager(t testing.TB, n int, opts Options) (*Manager, *worker.Pool) {
	t.Helper()
	log := zap.NewNop()
	pool, err := worker.New(worker.Options{Bin: testutil.WorkerBin(t), Count: n, RtcPort: testutil.FreePorts(t, n),
		ListenIP: "127.0.0.1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = log
	m := NewManager(pool, opts)
	t.Cleanup(func() {
		m.CloseAll(CloseKicked, "test over")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Wait(ctx)
		pool.Close()
	})
	return m, pool
}
