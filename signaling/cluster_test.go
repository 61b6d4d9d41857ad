package signaling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testcluster"
	"github.com/mediasoup-server/mediasoup-server/internal/testredis"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/redis/go-redis/v9"
)

// throughRelay marks the tests (by their *testing.T) whose newEnv is a
// two-node cluster: the test's clients connect to the edge node, every room
// lives on the owner node, so every frame is relayed through Redis.
var throughRelay sync.Map

// newRelayEnv: e.rooms and e.pool are the owner's, e.url the edge's.
func newRelayEnv(t *testing.T, workers int, mod ...func(*room.Options, *signaling.Limits)) *env {
	t.Helper()
	srv := testredis.Start(t)
	o := testcluster.Options{
		Workers: workers,
		Room: func(ro *room.Options) {
			for _, m := range mod {
				m(ro, &signaling.Limits{})
			}
		},
		Limits: func(l *signaling.Limits) {
			for _, m := range mod {
				m(&room.Options{}, l)
			}
		},
	}
	owner := testcluster.Start(t, srv.URL(), "owner", o)
	edge := testcluster.Start(t, srv.URL(), "edge", testcluster.Options{Limits: o.Limits})
	edge.Heavy.Store(true)
	testcluster.WaitSeeing(t, owner, edge)
	t.Cleanup(func() {
		// Runs before the nodes stop: the test's frames went through the relay.
		if n := metricValue(t, edge.URL, `mediasoup_server_relay_frames_total{dir="out"}`); n == 0 {
			t.Error("the edge relayed nothing")
		}
	})
	return &env{t: t, pool: owner.Pool, rooms: owner.Rooms, url: edge.URL}
}

// metricValue reads one sample of a server's /metrics (0 when absent).
func metricValue(t testing.TB, url, sample string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// The protocol through a relaying node is the owner's: the protocol tests,
// run with their clients on the edge node and their rooms on the owner.
func TestProtocolThroughRelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"MediasoupVersionNotificationFirst", TestMediasoupVersionNotificationFirst},
		{"JoinProduceConsumeAndLeave", TestJoinProduceConsumeAndLeave},
		{"DataProducerReachesOthers", TestDataProducerReachesOthers},
		{"ErrorCodes", TestErrorCodes},
		{"RejectedNewConsumerLeavesNoConsumer", TestRejectedNewConsumerLeavesNoConsumer},
		{"UnansweredNewConsumerLeavesNoConsumer", TestUnansweredNewConsumerLeavesNoConsumer},
		{"JunkFramesDoNotHurt", TestJunkFramesDoNotHurt},
		{"ReconnectingAlonePeerGetsAWorkingRoom", TestReconnectingAlonePeerGetsAWorkingRoom},
		{"ReplacedJoinedPeerIsAnnouncedClosed", TestReplacedJoinedPeerIsAnnouncedClosed},
		{"LeaveRoomThenJoinAgain", TestLeaveRoomThenJoinAgain},
		{"ConcurrentFirstPeersShareOneRoom", TestConcurrentFirstPeersShareOneRoom},
		{"PerPeerAndPerRoomLimits", TestPerPeerAndPerRoomLimits},
		{"WorkerDeathClosesOnlyItsRoomsAndPeersReconnect", TestWorkerDeathClosesOnlyItsRoomsAndPeersReconnect},
		// The broadcaster HTTP API, relayed request by request.
		{"BroadcasterPlainRtpEndToEnd", TestBroadcasterPlainRtpEndToEnd},
		{"BroadcasterConsumesPeerProducer", TestBroadcasterConsumesPeerProducer},
		{"BroadcasterDeleteClosesEverything", TestBroadcasterDeleteClosesEverything},
		{"BroadcasterErrors", TestBroadcasterErrors},
	} {
		t.Run(tc.name, func(t *testing.T) {
			throughRelay.Store(t, true)
			defer throughRelay.Delete(t)
			tc.f(t)
		})
	}
}

