package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/room"
)

// Mode floor: the operations of signaling mode straight through
// mediasoup-go in this process, on workers it starts itself: per room a
// router with the same codecs and the same two audio observers; per peer
// two WebRTC transports on the worker's WebRtcServer (with the same
// options), both connected, two producers (audio added to the observers),
// and a paused consumer, then resumed, of every producer of every other
// peer, created concurrently in the same order as the server does (on join
// for the producers already there, on produce for the peers already
// joined). No WebSocket, no JSON, no room layer: what any Go server on
// mediasoup-go pays at least. The closed loop calls Transport.GetStats.

type floor struct {
	lt      *loadtest
	workers []*mediasoup.Worker
	servers []*mediasoup.WebRtcServer
	caps    *mediasoup.RtpCapabilities // what every peer "joins" with: the router's

	mu    sync.Mutex
	rooms map[string]*floorRoom
	wg    sync.WaitGroup // consumes in flight
}

type floorRoom struct {
	once    sync.Once
	worker  int // index of the worker its router goes on
	err     error
	router  *mediasoup.Router
	server  *mediasoup.WebRtcServer
	level   *mediasoup.RtpObserver
	speaker *mediasoup.RtpObserver

	mu     sync.Mutex
	joined []*floorPeer
	peers  int // peers not yet torn down
}

type floorPeer struct {
	lp         *lpeer
	send, recv *mediasoup.Transport
	producers  []*mediasoup.Producer
}

func startFloor(lt *loadtest) (*floor, error) {
	cfg := lt.cfg
	if cfg.WorkerBin == "" {
		return nil, errors.New("-mode floor needs -worker-bin (or MEDIASOUP_WORKER_BIN)")
	}
	f := &floor{lt: lt, rooms: map[string]*floorRoom{}}
	for i := 0; i < cfg.Workers; i++ {
		var w *mediasoup.Worker
		var err error
		for attempt := 0; attempt < 3; attempt++ { // a loaded machine can miss mediasoup-go's 1 s start timeout
			w, err = mediasoup.NewWorker(cfg.WorkerBin, func(s *mediasoup.WorkerSettings) {
				s.LogLevel = mediasoup.WorkerLogLevelWarn
			})
			if !errors.Is(err, mediasoup.ErrWorkerStartTimeout) {
				break
			}
		}
		if err != nil {
			f.close()
			return nil, fmt.Errorf("floor: start %s: %w", cfg.WorkerBin, err)
		}
		f.workers = append(f.workers, w)
		port := uint16(0)
		if cfg.RtcPort > 0 {
			port = uint16(cfg.RtcPort + i)
		}
		var infos []*mediasoup.TransportListenInfo
		for _, proto := range []mediasoup.TransportProtocol{mediasoup.TransportProtocolUDP, mediasoup.TransportProtocolTCP} {
			infos = append(infos, &mediasoup.TransportListenInfo{Protocol: proto, Ip: "127.0.0.1", Port: port})
		}
		srv, err := w.CreateWebRtcServer(&mediasoup.WebRtcServerOptions{ListenInfos: infos})
		if err != nil {
			f.close()
			return nil, fmt.Errorf("floor: WebRtcServer: %w", err)
		}
		f.servers = append(f.servers, srv)
	}
	return f, nil
}

