package room

// Notification fan-out, the room's half: Room.broadcast to N joined peers
// whose PeerConn is an in-memory stub counting calls. A real room needs a
// router, so this starts one real mediasoup worker (MEDIASOUP_WORKER_BIN or
// bin/mediasoup-worker); the peers join without transports (the broadcast
// loop does not look at them). The per-connection half (encoding and
// queueing each frame) is signaling.BenchmarkConnNotifyFanout.
//
//	go test -run XXX -bench Broadcast -benchmem ./room/

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
)

// broadcastBenchConn counts notifications; it never blocks nor fails, like
// the real Conn.Notify (which only queues).
type broadcastBenchConn struct{ notes atomic.Int64 }

func (c *broadcastBenchConn) Notify(string, any) error { c.notes.Add(1); return nil }
func (c *broadcastBenchConn) NotifyShared(*Notification) error {
	c.notes.Add(1)
	return nil
}
func (c *broadcastBenchConn) Request(context.Context, string, any) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (c *broadcastBenchConn) Close(int, string) {}

func BenchmarkBroadcast(b *testing.B) {
	m, _ := newTestManager(b, 1, Options{MaxPeersPerRoom: 2000})
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			ctx := context.Background()
			roomID := fmt.Sprintf("bench-%d", n)
			conns := make([]*broadcastBenchConn, n)
			for i := range conns {
				conns[i] = &broadcastBenchConn{}
				p, err := m.Connect(ctx, roomID, fmt.Sprintf("peer-%d", i), conns[i])
				if err != nil {
					b.Fatal(err)
				}
				_, after, err := p.Join(JoinRequest{DisplayName: p.ID()})
				if err != nil {
					b.Fatal(err)
				}
				after() // newPeer to the others
			}
			r := m.Room(roomID)
			if r == nil {
				b.Fatal("room not open")
			}
			before := make([]int64, n)
			for i, c := range conns {
				before[i] = c.notes.Load()
			}
			data := mediasoup.H{"peerId": "peer-17", "volume": -42}
			b.ReportAllocs()
			for b.Loop() {
				r.broadcast(nil, "activeSpeaker", data)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/peer")
			for i, c := range conns {
				if got := c.notes.Load() - before[i]; got != int64(b.N) {
					b.Fatalf("peer %d got %d notifications, want %d", i, got, b.N)
				}
			}
			r.Close(CloseKicked, "benchmark over")
		})
	}
}
