package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/pion/rtp"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testserver"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// mediaEnv is a real server in-process (as in signaling's tests): a worker
// pool on the real mediasoup-worker binary, the rooms, and the WebSocket edge
// on a loopback httptest listener.
type mediaEnv struct {
	t     *testing.T
	pool  *worker.Pool
	rooms *room.Manager
	url   string
}

// settle bounds every wait of these tests (a join, a consumer, packets, a
// notification, a room closing): the tests poll, and the bound only ends a
// test that would wait forever; a busy machine (-race, 2 cores, other tests)
// never comes close to it. testBudget bounds all the requests of one test.
const (
	settle     = 30 * time.Second
	testBudget = 2 * time.Minute
)

func newMediaEnv(t *testing.T) *mediaEnv { return newMediaEnvWith(t, 1, nil) }

// newMediaEnvWith starts the server with n workers; mod adjusts the rooms' options.
func newMediaEnvWith(t *testing.T, n int, mod func(*room.Options)) *mediaEnv {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	pool := testserver.Pool(t, n, log)
	ropts := room.Options{Logger: log.Named("room"), ServerRequestTimeout: settle}
	if mod != nil {
		mod(&ropts)
	}
	rooms := room.NewManager(pool, ropts)
	h := signaling.NewHandler(signaling.Options{
		Workers: pool, Rooms: rooms, Limits: signaling.DefaultLimits(), Logger: log.Named("signaling"), Version: worker.Version,
	})
	srvURL := testserver.Serve(t, pool, rooms, h)
	return &mediaEnv{t: t, pool: pool, rooms: rooms, url: srvURL}
}

// loopbackOnly keeps ICE on 127.0.0.1.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
}

// join joins with ICE kept on loopback, then opts.SettingEngine if set.
func (e *mediaEnv) join(roomID, peerID string, opts client.JoinOptions) *client.Peer {
	e.t.Helper()
	if opts.DisplayName == "" {
		opts.DisplayName = peerID
	}
	more := opts.SettingEngine
	opts.SettingEngine = func(se *webrtc.SettingEngine) {
		loopbackOnly(se)
		if more != nil {
			more(se)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	p, err := client.Join(ctx, e.url, roomID, peerID, opts)
	if err != nil {
		e.t.Fatalf("join %s/%s: %v", roomID, peerID, err)
	}
	e.t.Cleanup(p.Close)
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 10 ms until it holds, or fails the test after
// timeout. Arguments of type func() any are evaluated only then.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			for i, a := range args {
				if f, ok := a.(func() any); ok {
					args[i] = f()
				}
			}
			t.Fatalf("after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func consumerOf(p *client.Peer, producerID string) *client.Consumer {
	for _, c := range p.Consumers() {
		if c.ProducerID() == producerID {
			return c
		}
	}
	return nil
}

// watcher checks every packet a consumer receives: its payload must be
// intact (ParseSyntheticPayload), and it records the simulcast layer and
// the packet's number.
type watcher struct {
	c    *client.Consumer
	mu   sync.Mutex
	good int
	bad  []string
	// per layer: packets, last frame
	layers    map[int]int
	lastLayer int
	delays    []time.Duration
	// numbers of the intact packets of encoding 0 received (see receivedIn)
	seen map[uint64]bool
}

func watch(c *client.Consumer) *watcher {
	w := &watcher{c: c, layers: map[int]int{}, lastLayer: -1, seen: map[uint64]bool{}}
	c.OnRTP(func(pkt *rtp.Packet) {
		info, err := client.ParseSyntheticPayload(c.Kind(), pkt.Payload)
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if len(w.bad) < 5 {
				w.bad = append(w.bad, fmt.Sprintf("%v: %x", err, pkt.Payload[:min(len(pkt.Payload), 48)]))
			}
			return
		}
		w.good++
		w.layers[info.Layer]++
		w.lastLayer = info.Layer
		if info.Layer == 0 {
			w.seen[packetNumber(info)] = true
		}
		if len(w.delays) < 1000 {
			w.delays = append(w.delays, time.Since(info.SentAt))
		}
	})
	return w
}

func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		t.Errorf("%s consumer %s received damaged payloads: %q", w.c.Kind(), w.c.ID(), w.bad)
	}
}