// One room, a peer on each node: media and data both ways (the relayed
// peer's media goes straight to the owner's worker), and /admin/cluster on
// either node lists both nodes with the room on its owner.
func TestSameRoomThroughBothNodes(t *testing.T) {
	srv := testredis.Start(t)
	a := testcluster.Start(t, srv.URL(), "node-a", testcluster.Options{})
	b := testcluster.Start(t, srv.URL(), "node-b", testcluster.Options{})
	testcluster.WaitSeeing(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := client.JoinOptions{Produce: true, Consume: true, Data: true}
	start := time.Now()
	pa, err := client.Join(ctx, a.URL, "both", "pa", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	t.Logf("join on the owner: %v", time.Since(start).Round(time.Millisecond))
	if o := b.Owner(t, "both"); o.Node != "node-a" {
		t.Fatalf("room owned by %+v, want node-a (its first peer's node)", o)
	}
	start = time.Now()
	pb, err := client.Join(ctx, b.URL, "both", "pb", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	t.Logf("join through the relaying node: %v", time.Since(start).Round(time.Millisecond))
	if len(b.Rooms.Rooms()) != 0 || len(a.Rooms.Room("both").Peers()) != 2 {
		t.Fatalf("rooms on b: %d; peers on a: %d", len(b.Rooms.Rooms()), len(a.Rooms.Room("both").Peers()))
	}

	var mu sync.Mutex
	got := map[string][]string{}
	for _, p := range []*client.Peer{pa, pb} {
		p.OnDataMessage(func(from, label string, msg []byte) {
			mu.Lock()
			got[p.ID()] = append(got[p.ID()], from+":"+string(msg))
			mu.Unlock()
		})
	}
	for _, pair := range [][2]*client.Peer{{pa, pb}, {pb, pa}} {
		from, to := pair[0], pair[1]
		audio, err := from.ProduceAudio(ctx, client.AudioOptions{})
		if err != nil {
			t.Fatal(err)
		}
		video, err := from.ProduceVideo(ctx, client.VideoOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dp, err := from.ProduceData(ctx, "chat", true)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{audio.ID(), video.ID()} {
			c := waitConsumerOf(t, to, id)
			waitUntil(t, 30*time.Second, func() bool { return c.Stats().Packets >= 20 },
				"%s: too few %s packets from %s", to.ID(), c.Kind(), from.ID())
		}
		waitUntil(t, 30*time.Second, func() bool { return len(to.DataConsumers()) >= 1 }, "%s: no data consumer", to.ID())
		waitUntil(t, 30*time.Second, func() bool {
			_ = dp.SendText("hello from " + from.ID())
			mu.Lock()
			defer mu.Unlock()
			return len(got[to.ID()]) > 0
		}, "%s: no data message from %s", to.ID(), from.ID())
	}

	for _, n := range []*testcluster.Node{a, b} {
		resp, err := http.Get(n.URL + "/admin/cluster")
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Node  string
			Nodes []struct {
				ID    string
				Rooms []string
				Load  struct{ Peers int }
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s /admin/cluster: %d %v", n.ID, resp.StatusCode, err)
		}
		if v.Node != n.ID || len(v.Nodes) != 2 || v.Nodes[0].ID != "node-a" || fmt.Sprint(v.Nodes[0].Rooms) != "[both]" ||
			v.Nodes[0].Load.Peers != 2 || len(v.Nodes[1].Rooms) != 0 {
			t.Fatalf("%s /admin/cluster: %+v", n.ID, v)
		}
	}
	if n := metricValue(t, b.URL, `mediasoup_server_relayed_connections{side="edge"}`); n != 1 {
		t.Errorf("relayed connections on b: %v", n)
	}
	if n := metricValue(t, a.URL, `mediasoup_server_relayed_connections{side="owner"}`); n != 1 {
		t.Errorf("relayed connections on a: %v", n)
	}
	// The relayed peer leaves: the owner frees it (peerClosed), the edge
	// and the owner forget the link.
	pb.Close()
	note(t, pa, "peerClosed", "peerId", "pb")
	waitUntil(t, 30*time.Second, func() bool {
		return metricValue(t, a.URL, `mediasoup_server_relayed_connections{side="owner"}`) == 0 &&
			metricValue(t, b.URL, `mediasoup_server_relayed_connections{side="edge"}`) == 0
	}, "relayed connections left")
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(msg, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitConsumerOf(t *testing.T, p *client.Peer, producerID string) *client.Consumer {
	t.Helper()
	var found *client.Consumer
	waitUntil(t, 30*time.Second, func() bool {
		for _, c := range p.Consumers() {
			if c.ProducerID() == producerID {
				found = c
				return true
			}
		}
		return false
	}, "%s: no consumer of %s", p.ID(), producerID)
	return found
}

func note(t *testing.T, p *client.Peer, method, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	if _, err := p.Conn().WaitNotification(ctx, method, func(d json.RawMessage) bool {
		var m map[string]any
		return json.Unmarshal(d, &m) == nil && m[key] == value
	}); err != nil {
		t.Fatalf("%s: no %s with %s=%s: %v", p.ID(), method, key, value, err)
	}
}

// TestClusterFigures measures, and only logs, what BENCHMARKS.md reports
// for cluster mode: request RTT direct vs through a relaying node at the
// same load, join time direct vs relayed, and the Redis commands a join
// costs. It asserts behaviour only (every request answered).
func TestClusterFigures(t *testing.T) {
	srv := testredis.Start(t)
	unlimited := func(l *signaling.Limits) { l.RequestRate = -1 }
	a := testcluster.Start(t, srv.URL(), "owner", testcluster.Options{Limits: unlimited})
	b := testcluster.Start(t, srv.URL(), "edge", testcluster.Options{Limits: unlimited})
	b.Heavy.Store(true)
	testcluster.WaitSeeing(t, a, b)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Joins (signaling only: capabilities, two transports, join).
	joinOnce := func(url, roomID, peerID string) (time.Duration, *client.Peer) {
		start := time.Now()
		p, err := client.Join(ctx, url, roomID, peerID, client.JoinOptions{Produce: true, Consume: true})
		if err != nil {
			t.Fatalf("join %s via %s: %v", peerID, url, err)
		}
		return time.Since(start), p
	}
	// Warm up (scripts loaded, rooms exist).
	_, w1 := joinOnce(a.URL, "fig", "warm-a")
	_, w2 := joinOnce(b.URL, "fig", "warm-b")
	defer w1.Close()
	defer w2.Close()
	const joins = 10
	cmds := func() map[string]int64 {
		out := map[string]int64{}
		info, err := rc.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`cmdstat_(\w+):calls=(\d+)`).FindAllStringSubmatch(info, -1) {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			out[m[1]] = n
		}
		return out
	}
	for _, via := range []struct {
		name string
		url  string
	}{{"direct (owner)", a.URL}, {"relayed (edge)", b.URL}} {
		var times []time.Duration
		before := cmds()
		for i := range joins {
			d, p := joinOnce(via.url, "fig", fmt.Sprintf("j%d", i))
			times = append(times, d)
			p.Close()
		}
		after := cmds()
		slices.Sort(times)
		t.Logf("join %s: p50 %v, max %v over %d; redis per join: %.1f EVALSHA (placement), %.1f PUBLISH (relay messages, join and leave)",
			via.name, times[len(times)/2].Round(100*time.Microsecond), times[len(times)-1].Round(100*time.Microsecond), joins,
			float64(after["evalsha"]-before["evalsha"])/joins, float64(after["publish"]-before["publish"])/joins)
	}

	// Request RTT at the same load: 4 connections, each 200 requests in a
	// row; a first round warms up (connection pools, buffers) unlogged.
	for round, method := range []string{"getRouterRtpCapabilities", "getRouterRtpCapabilities", "getTransportStats"} {
		for _, via := range []struct {
			name string
			url  string
		}{{"relayed", b.URL}, {"direct", a.URL}} {
			var mu sync.Mutex
			var rtts []time.Duration
			var wg sync.WaitGroup
			for c := range 4 {
				_, p := joinOnce(via.url, "rtt", fmt.Sprintf("%s-%d-%d", via.name, round, c))
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer p.Close()
					data := map[string]string{"transportId": p.SendTransportID()}
					for range 200 {
						start := time.Now()
						if _, err := p.Conn().RequestRaw(ctx, method, data); err != nil {
							t.Errorf("%s: %v", method, err)
							return
						}
						mu.Lock()
						rtts = append(rtts, time.Since(start))
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			slices.Sort(rtts)
			if len(rtts) == 0 {
				t.Fatal("no request answered")
			}
			if round == 0 {
				continue
			}
			t.Logf("%s %s: p50 %v, p99 %v (%d requests, 4 connections)", method, via.name,
				rtts[len(rtts)/2].Round(10*time.Microsecond), rtts[len(rtts)*99/100].Round(10*time.Microsecond), len(rtts))
		}
	}
}
