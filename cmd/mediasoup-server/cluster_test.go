package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/internal/testcluster"
	"github.com/mediasoup-server/mediasoup-server/internal/testredis"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
)

// Cluster failures with real processes: the node that dies is this server
// run as a child process and killed with SIGKILL; the node that survives
// runs in-process (internal/testcluster); one real redis-server. The
// process runs the default heartbeat (1 s, expiring after 5 s), so the
// times logged are those of a production node.

func joinPeer(t *testing.T, base, roomID, peerID string) *client.Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := client.Join(ctx, base, roomID, peerID, client.JoinOptions{Produce: true, Consume: true})
	if err != nil {
		t.Fatalf("%s joins %s through %s: %v", peerID, roomID, base, err)
	}
	t.Cleanup(p.Close)
	return p
}

// audioFlows makes from produce audio and waits until to receives n packets
// of it.
func audioFlows(t *testing.T, from, to *client.Peer, n uint64) *client.Producer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pr, err := from.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPackets(t, to, pr.ID(), n)
	return pr
}

func waitPackets(t *testing.T, to *client.Peer, producerID string, n uint64) {
	t.Helper()
	var c *client.Consumer
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, x := range to.Consumers() {
			if x.ProducerID() == producerID {
				c = x
			}
		}
		return c != nil && c.Stats().Packets >= n
	}, "%s: fewer than %d packets of %s", to.ID(), n, producerID)
}

// packetsOf is the count of packets to received of producerID so far.
func packetsOf(to *client.Peer, producerID string) uint64 {
	for _, x := range to.Consumers() {
		if x.ProducerID() == producerID {
			return x.Stats().Packets
		}
	}
	return 0
}

func startNodeProcess(t *testing.T, redisURL, id string) (*server, string) {
	t.Helper()
	s, base, _ := startOne(t, nil, "http", "-redis", redisURL, "-node-id", id, "-drain-grace", "0s")
	testutil.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "node %s never ready", id)
	return s, base
}

func seeEachOther(t *testing.T, n *testcluster.Node, others int) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(n.Cluster.LiveNodes()) == others+1 }, "%s does not see the others", n.ID)
}

// The owner of a room is killed: its peers relayed through the survivor
// are closed with 4500 once its heartbeat expired, reconnect, and the room
// works again on the survivor.
func TestKillOwnerNode(t *testing.T) {
	srv := testredis.Start(t)
	owner, ownerURL := startNodeProcess(t, srv.URL(), "owner")
	surv := testcluster.Start(t, srv.URL(), "survivor", testcluster.Options{})
	seeEachOther(t, surv, 1)

	pa := joinPeer(t, ownerURL, "k", "pa") // claims k for the owner
	if o := surv.Owner(t, "k"); o.Node != "owner" {
		t.Fatalf("k owned by %+v", o)
	}
	pb := joinPeer(t, surv.URL, "k", "pb") // relayed
	audioFlows(t, pa, pb, 20)
	audioFlows(t, pb, pa, 20)
	workers := testutil.WorkerChildrenOf(owner.cmd.Process.Pid)

	killed := time.Now()
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pb.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the relayed peer of the dead owner was never closed")
	}
	told := time.Since(killed)
	if code := pb.Conn().CloseCode(); code != cluster.CloseRelayLost {
		t.Fatalf("relayed peer closed with %d, want %d (reconnect)", code, cluster.CloseRelayLost)
	}
	// Reconnect: the room is claimed again, by the survivor.
	pb2 := joinPeer(t, surv.URL, "k", "pb")
	if o := surv.Owner(t, "k"); !o.Local {
		t.Fatalf("after the owner's death k is owned by %+v", o)
	}
	pc := joinPeer(t, surv.URL, "k", "pc")
	audioFlows(t, pb2, pc, 20)
	working := time.Since(killed)
	t.Logf("owner killed: its relayed peer told (4500) after %v; room working again on the survivor after %v (heartbeat 1 s, expiry 5 s)",
		told.Round(10*time.Millisecond), working.Round(10*time.Millisecond))
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, pid := range workers {
			if testutil.ProcessAlive(pid) {
				return false
			}
		}
		return true
	}, "the dead owner's workers live on")
}

// The relaying node is killed: the owner frees its relayed peers as if
// their sockets had closed (peerClosed to the others).
func TestKillRelayingNode(t *testing.T) {
	srv := testredis.Start(t)
	own := testcluster.Start(t, srv.URL(), "owner", testcluster.Options{})
	edge, edgeURL := startNodeProcess(t, srv.URL(), "edge")
	seeEachOther(t, own, 1)

	pa := joinPeer(t, own.URL, "k", "pa")
	pb := joinPeer(t, edgeURL, "k", "pb")
	audioFlows(t, pb, pa, 20)
	if n := len(own.Rooms.Room("k").Peers()); n != 2 {
		t.Fatalf("%d peers in k on the owner", n)
	}
	killed := time.Now()
	if err := edge.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pa.Conn().WaitNotification(ctx, "peerClosed", nil); err != nil {
		t.Fatalf("no peerClosed for the dead edge's peer: %v", err)
	}
	t.Logf("relaying node killed: the owner freed its peer after %v", time.Since(killed).Round(10*time.Millisecond))
	testutil.Eventually(t, 30*time.Second, func() bool {
		r := own.Rooms.Room("k")
		return r != nil && len(r.Peers()) == 1 && metric(t, own.URL, `mediasoup_server_relayed_connections{side="owner"}`) == 0
	}, "the owner kept the dead edge's peer")
}