// packetNumber is the number of a packet among those its encoding sent,
// from 0, as ProducerStats.Packets counts them: an audio packet's own
// number; for video, frame × packets per frame + packet (the generator
// gives every frame of an encoding the same number of packets).
func packetNumber(info client.SyntheticPayload) uint64 {
	if info.Kind == "audio" {
		return info.Frame
	}
	return info.Frame*uint64(info.Packets) + uint64(info.Packet)
}

// receivedIn counts the distinct packets numbered from..to-1 (of encoding
// 0) received intact: packets a producer sent between two readings of its
// Stats().Packets, counted once they arrive, however late.
func (w *watcher) receivedIn(from, to uint64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for i := from; i < to; i++ {
		if w.seen[i] {
			n++
		}
	}
	return n
}

func (w *watcher) last() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastLayer
}

func (w *watcher) medianDelay() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := append([]time.Duration(nil), w.delays...)
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// watchAll watches every consumer of p (current and future).
func watchAll(t *testing.T, p *client.Peer) func(producerID string) *watcher {
	var mu sync.Mutex
	ws := map[string]*watcher{}
	p.OnConsumer(func(c *client.Consumer) {
		w := watch(c)
		mu.Lock()
		ws[c.ProducerID()] = w
		mu.Unlock()
	})
	return func(producerID string) *watcher {
		var w *watcher
		waitFor(t, settle, func() bool {
			mu.Lock()
			defer mu.Unlock()
			w = ws[producerID]
			return w != nil
		}, "%s: no consumer of %s", p.ID(), producerID)
		return w
	}
}

// waitConsumer waits for p's consumer of a producer.
func waitConsumer(t *testing.T, p *client.Peer, producerID string) *client.Consumer {
	t.Helper()
	var c *client.Consumer
	waitFor(t, settle, func() bool { c = consumerOf(p, producerID); return c != nil },
		"%s: no consumer of producer %s", p.ID(), producerID)
	return c
}

// waitPackets waits until c received n more packets than it had.
func waitPackets(t *testing.T, c *client.Consumer, n uint64, what string) {
	t.Helper()
	from := c.Stats().Packets
	waitFor(t, settle, func() bool { return c.Stats().Packets >= from+n },
		"%s: %s consumer %s received %d packets, want %d more", what, c.Kind(), c.ID(), func() any { return c.Stats().Packets - from }, n)
}

// pausedFrom is the number of pr's first packet that left after a pause
// the server has answered: the next but one (the next may have been on its
// way as the answer came), while the worker had already paused when it
// answered.
func pausedFrom(pr *client.Producer) uint64 { return pr.Stats().Packets + 1 }

// assertStalled waits until pr sent packets from..from+n-1, then asserts
// that none of them reached the consumers ws watch: they all left after
// the worker paused the flow (see pausedFrom), so none is in flight. It
// returns from+n.
func assertStalled(t *testing.T, pr *client.Producer, from, n uint64, what string, ws ...*watcher) uint64 {
	t.Helper()
	to := from + n
	waitFor(t, settle, func() bool { return pr.Stats().Packets >= to }, "%s: producer stopped sending", what)
	for _, w := range ws {
		if got := w.receivedIn(from, to); got > 0 {
			t.Fatalf("%s: consumer %s received %d of the %d packets sent after the pause: not stalled", what, w.c.ID(), got, n)
		}
	}
	return to
}

func note(t *testing.T, p *client.Peer, method, key, value string) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	d, err := p.Conn().WaitNotification(ctx, method, func(d json.RawMessage) bool {
		var m map[string]any
		return json.Unmarshal(d, &m) == nil && (key == "" || m[key] == value)
	})
	if err != nil {
		t.Fatalf("%s: no %s notification with %s=%q: %v", p.ID(), method, key, value, err)
	}
	return d
}