// close stops the workers and waits until their processes are gone
// (Worker.Close kills a worker that lingers a second), as the server's pool
// does.
func (f *floor) close() {
	f.wg.Wait()
	for _, w := range f.workers {
		w.Close()
		deadline := time.Now().Add(5 * time.Second)
		for !w.SubprocessClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// room returns the room, creating its router on first use (round robin
// over the workers, as a fresh server's least-loaded placement does).
func (f *floor) room(ctx context.Context, id string) (*floorRoom, error) {
	f.mu.Lock()
	r := f.rooms[id]
	if r == nil {
		r = &floorRoom{worker: len(f.rooms) % len(f.workers)}
		f.rooms[id] = r
	}
	f.mu.Unlock()
	// Whoever comes first creates the router, the others wait for it. (Not a
	// no-op Do for the others: one that ran before the creator's Do would
	// leave the room without a router.)
	r.once.Do(func() { r.err = f.initRoom(ctx, r, r.worker) })
	return r, r.err
}

func (f *floor) initRoom(ctx context.Context, r *floorRoom, i int) error {
	rt, err := f.workers[i].CreateRouterContext(ctx, &mediasoup.RouterOptions{MediaCodecs: room.DefaultMediaCodecs()})
	if err != nil {
		return err
	}
	r.router, r.server = rt, f.servers[i]
	if r.level, err = rt.CreateAudioLevelObserverContext(ctx, &mediasoup.AudioLevelObserverOptions{
		MaxEntries: 1, Threshold: -80, Interval: 800}); err != nil {
		return err
	}
	if r.speaker, err = rt.CreateActiveSpeakerObserverContext(ctx, &mediasoup.ActiveSpeakerObserverOptions{}); err != nil {
		return err
	}
	f.mu.Lock()
	if f.caps == nil {
		f.caps = room.ConsumingRtpCapabilities(rt.RtpCapabilities())
	}
	f.mu.Unlock()
	return nil
}

var floorDtls = &mediasoup.DtlsParameters{Role: mediasoup.DtlsRoleClient, Fingerprints: []mediasoup.DtlsFingerprint{{
	Algorithm: "sha-256", Value: "82:5A:68:3D:36:C3:0A:DE:AF:E7:32:43:D2:88:83:57:AC:2D:65:E5:80:C4:B6:FB:AF:1A:A0:21:9F:6D:0C:AD",
}}}

// setup is signaling mode's doSetup without the server.
func (f *floor) setup(ctx context.Context, lp *lpeer) error {
	lt := f.lt
	rec := func(op string, t0 time.Time, err error) error {
		lt.rec.add(op, time.Since(t0), err)
		if err != nil {
			return fmt.Errorf("%s/%s: %s: %w", lp.room, lp.id, op, err)
		}
		return nil
	}
	t0 := time.Now()
	r, err := f.room(ctx, lp.room)
	if err != nil {
		return rec("createRouter", t0, err)
	}
	r.mu.Lock()
	r.peers++
	r.mu.Unlock()
	fp := &floorPeer{lp: lp}
	lp.floor = fp
	for _, producing := range []bool{true, false} {
		if producing && !lp.produces {
			continue
		}
		t1 := time.Now()
		t, err := f.createTransport(ctx, r, producing)
		if err := rec("createWebRtcTransport", t1, err); err != nil {
			return err
		}
		if producing {
			fp.send = t
		} else {
			fp.recv = t
		}
	}
	for _, t := range []*mediasoup.Transport{fp.send, fp.recv} {
		if t == nil {
			continue
		}
		t1 := time.Now()
		if err := rec("connectWebRtcTransport", t1, t.ConnectContext(ctx, &mediasoup.TransportConnectOptions{DtlsParameters: floorDtls})); err != nil {
			return err
		}
	}
	// join: consume what the joined peers produce already.
	t1 := time.Now()
	r.mu.Lock()
	var existing []*mediasoup.Producer
	for _, o := range r.joined {
		existing = append(existing, o.producers...)
	}
	r.joined = append(r.joined, fp)
	r.mu.Unlock()
	for _, pr := range existing {
		f.spawnConsume(r, fp, pr)
	}
	lt.rec.add("join", time.Since(t1), nil)
	lp.joinedIn = time.Since(t0)
	lt.joined.Add(1)
	if !lp.produces {
		return nil
	}

	for _, kind := range []string{"audio", "video"} {
		t1 := time.Now()
		pr, err := f.produce(ctx, r, fp, kind)
		if err := rec("produce", t1, err); err != nil {
			return err
		}
		// The new producer goes to every peer joined now, under the same
		// lock as its registration (exactly once, as in the room).
		r.mu.Lock()
		fp.producers = append(fp.producers, pr)
		targets := make([]*floorPeer, 0, len(r.joined))
		for _, q := range r.joined {
			if q != fp {
				targets = append(targets, q)
			}
		}
		r.mu.Unlock()
		for _, q := range targets {
			f.spawnConsume(r, q, pr)
		}
	}
	lt.produced()
	return nil
}

func (f *floor) createTransport(ctx context.Context, r *floorRoom, producing bool) (*mediasoup.Transport, error) {
	enableUdp := true
	t, err := r.router.CreateWebRtcTransportContext(ctx, &mediasoup.WebRtcTransportOptions{
		WebRtcServer: r.server, EnableUdp: &enableUdp, EnableTcp: true, PreferUdp: true,
		EnableSctp: true, SctpOptions: mediasoup.SctpOptions{MaxSendMessageSize: 262_144, MaxReceiveMessageSize: 262_144},
		InitialAvailableOutgoingBitrate: 1_000_000,
		AppData:                         mediasoup.H{"producing": producing, "consuming": !producing},
	})
	if err != nil {
		return nil, err
	}
	return t, t.SetMaxIncomingBitrateContext(ctx, 1_500_000)
}

func (f *floor) produce(ctx context.Context, r *floorRoom, fp *floorPeer, kind string) (*mediasoup.Producer, error) {
	rp := rtpParamsTyped(kind)
	pr, err := fp.send.ProduceContext(ctx, &mediasoup.ProducerOptions{Kind: mediasoup.MediaKind(kind), RtpParameters: rp})
	if err != nil {
		return nil, err
	}
	if kind == "audio" {
		if err := r.level.AddProducerContext(ctx, pr.Id()); err != nil {
			return nil, err
		}
		if err := r.speaker.AddProducerContext(ctx, pr.Id()); err != nil {
			return nil, err
		}
	}
	return pr, nil
}

// spawnConsume creates q's consumer of pr on a goroutine: paused, then
// resumed, as the server does once the client accepted newConsumer.
func (f *floor) spawnConsume(r *floorRoom, q *floorPeer, pr *mediasoup.Producer) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), f.lt.cfg.RequestTimeout)
		defer cancel()
		t0 := time.Now()
		// One copy of the capabilities, made ready at "join"
		// (room.ConsumingRtpCapabilities), serves every consume, as in
		// the server.
		caps := f.caps
		var err error
		if !r.router.CanConsume(pr.Id(), caps) {
			err = fmt.Errorf("cannot consume %s", pr.Id())
		} else {
			var c *mediasoup.Consumer
			c, err = q.recv.ConsumeContext(ctx, &mediasoup.ConsumerOptions{ProducerId: pr.Id(), RtpCapabilities: caps, Paused: true})
			if err == nil {
				err = c.ResumeContext(ctx)
			}
		}
		f.lt.rec.add("consume (floor)", time.Since(t0), err)
		if err != nil {
			f.lt.fail("%s/%s: consume: %v", q.lp.room, q.lp.id, err)
			return
		}
		q.lp.gotConsumer(pr.Id())
	}()
}

