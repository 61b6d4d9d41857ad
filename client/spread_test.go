package client_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/room"
)

// A room over two workers (a budget of 4 consumers per router: room for two
// peers of a full mesh with audio and video each, not three): media and
// data cross from each side to the other through pipes, closing a producer
// closes its piped copy, and the last peer out frees every router and pipe
// transport on every worker.
func TestMediaAndDataCrossWorkers(t *testing.T) {
	e := newMediaEnvWith(t, 2, func(o *room.Options) { o.RouterConsumerBudget = 4 })
	ctx := testCtx(t)
	opts := client.JoinOptions{Produce: true, Consume: true, Data: true}
	a := e.join("wide", "a", opts)
	b := e.join("wide", "b", opts)
	aAudio, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPackets(t, waitConsumer(t, b, aAudio.ID()), 5, "a's audio at b (first worker)")

	rm := e.rooms.Room("wide")
	if n := len(rm.Routers()); n != 1 {
		t.Fatalf("a and b fit on one router, the room has %d", n)
	}
	c := e.join("wide", "c", opts) // the first router would be full: c lands on the other worker
	if rs := rm.Routers(); len(rs) != 2 || rs[0].Worker == rs[1].Worker {
		t.Fatalf("room has %d routers, want 2 on distinct workers", len(rs))
	}
	cOfA := waitConsumer(t, c, aAudio.ID())
	waitPackets(t, cOfA, 5, "a's audio at c (across workers)")

	cVideo, err := c.ProduceVideo(ctx, client.VideoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPackets(t, waitConsumer(t, a, cVideo.ID()), 5, "c's video at a (across workers)")
	waitPackets(t, waitConsumer(t, b, cVideo.ID()), 5, "c's video at b (across workers)")

	// Data both ways across the workers.
	got := map[string]chan []byte{"a": make(chan []byte, 4), "c": make(chan []byte, 4)}
	var mu sync.Mutex
	for id, p := range map[string]*client.Peer{"a": a, "c": c} {
		p.OnDataMessage(func(from, label string, msg []byte) {
			mu.Lock()
			defer mu.Unlock()
			got[id] <- append([]byte(nil), msg...)
		})
	}
	send := func(p *client.Peer, msg []byte, to string) {
		t.Helper()
		dp, err := p.ProduceData(ctx, "chat", true)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.After(settle)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for { // until the far side's data consumer is open
			_ = dp.Send(msg)
			select {
			case m := <-got[to]:
				if !bytes.Equal(m, msg) {
					t.Fatalf("%s got %q, want %q", to, m, msg)
				}
				return
			case <-tick.C:
			case <-deadline:
				t.Fatalf("no data from %s at %s across workers", p.ID(), to)
			}
		}
	}
	send(a, []byte("from the first worker"), "c")
	send(c, []byte("from the second worker"), "a")

	// Closing a's audio closes c's consumer of it and its piped copy.
	pipes := rm.Pipes()
	if err := aAudio.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cOfA.Done():
	case <-time.After(settle):
		t.Fatal("c's consumer across workers not closed with its producer")
	}
	waitFor(t, settle, func() bool { return rm.Pipes() < pipes }, "piped copy not closed")

	for _, p := range []*client.Peer{a, b, c} {
		p.Close()
	}
	waitFor(t, settle, func() bool { return e.rooms.Room("wide") == nil }, "room still open")
	waitFor(t, settle, func() bool {
		for _, w := range e.pool.Workers() {
			d, err := w.Dump(context.Background())
			if in := w.Info(); err != nil || len(d.RouterIds) != 0 || in.Transports != 0 {
				return false
			}
		}
		return true
	}, "routers or transports (pipes included) left on a worker")
}