// TestMediaDelivery: A's audio and video reach B intact, with at least 90%
// of the packets A sent over a 2 s window. The packets are counted by their
// numbers once they arrived, however late: comparing the counters at the
// window's end took the packets still in flight on a busy machine for lost.
func TestMediaDelivery(t *testing.T) {
	e := newMediaEnv(t)
	ctx := testCtx(t)
	a := e.join("r", "a", client.JoinOptions{Produce: true})
	b := e.join("r", "b", client.JoinOptions{Consume: true})
	watcherOf := watchAll(t, b)

	start := time.Now()
	audio, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	video, err := a.ProduceVideo(ctx, client.VideoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, cv := waitConsumer(t, b, audio.ID()), waitConsumer(t, b, video.ID())
	if ca.Kind() != "audio" || cv.Kind() != "video" || ca.PeerID() != "a" || cv.Type() != "simple" {
		t.Fatalf("consumers: %s/%s/%s, %s/%s", ca.Kind(), ca.PeerID(), ca.Type(), cv.Kind(), cv.Type())
	}
	waitPackets(t, ca, 1, "first audio")
	waitPackets(t, cv, 1, "first video")
	t.Logf("first packet at b after produce: audio %v, video %v",
		ca.Stats().FirstPacket.Sub(start).Round(time.Millisecond), cv.Stats().FirstPacket.Sub(start).Round(time.Millisecond))

	// A 2 s window (100 audio packets at 50/s).
	wa, wv := watcherOf(audio.ID()), watcherOf(video.ID())
	sa0, sv0 := audio.Stats().Packets, video.Stats().Packets
	waitFor(t, settle, func() bool { return audio.Stats().Packets >= sa0+100 }, "audio not sent")
	sa1, sv1 := audio.Stats().Packets, video.Stats().Packets
	end := time.Now()
	sa, sv := sa1-sa0, sv1-sv0
	pct := func(n int, of uint64) float64 { return 100 * float64(n) / float64(of) }
	atEnd := [2]int{wa.receivedIn(sa0, sa1), wv.receivedIn(sv0, sv1)}
	enough := func() bool {
		return float64(wa.receivedIn(sa0, sa1)) >= 0.9*float64(sa) && float64(wv.receivedIn(sv0, sv1)) >= 0.9*float64(sv)
	}
	waitFor(t, settle, enough, "delivery below 90%%: audio %d/%d, video %d/%d",
		func() any { return wa.receivedIn(sa0, sa1) }, sa, func() any { return wv.receivedIn(sv0, sv1) }, sv)
	ra, rv := wa.receivedIn(sa0, sa1), wv.receivedIn(sv0, sv1)
	t.Logf("over 2 s: audio %d/%d received (%.1f%%), video %d/%d (%.1f%%), 90%% reached %v after the window (at its end: audio %.1f%%, video %.1f%%); median one-way delay audio %v, video %v",
		ra, sa, pct(ra, sa), rv, sv, pct(rv, sv), time.Since(end).Round(time.Millisecond), pct(atEnd[0], sa), pct(atEnd[1], sv),
		wa.medianDelay(), wv.medianDelay())
	if st := video.Stats(); st.KeyFrames == 0 {
		t.Errorf("no key frame sent: %+v", st)
	}
	wa.check(t)
	wv.check(t)
	if ca.Stats().PayloadType == 0 || ca.Stats().SSRC == 0 {
		t.Errorf("audio stats: %+v", ca.Stats())
	}
}

// TestPauseResumeClose: pausing a producer stops its flow at every consumer
// (consumerPaused), resuming restarts it (consumerResumed), closing it closes
// them (consumerClosed); pausing a consumer stops the flow for that peer only.
func TestPauseResumeClose(t *testing.T) {
	e := newMediaEnv(t)
	ctx := testCtx(t)
	a := e.join("r", "a", client.JoinOptions{Produce: true})
	audio, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	video, err := a.ProduceVideo(ctx, client.VideoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// B and C join a room with producers: their consumers come with join.
	b := e.join("r", "b", client.JoinOptions{Consume: true})
	c := e.join("r", "c", client.JoinOptions{Consume: true})
	ba, bv := waitConsumer(t, b, audio.ID()), waitConsumer(t, b, video.ID())
	ca := waitConsumer(t, c, audio.ID())
	wba, wca := watch(ba), watch(ca)
	for _, x := range []*client.Consumer{ba, bv, ca} {
		waitPackets(t, x, 5, "before pausing")
	}

	// Server-side pause only: A keeps sending, the router stops forwarding.
	if err := a.Conn().Request(ctx, "pauseProducer", map[string]string{"producerId": audio.ID()}, nil); err != nil {
		t.Fatal(err)
	}
	from := pausedFrom(audio)
	note(t, b, "consumerPaused", "consumerId", ba.ID())
	note(t, c, "consumerPaused", "consumerId", ca.ID())
	assertStalled(t, audio, from, 25, "audio producer paused", wba, wca)
	if !ba.ProducerPaused() {
		t.Error("b's audio consumer does not know its producer is paused")
	}
	if err := a.Conn().Request(ctx, "resumeProducer", map[string]string{"producerId": audio.ID()}, nil); err != nil {
		t.Fatal(err)
	}
	note(t, b, "consumerResumed", "consumerId", ba.ID())
	waitPackets(t, ba, 10, "audio producer resumed")
	waitPackets(t, ca, 10, "audio producer resumed")

	// The Producer API: pause stops sending too; resume starts with a key
	// frame, which the video consumer needs to forward anything again.
	if err := video.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	note(t, b, "consumerPaused", "consumerId", bv.ID())
	if err := video.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	note(t, b, "consumerResumed", "consumerId", bv.ID())
	waitPackets(t, bv, 10, "video producer resumed")

	// B pauses its audio consumer: B stalls, C keeps receiving (at least
	// 20 of the 25 packets, once they arrived; B none of them even then).
	if err := ba.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	from = pausedFrom(audio)
	to := assertStalled(t, audio, from, 25, "b's consumer paused", wba)
	waitFor(t, settle, func() bool { return wca.receivedIn(from, to) >= 20 },
		"c received %d of the 25 audio packets sent while b's consumer was paused", func() any { return wca.receivedIn(from, to) })
	if got := wba.receivedIn(from, to); got > 0 {
		t.Fatalf("b's consumer paused: received %d of the 25 packets c received", got)
	}
	if err := ba.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitPackets(t, ba, 10, "b's consumer resumed")

	// Closing the video producer closes its consumers; audio keeps flowing.
	if err := video.Close(ctx); err != nil {
		t.Fatal(err)
	}
	note(t, b, "consumerClosed", "consumerId", bv.ID())
	select {
	case <-bv.Done():
	case <-time.After(settle):
		t.Fatal("b's video consumer not closed")
	}
	waitFor(t, settle, func() bool { return len(b.Consumers()) == 1 && len(c.Consumers()) == 1 },
		"closed consumers still listed: b %d, c %d", func() any { return len(b.Consumers()) }, func() any { return len(c.Consumers()) })
	waitPackets(t, ba, 10, "after the video producer closed")
	waitPackets(t, ca, 10, "after the video producer closed")

	// A new producer after closed ones gets a new m-section; closing the
	// first one (the BUNDLE tag of b's receiving transport) keeps the
	// transport up.
	audio2, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ba2 := waitConsumer(t, b, audio2.ID())
	if err := audio.Close(ctx); err != nil {
		t.Fatal(err)
	}
	note(t, b, "consumerClosed", "consumerId", ba.ID())
	waitPackets(t, ba2, 25, "after the first producer closed")
	waitPackets(t, waitConsumer(t, c, audio2.ID()), 25, "after the first producer closed")
}

// TestSimulcastPreferredLayers: a 3-layer simulcast producer; B's preferred
// layers choose what it receives, and B hears consumerLayersChanged.
func TestSimulcastPreferredLayers(t *testing.T) {
	e := newMediaEnv(t)
	ctx := testCtx(t)
	a := e.join("r", "a", client.JoinOptions{Produce: true})
	b := e.join("r", "b", client.JoinOptions{Consume: true})
	watcherOf := watchAll(t, b)
	video, err := a.ProduceVideo(ctx, client.VideoOptions{Simulcast: true})
	if err != nil {
		t.Fatal(err)
	}
	c := waitConsumer(t, b, video.ID())
	if c.Type() != "simulcast" {
		t.Fatalf("consumer type %q", c.Type())
	}
	w := watcherOf(video.ID())
	// With 1 Mbit/s available the router forwards the highest layer.
	waitFor(t, settle, func() bool { return w.last() == 2 }, "b does not receive layer 2 (last %d)", func() any { return w.last() })
	ssrc := c.Stats().SSRC
	for _, layer := range []int{0, 1, 2} {
		if err := c.SetPreferredLayers(ctx, layer, -1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, settle, func() bool { s, _, ok := c.Layers(); return ok && s == layer },
			"no consumerLayersChanged to spatial layer %d", layer)
		waitFor(t, settle, func() bool { return w.last() == layer }, "b receives layer %d, want %d", func() any { return w.last() }, layer)
		waitPackets(t, c, 10, fmt.Sprintf("layer %d", layer))
		if l := w.last(); l != layer {
			t.Fatalf("b receives layer %d after switching to %d", l, layer)
		}
	}
	if got := c.Stats().SSRC; got != ssrc {
		t.Errorf("consumer SSRC changed from %d to %d across layers", ssrc, got)
	}
	note(t, b, "consumerLayersChanged", "consumerId", c.ID())
	w.check(t)
	if st := video.Stats(); st.KeyFrameRequests == 0 {
		t.Errorf("layer switches without key frame requests: %+v", st)
	}
}

// TestDataChannels: messages from A's data producers (ordered and not)
// reach B byte for byte.
func TestDataChannels(t *testing.T) {
	e := newMediaEnv(t)
	ctx := testCtx(t)
	a := e.join("r", "a", client.JoinOptions{Produce: true, Data: true})
	b := e.join("r", "b", client.JoinOptions{Consume: true, Data: true})
	type msg struct {
		from, label string
		data        []byte
	}
	var mu sync.Mutex
	var got []msg
	b.OnDataMessage(func(from, label string, data []byte) {
		mu.Lock()
		got = append(got, msg{from, label, append([]byte(nil), data...)})
		mu.Unlock()
	})
	ordered, err := a.ProduceData(ctx, "chat", true)
	if err != nil {
		t.Fatal(err)
	}
	unordered, err := a.ProduceData(ctx, "telemetry", false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, func() bool { return len(b.DataConsumers()) == 2 }, "b has %d data consumers", func() any { return len(b.DataConsumers()) })
	// Media after data on both transports: new m-sections after the
	// m=application ones.
	audio, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPackets(t, waitConsumer(t, b, audio.ID()), 5, "audio after data")

	var want []msg
	for i := range 20 {
		m := make([]byte, 1+i*97)
		for j := range m {
			m[j] = byte(i*7 + j*13)
		}
		if err := ordered.Send(m); err != nil {
			t.Fatal(err)
		}
		want = append(want, msg{"a", "chat", m})
		text := fmt.Sprintf("unordered %d ✓", i)
		if err := unordered.SendText(text); err != nil {
			t.Fatal(err)
		}
		want = append(want, msg{"a", "telemetry", []byte(text)})
	}
	big := make([]byte, 60000)
	for j := range big {
		big[j] = byte(j)
	}
	if err := ordered.Send(big); err != nil {
		t.Fatal(err)
	}
	want = append(want, msg{"a", "chat", big})
	waitFor(t, settle, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= len(want) },
		"b received %d of %d messages", func() any { mu.Lock(); defer mu.Unlock(); return len(got) }, len(want))

	mu.Lock()
	defer mu.Unlock()
	for _, label := range []string{"chat", "telemetry"} {
		var w, g []string
		for _, m := range want {
			if m.label == label {
				w = append(w, string(m.data))
			}
		}
		for _, m := range got {
			if m.label == label {
				if m.from != "a" {
					t.Errorf("message from %q", m.from)
				}
				g = append(g, string(m.data))
			}
		}
		if label == "telemetry" { // unordered: same set
			slices.Sort(w)
			slices.Sort(g)
		}
		if !slices.Equal(w, g) {
			t.Errorf("%s: received %d messages differing from the %d sent", label, len(g), len(w))
		}
	}
}

// TestRestartIce: ICE restarts on both sides of both peers keep media
// flowing, over new ICE tuples.
func TestRestartIce(t *testing.T) {
	e := newMediaEnv(t)
	ctx := testCtx(t)
	a := e.join("r", "a", client.JoinOptions{Produce: true})
	b := e.join("r", "b", client.JoinOptions{Consume: true})
	audio, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := waitConsumer(t, b, audio.ID())
	waitPackets(t, c, 5, "before restartIce")
	tuple := func(p *client.Peer, producing bool) string {
		var stats []struct {
			IceSelectedTuple json.RawMessage `json:"iceSelectedTuple"`
		}
		id := transportID(t, p, producing)
		if err := p.Conn().Request(ctx, "getTransportStats", map[string]string{"transportId": id}, &stats); err != nil || len(stats) == 0 {
			t.Fatalf("getTransportStats: %v", err)
		}
		return string(stats[0].IceSelectedTuple)
	}
	ta, tb := tuple(a, true), tuple(b, false)
	for _, p := range []*client.Peer{a, b} {
		if err := p.RestartIce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, settle, func() bool { return tuple(a, true) != ta && tuple(b, false) != tb },
		"ICE tuples did not change: a %s, b %s", ta, tb)
	waitPackets(t, c, 50, "after restartIce")
}

func transportID(t *testing.T, p *client.Peer, producing bool) string {
	t.Helper()
	id := p.RecvTransportID()
	if producing {
		id = p.SendTransportID()
	}
	if id == "" {
		t.Fatalf("%s has no transport (producing %v)", p.ID(), producing)
	}
	return id
}

// TestScoresAndActiveSpeaker: while media flows, A gets producerScore, B
// gets consumerScore, and everyone hears that A (loud audio) speaks.
func TestScoresAndActiveSpeaker(t *testing.T) {
	e := newMediaEnv(t)
	ctx := testCtx(t)
	a := e.join("r", "a", client.JoinOptions{Produce: true, Consume: true})
	b := e.join("r", "b", client.JoinOptions{Produce: true, Consume: true})
	audio, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	video, err := a.ProduceVideo(ctx, client.VideoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ProduceAudio(ctx, client.AudioOptions{Silent: true}); err != nil {
		t.Fatal(err)
	}
	ca := waitConsumer(t, b, audio.ID())
	note(t, a, "producerScore", "producerId", audio.ID())
	note(t, a, "producerScore", "producerId", video.ID())
	note(t, b, "consumerScore", "consumerId", ca.ID())
	for _, p := range []*client.Peer{a, b} {
		note(t, p, "activeSpeaker", "peerId", "a")
	}
	waitFor(t, settle, func() bool { s := audio.Score(); return len(s) == 1 && s[0].Score > 0 }, "audio score %+v", func() any { return audio.Score() })
	waitFor(t, settle, func() bool { return ca.Score().ProducerScore > 0 }, "consumer score %+v", func() any { return ca.Score() })
}

// TestCloseLeavesNothingBehind: after the peers close (or leave) no
// goroutine is left, consumers are done, and the room is gone.
func TestCloseLeavesNothingBehind(t *testing.T) {
	e := newMediaEnv(t)
	ctx := testCtx(t)
	before := runtime.NumGoroutine()

	a := e.join("gone", "a", client.JoinOptions{Produce: true, Consume: true, Data: true})
	b := e.join("gone", "b", client.JoinOptions{Produce: true, Consume: true, Data: true})
	if _, err := a.ProduceAudio(ctx, client.AudioOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ProduceVideo(ctx, client.VideoOptions{Simulcast: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ProduceAudio(ctx, client.AudioOptions{}); err != nil {
		t.Fatal(err)
	}
	dp, err := a.ProduceData(ctx, "chat", true)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	b.OnDataMessage(func(from, label string, msg []byte) { got <- string(msg) })
	waitFor(t, settle, func() bool { return len(b.DataConsumers()) == 1 && len(b.Consumers()) == 2 && len(a.Consumers()) == 1 },
		"consumers: a %d, b %d", func() any { return len(a.Consumers()) }, func() any { return len(b.Consumers()) })
	for _, c := range append(a.Consumers(), b.Consumers()...) {
		waitPackets(t, c, 3, "before closing")
	}
	if err := dp.SendText("bye"); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "bye" {
		t.Fatalf("got %q", m)
	}
	during := runtime.NumGoroutine()
	cons := b.Consumers()
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	note(t, b, "peerClosed", "peerId", "a")
	note(t, b, "dataConsumerClosed", "", "")
	waitFor(t, settle, func() bool { return len(b.DataConsumers()) == 0 }, "b's data consumer still listed")
	for _, c := range cons {
		select {
		case <-c.Done():
		case <-time.After(settle):
			t.Fatalf("b's consumer %s not closed after a left", c.ID())
		}
	}
	b.Close()
	for _, p := range []*client.Peer{a, b} {
		select {
		case <-p.Done():
		default:
			t.Fatalf("%s not done", p.ID())
		}
	}
	waitFor(t, settle, func() bool { return e.rooms.Room("gone") == nil }, "room still open")
	deadline := time.Now().Add(settle)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("goroutines: %d before the peers, %d with media flowing, %d after", before, during, runtime.NumGoroutine())
}