// Redis is killed and restarted while rooms carry media: the rooms keep
// their media (peers on their owner), relayed peers are closed with 4500,
// new peers are refused with 503 (and /readyz says why) while Redis is
// away, and accepted again once it is back.
func TestRedisRestartUnderLoad(t *testing.T) {
	noGoroutineLeft(t)
	srv := testredis.Start(t)
	a := testcluster.Start(t, srv.URL(), "node-a", testcluster.Options{})
	b := testcluster.Start(t, srv.URL(), "node-b", testcluster.Options{})
	seeEachOther(t, a, 1)
	seeEachOther(t, b, 1)

	p1 := joinPeer(t, a.URL, "r", "p1")
	p2 := joinPeer(t, a.URL, "r", "p2")
	relayed := joinPeer(t, b.URL, "r", "p3")
	q1 := joinPeer(t, b.URL, "s", "q1") // a room owned by b
	q2 := joinPeer(t, b.URL, "s", "q2")
	pr := audioFlows(t, p1, p2, 20)
	waitPackets(t, relayed, pr.ID(), 20)
	qr := audioFlows(t, q1, q2, 20)

	srv.Stop()
	down := time.Now()
	for _, n := range []*testcluster.Node{a, b} {
		testutil.Eventually(t, 30*time.Second, func() bool {
			code, body := get(t, n.URL+"/readyz")
			return code == http.StatusServiceUnavailable && strings.Contains(body, "redis")
		}, "%s /readyz stays ready without redis", n.ID)
	}
	_, why := get(t, a.URL+"/readyz")
	t.Logf("/readyz without redis: %s", strings.Join(strings.Fields(why), " "))
	select {
	case <-relayed.Done():
		if code := relayed.Conn().CloseCode(); code != cluster.CloseRelayLost {
			t.Fatalf("relayed peer closed with %d, want 4500", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("relayed peer not closed when redis went away")
	}
	for _, n := range []*testcluster.Node{a, b} {
		_, err := client.Dial(context.Background(), n.URL, "new", "x", nil)
		var he *client.HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
			t.Fatalf("%s: new peer without redis: %v, want HTTP 503", n.ID, err)
		}
	}
	// The owner let the relayed peer go.
	testutil.Eventually(t, 30*time.Second, func() bool {
		r := a.Rooms.Room("r")
		return r != nil && len(r.Peers()) == 2 && r.Peer("p3") == nil
	}, "%s kept the relayed peer p3 without redis", a.ID)
	// The rooms keep their media.
	from1, from2 := packetsOf(p2, pr.ID()), packetsOf(q2, qr.ID())
	waitPackets(t, p2, pr.ID(), from1+50)
	waitPackets(t, q2, qr.ID(), from2+50)
	outage := time.Since(down)

	srv.Start()
	back := time.Now()
	for _, n := range []*testcluster.Node{a, b} {
		testutil.Eventually(t, 30*time.Second, func() bool {
			code, _ := get(t, n.URL+"/readyz")
			return code == http.StatusOK
		}, "%s not ready after redis came back", n.ID)
	}
	ready := time.Since(back)
	// New peers are accepted again, also relayed (a renewed r's lease).
	p3 := joinPeer(t, b.URL, "r", "p3")
	waitPackets(t, p3, pr.ID(), packetsOf(p3, pr.ID())+20)
	if o := b.Owner(t, "r"); o.Node != "node-a" {
		t.Fatalf("r owned by %+v after the restart", o)
	}
	// The edge (b) counted its link broken by the lost subscription. The
	// owner (a) need not have: which node's subscription breaks first is
	// Redis's order, and when b's goes first, a may end its side of the link
	// cleanly before its own goes (p3's client, closed with 4500, closes its
	// DTLS and a's room lets p3 go; or a's PUBLISH to p3 reaches nobody:
	// "publish"). What a must do is free p3, checked above.
	if v := metric(t, b.URL, `mediasoup_server_relay_errors_total{reason="subscriber"}`); v == 0 {
		t.Errorf("%s (the edge) counted no relay error for the lost subscription", b.ID)
	}
	t.Logf("redis away %v with media flowing in both rooms; ready again %v after it was back", outage.Round(10*time.Millisecond), ready.Round(10*time.Millisecond))
}

// noGoroutineLeft fails the test if, once everything it started has been
// shut down (its cleanups), goroutines outlive it.
func noGoroutineLeft(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		deadline := time.Now().Add(30 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines left: %d > %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	_, body := get(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