// stats is the closed loop's request for peer lp (nil: it has no transport).
func (f *floor) stats(lp *lpeer) func(context.Context) error {
	fp := lp.floor
	if fp == nil || fp.recv == nil {
		return nil
	}
	t := fp.send
	if t == nil { // a viewer
		t = fp.recv
	}
	return func(ctx context.Context) error {
		_, err := t.GetStatsContext(ctx)
		return err
	}
}

// teardown closes every peer's transports at once; the last peer of a room
// closes its router, as the server does.
func (f *floor) teardown() TeardownStats {
	f.wg.Wait()
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, lp := range f.lt.peers {
		fp := lp.floor
		if fp == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, t := range []*mediasoup.Transport{fp.send, fp.recv} {
				if t != nil {
					_ = t.Close()
				}
			}
			f.mu.Lock()
			r := f.rooms[lp.room]
			f.mu.Unlock()
			r.mu.Lock()
			r.peers--
			last := r.peers == 0
			r.mu.Unlock()
			if last && r.router != nil {
				_ = r.router.Close()
			}
		}()
	}
	wg.Wait()
	d := ms(time.Since(t0))
	return TeardownStats{CloseMs: d, Ms: d, Complete: true}
}

// rtpParamsTyped is rtpParams for mediasoup-go.
func rtpParamsTyped(kind string) *mediasoup.RtpParameters {
	rp := new(mediasoup.RtpParameters)
	if err := json.Unmarshal(rtpParams(kind), rp); err != nil {
		panic(err) // a constant
	}
	return rp
}
