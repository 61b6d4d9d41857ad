package signaling_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
)

// A room spreads over two workers once its first router would pass the
// consumer budget; consumers and data consumers cross between them through pipes,
// producer events still reach consumers on the other worker, the last peer
// of the second router frees it (and the room spreads again when needed), and
// the last peer out frees every router and pipe transport on every worker.
func TestRoomSpreadsOverWorkers(t *testing.T) {
	// A budget of 4: a and b, each expected to produce 2 streams, project 2
	// consumers each on the first router; c would make it 3 × 4.
	e := newEnv(t, 2, func(o *room.Options, _ *signaling.Limits) { o.RouterConsumerBudget = 4 })
	a, b := e.dial("big", "a"), e.dial("big", "b")
	a.setup()
	b.setup()
	a.join("A")
	b.join("B")
	aAudio := a.produce("audio")
	b.nextConsumer()
	if n := len(e.rooms.Room("big").Routers()); n != 1 {
		t.Fatalf("a and b fit on one router, the room has %d", n)
	}

	c := e.dial("big", "c")
	c.setup() // lands on a new router on the other worker
	rm := e.rooms.Room("big")
	routers := rm.Routers()
	if len(routers) != 2 || routers[0].Worker == routers[1].Worker {
		t.Fatalf("room routers: %d (want 2 on distinct workers)", len(routers))
	}
	c.join("C")
	ncA := c.nextConsumer()
	if ncA.ProducerID != aAudio || ncA.PeerID != "a" {
		t.Fatalf("c's consumer %+v, want a's audio", ncA)
	}
	if rm.Pipes() == 0 {
		t.Fatal("no pipe for a consumer on the other worker")
	}
	metrics := scrape(t, e.url)
	if !strings.Contains(metrics, "mediasoup_server_room_routers 2\n") || strings.Contains(metrics, "mediasoup_server_pipes 0\n") {
		t.Fatalf("metrics do not show the spread room:\n%s", grepLines(metrics, "room_routers", "pipes"))
	}

	// The other way: c's producer (second worker) reaches a and b (first).
	cVideo := c.produce("video")
	for _, p := range []*tpeer{a, b} {
		if nc := p.nextConsumer(); nc.ProducerID != cVideo {
			t.Fatalf("%s: consumer of %s, want %s", p.PeerID(), nc.ProducerID, cVideo)
		}
	}

	// Data crosses too.
	var dp client.IDResponse
	a.must("produceData", map[string]any{"transportId": a.send.ID, "label": "chat",
		"sctpStreamParameters": map[string]any{"streamId": 3, "ordered": true}}, &dp)
	if nd := c.nextDataConsumer(); nd.DataProducerID != dp.ID {
		t.Fatalf("c's data consumer of %s, want %s", nd.DataProducerID, dp.ID)
	}

	// Producer events cross the pipe: pause/resume/close of a's audio.
	cCons := ncA.ID
	a.must("pauseProducer", map[string]string{"producerId": aAudio}, nil)
	c.waitNote("consumerPaused", field("consumerId", cCons))
	a.must("resumeProducer", map[string]string{"producerId": aAudio}, nil)
	c.waitNote("consumerResumed", field("consumerId", cCons))
	pipesBefore := rm.Pipes()
	a.must("closeProducer", map[string]string{"producerId": aAudio}, nil)
	c.waitNote("consumerClosed", field("consumerId", cCons))
	testutil.Eventually(t, settle, func() bool { return rm.Pipes() < pipesBefore },
		"closing a producer did not close its piped copy")

	// c is the only peer on the second router: its leaving frees that
	// router and every pipe to it, while the room lives on.
	second := routers[1]
	_ = c.Close()
	testutil.Eventually(t, settle, func() bool {
		return len(rm.Routers()) == 1 && rm.PipeTransports() == 0 && rm.Pipes() == 0
	}, "the second router is still in use after its last peer left: %d routers, %d pipe transports, %d pipes",
		len(rm.Routers()), rm.PipeTransports(), rm.Pipes())
	testutil.Eventually(t, settle, func() bool {
		in := second.Worker.Info()
		return in.Routers == 0 && in.Transports == 0
	}, "the released worker still holds routers or transports: %+v", second.Worker.Info())

	// A newcomer spreads the room again, and pipes are made anew: d gets
	// a's data producer across the workers.
	d := e.dial("big", "d")
	d.setup()
	d.join("D")
	if rs := rm.Routers(); len(rs) != 2 || rs[0].Worker == rs[1].Worker {
		t.Fatalf("room routers after d joined: %d (want 2 on distinct workers)", len(rs))
	}
	if nd := d.nextDataConsumer(); nd.DataProducerID != dp.ID {
		t.Fatalf("d's data consumer of %s, want %s", nd.DataProducerID, dp.ID)
	}

	for _, p := range []*tpeer{a, b, d} {
		_ = p.Close()
	}
	waitRoomGone(t, e, "big")
	for _, w := range e.pool.Workers() {
		if in := w.Info(); in.Transports != 0 || in.Routers != 0 {
			t.Fatalf("worker %d still holds %d routers, %d transports", in.Index, in.Routers, in.Transports)
		}
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(text string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
