// Package testserver serves an in-process server for integration tests and
// shuts it down in the server's own order.
package testserver

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// Pool starts n real workers on loopback (free WebRtcServer ports, fast
// respawn) logging under log.Named("worker"); mods change the options. The
// caller closes it: Serve does, in the server's shutdown order.
func Pool(t testing.TB, n int, log *zap.Logger, mods ...func(*worker.Options)) *worker.Pool {
	t.Helper()
	opts := worker.Options{
		Bin: testutil.WorkerBin(t), Count: n, RtcPort: testutil.FreePorts(t, n),
		ListenIP: "127.0.0.1", RespawnMinDelay: 50 * time.Millisecond, Logger: log.Named("worker"),
	}
	for _, m := range mods {
		m(&opts)
	}
	pool, err := worker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// Serve serves h on a loopback httptest server and returns its URL. At the
// end of the test it stops the listener, closes the rooms, waits for every
// session and for the rooms' work, and only then closes the pool, as the
// server's shutdown does.
func Serve(t testing.TB, pool *worker.Pool, rooms *room.Manager, h *signaling.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		rooms.CloseAll(room.CloseKicked, "test over")
		h.CloseRelayed(room.CloseKicked, "test over")
		// Generous: only work that never ends crosses it.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := h.Wait(ctx); err != nil {
			t.Errorf("sessions did not end: %v", err)
		}
		if err := rooms.Wait(ctx); err != nil {
			t.Errorf("room work did not end: %v", err)
		}
		pool.Close()
	})
	return srv.URL
}
