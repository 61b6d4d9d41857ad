package room

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mediasoup-server/mediasoup-server/worker"
)

// Placement projects the load of a full mesh, so a room whose peers all
// create their transports before anyone produces (a meeting starting at
// once) still spreads, evenly; a broadcast room spreads by viewer count; a
// small room stays on one worker.
func TestPlacementProjectsLoad(t *testing.T) {
	m, _ := newTestManager(t, 2, Options{MaxPeersPerRoom: 500}) // default budget: 400 consumers per router
	for _, tc := range []struct {
		name              string
		producers, others int  // peers that produce (and consume), and peers that only consume
		wantRouters       int  // routers the room ends with
		balanced          bool // peers split evenly (within 2) over the routers
	}{
		// 24 × 23 × 2 = 1,104 consumers, all created after placement.
		{name: "mesh stampede", producers: 24, wantRouters: 2, balanced: true},
		// 10 × 9 × 2 = 180 consumers: one router holds it.
		{name: "small mesh", producers: 10, wantRouters: 1},
		// One broadcaster, 300 viewers × 2 consumers: 600 > 400.
		{name: "broadcast", producers: 1, others: 300, wantRouters: 2},
		// One broadcaster, 150 viewers: 300 consumers fit.
		{name: "small broadcast", producers: 1, others: 150, wantRouters: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var peers []*Peer
			for i := range tc.producers + tc.others {
				p, err := m.Connect(ctx, tc.name, fmt.Sprintf("p%d", i), &broadcastBenchConn{})
				if err != nil {
					t.Fatal(err)
				}
				peers = append(peers, p)
			}
			// Broadcasters first (they set up before the audience comes),
			// then everyone else at once.
			setup := func(p *Peer, producing bool) {
				if producing {
					if _, err := p.CreateWebRtcTransport(ctx, TransportRequest{Producing: true}); err != nil {
						t.Error(err)
					}
				}
				if _, err := p.CreateWebRtcTransport(ctx, TransportRequest{Consuming: true}); err != nil {
					t.Error(err)
				}
			}
			first := 0
			if tc.others > 0 {
				for _, p := range peers[:tc.producers] {
					setup(p, true)
				}
				first = tc.producers
			}
			var wg sync.WaitGroup
			for i, p := range peers[first:] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					setup(p, first+i < tc.producers)
				}()
			}
			wg.Wait()
			rm := peers[0].Room()
			count := map[*worker.Router]int{}
			rm.mu.Lock()
			for _, p := range rm.peers {
				count[p.router]++
			}
			rm.mu.Unlock()
			routers := rm.Routers()
			if len(routers) != tc.wantRouters {
				t.Fatalf("%d routers, want %d (peers per router: %v)", len(routers), tc.wantRouters, count)
			}
			if len(routers) == 2 && routers[0].Worker == routers[1].Worker {
				t.Fatal("the room's two routers are on one worker")
			}
			n := len(peers)
			for _, rt := range routers {
				if tc.balanced && (count[rt] < n/len(routers)-2 || count[rt] > n/len(routers)+2) {
					t.Errorf("router on worker %d holds %d of %d peers: not balanced %v", rt.Worker.Index(), count[rt], n, count)
				}
				if count[rt] == 0 {
					t.Errorf("router on worker %d holds no peer", rt.Worker.Index())
				}
			}
			for _, p := range peers {
				p.Close()
			}
		})
	}
}
