package room

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// Device describes a peer's client (PROTOCOL.md join).
type Device struct {
	Flag    string `json:"flag"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// PeerInfo is how a peer is presented to the others.
type PeerInfo struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	Device      Device `json:"device"`

	encoded json.RawMessage // the JSON of the fields above, once joined
}

// JSON returns the info encoded as JSON: for a joined peer, the bytes
// encoded once when it joined or was last renamed (every later joiner's
// join answer lists it), which the caller must not modify.
func (i PeerInfo) JSON() (json.RawMessage, error) {
	if i.encoded != nil {
		return i.encoded, nil
	}
	type fields PeerInfo // without the method
	return json.Marshal(fields(i))
}

// Peer is one connection's presence in a room and everything it owns.
// Its fields are guarded by the room's mu.
type Peer struct {
	room   *Room
	id     string
	conn   PeerConn
	log    *zap.Logger
	router *worker.Router // where all its transports live, chosen on first use
	// producing: p created a transport for sending (router placement counts
	// it as a producer before it produces).
	producing bool

	closed      bool
	joined      bool
	displayName string
	device      Device
	infoJSON    json.RawMessage // infoLocked's JSON, encoded when it joined or was renamed
	// The client's RTP capabilities as ConsumingRtpCapabilities made them
	// at join: read-only, shared by every consume of the peer.
	rtpCaps  *mediasoup.RtpCapabilities
	sctpCaps *SctpCapabilities

	transports   map[string]*mediasoup.Transport
	producers    map[string]*mediasoup.Producer
	consumers    map[string]*mediasoup.Consumer
	dataProds    map[string]*mediasoup.DataProducer
	dataConsumes map[string]*mediasoup.DataConsumer
}

// ID is the peer id.
func (p *Peer) ID() string { return p.id }

// Room is the peer's room.
func (p *Peer) Room() *Room { return p.room }

// Counts of what the peer owns, for the admin view and metrics.
type Counts struct {
	Transports, Producers, Consumers, DataProducers, DataConsumers int
}

// Snapshot returns the peer's public info, whether it joined, and counts.
func (p *Peer) Snapshot() (PeerInfo, bool, Counts) {
	r := p.room
	r.mu.Lock()
	defer r.mu.Unlock()
	s := p.snapshotLocked()
	return s.Info, s.Joined, s.Counts
}

// PeerSnapshot is a peer as Room.Snapshot saw it.
type PeerSnapshot struct {
	Info        PeerInfo
	Joined      bool
	Broadcaster bool
	Counts      Counts
}

func (p *Peer) snapshotLocked() PeerSnapshot {
	return PeerSnapshot{Info: p.infoLocked(), Joined: p.joined, Broadcaster: p.IsBroadcaster(),
		Counts: Counts{len(p.transports), len(p.producers), len(p.consumers), len(p.dataProds), len(p.dataConsumes)}}
}

// setInfoJSONLocked encodes the info the others see, once per change (join,
// rename): every later joiner's answer lists it. r.mu held.
func (p *Peer) setInfoJSONLocked() {
	p.infoJSON = nil
	if b, err := p.infoLocked().JSON(); err == nil {
		p.infoJSON = b
	}
}

func (p *Peer) infoLocked() PeerInfo {
	return PeerInfo{ID: p.id, DisplayName: p.displayName, Device: p.device, encoded: p.infoJSON}
}

func (p *Peer) notify(method string, data any) {
	if err := p.conn.Notify(method, data); err != nil {
		p.log.Debug("notify failed", zap.String("method", method), zap.Error(err))
	}
}

func (p *Peer) notifyShared(n *Notification) {
	if err := p.conn.NotifyShared(n); err != nil {
		p.log.Debug("notify failed", zap.String("method", n.Method), zap.Error(err))
	}
}

// After is work to run once the response to the current request is queued
// (PROTOCOL.md: join answers first, then newConsumer requests follow). It
// does not block: what waits for a client runs on goroutines it starts.
type After func()

// RouterRtpCapabilities returns the router's RTP capabilities.
func (p *Peer) RouterRtpCapabilities() *mediasoup.RtpCapabilities {
	return p.room.router.RtpCapabilities()
}

// JoinRequest is the data of join.
type JoinRequest struct {
	DisplayName      string
	Device           Device
	RtpCapabilities  *mediasoup.RtpCapabilities
	SctpCapabilities *SctpCapabilities
}

// Join marks the peer joined and returns the other joined peers. The returned
// After creates its consumers of the others' producers and announces it.
func (p *Peer) Join(req JoinRequest) ([]PeerInfo, After, error) {
	r := p.room
	r.mu.Lock()
	if p.closed {
		r.mu.Unlock()
		return nil, nil, ErrPeerClosed
	}
	if p.joined {
		r.mu.Unlock()
		return nil, nil, errorf(ErrAlreadyJoined, "peer %q already joined", p.id)
	}
	p.joined = true
	p.displayName, p.device = req.DisplayName, req.Device
	p.setInfoJSONLocked()
	p.rtpCaps, p.sctpCaps = ConsumingRtpCapabilities(req.RtpCapabilities), req.SctpCapabilities
	others := r.joinedLocked()
	type prod struct {
		owner *Peer
		p     *mediasoup.Producer
	}
	type dprod struct {
		owner *Peer
		d     *mediasoup.DataProducer
	}
	var prods []prod
	var dprods []dprod
	for _, o := range others {
		for _, pr := range o.producers {
			prods = append(prods, prod{o, pr})
		}
		for _, d := range o.dataProds {
			dprods = append(dprods, dprod{o, d})
		}
	}
	r.addJoinedLocked(p)
	// The others' infos, under the lock (a rename changes them), each with
	// the JSON encoded when it last changed: the O(room) here is copies.
	infos := make([]PeerInfo, len(others))
	for i, o := range others {
		infos[i] = o.infoLocked()
	}
	me := p.infoLocked()
	r.mu.Unlock()
	p.log.Info("joined", zap.String("displayName", req.DisplayName), zap.Int("others", len(others)))
	// Each consume waits for the client's answer to newConsumer, which may
	// come only after the client's own next requests: never block After.
	return infos, func() {
		for _, x := range prods {
			r.m.spawn(func() { p.consume(x.owner, x.p) })
		}
		for _, x := range dprods {
			r.m.spawn(func() { p.consumeData(x.owner, x.d) })
		}
		n := NewNotification("newPeer", me)
		for _, o := range others {
			o.notifyShared(n)
		}
	}, nil
}

// TransportRequest is the data of createWebRtcTransport.
type TransportRequest struct {
	ForceTcp         bool
	Producing        bool
	Consuming        bool
	SctpCapabilities *SctpCapabilities
	AppData          mediasoup.H
}

// TransportInfo answers createWebRtcTransport.
type TransportInfo struct {
	ID             string                   `json:"id"`
	IceParameters  mediasoup.IceParameters  `json:"iceParameters"`
	IceCandidates  []mediasoup.IceCandidate `json:"iceCandidates"`
	DtlsParameters mediasoup.DtlsParameters `json:"dtlsParameters"`
	SctpParameters *SctpParameters          `json:"sctpParameters,omitempty"`
}

// CreateWebRtcTransport creates a transport on the room's WebRtcServer. SCTP
// is always enabled (mediasoup-client ≥ 3.21 sends no sctpCapabilities).
func (p *Peer) CreateWebRtcTransport(ctx context.Context, req TransportRequest) (*TransportInfo, error) {
	r := p.room
	o := r.m.opts
	rt, err := p.transportRouter(ctx, req.Producing)
	if err != nil {
		return nil, err
	}
	appData := withPeerID(req.AppData, p.id)
	appData["producing"], appData["consuming"] = req.Producing, req.Consuming
	enableUdp := !req.ForceTcp
	var t *mediasoup.Transport
	err = workerDoNow(ctx, rt, func(ctx context.Context) (err error) {
		t, err = rt.CreateWebRtcTransportContext(ctx, &mediasoup.WebRtcTransportOptions{
			WebRtcServer:                    rt.WebRtcServer,
			EnableUdp:                       &enableUdp,
			EnableTcp:                       true,
			PreferUdp:                       true,
			EnableSctp:                      true,
			SctpOptions:                     o.sctpOptions(),
			InitialAvailableOutgoingBitrate: o.InitialAvailableOutgoingBitrate,
			AppData:                         appData,
		})
		if err != nil {
			return err
		}
		if err := t.SetMaxIncomingBitrateContext(ctx, o.MaxIncomingBitrate); err != nil {
			p.log.Warn("setMaxIncomingBitrate", zap.Error(err))
		}
		if req.Consuming {
			err := t.EnableTraceEventContext(ctx, []mediasoup.TransportTraceEventType{mediasoup.TransportTraceEventBWE})
			if err != nil {
				p.log.Warn("enable BWE trace events", zap.Error(err))
			}
		}
		return nil
	})
	if err != nil {
		return nil, workerError("createWebRtcTransport", err)
	}
	if !adopt(p, p.transports, t, nil) {
		return nil, ErrPeerClosed
	}
	p.watchTransport(t, req.Consuming)
	d := t.Data().WebRtcTransportData
	return &TransportInfo{
		ID: t.Id(), IceParameters: d.IceParameters, IceCandidates: d.IceCandidates,
		DtlsParameters: d.DtlsParameters, SctpParameters: clientSctpParameters(d.SctpParameters, o.sctpStreams(req.SctpCapabilities)),
	}, nil
}

// object is what every mediasoup object a peer owns has in common.
type object interface {
	Id() string
	Close() error
	Closed() bool
	OnClose(func(context.Context)) func()
}

// adopt records obj in m, one of p's maps, and records p as its owner, under
// the room lock; also, when given, runs under the same lock. obj is forgotten
// when it closes. If p is closed meanwhile, obj is closed and adopt reports
// false.
func adopt[T object](p *Peer, m map[string]T, obj T, also func()) bool {
	r := p.room
	id := obj.Id()
	r.mu.Lock()
	if p.closed {
		r.mu.Unlock()
		_ = obj.Close()
		return false
	}
	m[id] = obj
	r.owner[id] = p.id
	if also != nil {
		also()
	}
	r.mu.Unlock()
	forget := func(context.Context) {
		r.mu.Lock()
		delete(m, id)
		delete(r.owner, id)
		r.mu.Unlock()
	}
	obj.OnClose(forget)
	if obj.Closed() { // closed before the listener was in place
		forget(context.Background())
	}
	return true
}

// withPeerID copies a client's appData and sets peerId to the owner,
// whatever the client claimed.
func withPeerID(appData mediasoup.H, peerID string) mediasoup.H {
	out := make(mediasoup.H, len(appData)+1)
	for k, v := range appData {
		out[k] = v
	}
	out["peerId"] = peerID
	return out
}

// do runs f, which sends requests to p's worker, through the worker's
// bound on requests in flight (workerDoNow).
func (p *Peer) do(ctx context.Context, f func(ctx context.Context) error) error {
	r := p.room
	r.mu.Lock()
	rt := p.router
	r.mu.Unlock()
	if rt == nil {
		return f(ctx)
	}
	return workerDoNow(ctx, rt, f)
}

// transportAllowed fails when p is closed or has its maximum of transports.
func (p *Peer) transportAllowed() error {
	r := p.room
	r.mu.Lock()
	n, closed := len(p.transports), p.closed
	r.mu.Unlock()
	if closed {
		return ErrPeerClosed
	}
	if max := r.m.opts.MaxTransportsPerPeer; n >= max {
		return errorf(ErrLimit, "at most %d transports per peer", max)
	}
	return nil
}

// transportRouter checks that p may create one more transport and returns
// the router it goes on (chosen on p's first transport); producing: the
// transport is for sending.
func (p *Peer) transportRouter(ctx context.Context, producing bool) (*worker.Router, error) {
	if err := p.transportAllowed(); err != nil {
		return nil, err
	}
	return p.room.routerFor(ctx, p, producing)
}

// producingTransport checks that p joined and may create one more object
// counted by count (at most max, named what), and finds its transport.
func (p *Peer) producingTransport(transportID string, count func() int, max int, what string) (*mediasoup.Transport, error) {
	r := p.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := p.requireJoinedLocked(); err != nil {
		return nil, err
	}
	t, err := lookup(r, p, p.transports, "transport", transportID)
	if err != nil {
		return nil, err
	}
	if count() >= max {
		return nil, errorf(ErrLimit, "at most %d %s per peer", max, what)
	}
	return t, nil
}

func (p *Peer) watchTransport(t *mediasoup.Transport, consuming bool) {
	r := p.room
	id := t.Id()
	// grace runs while the transport's ICE is disconnected; stopped when ICE
	// comes back or the transport closes for another reason. Its own lock:
	// a transport may close with the room's lock held.
	var graceMu sync.Mutex
	var grace *time.Timer
	t.OnClose(func(context.Context) {
		graceMu.Lock()
		defer graceMu.Unlock()
		if grace != nil {
			grace.Stop()
			grace = nil
		}
	})
	t.OnIceStateChange(func(s mediasoup.IceState) {
		graceMu.Lock()
		defer graceMu.Unlock()
		switch s {
		case mediasoup.IceStateDisconnected, mediasoup.IceStateClosed:
			if grace == nil {
				grace = time.AfterFunc(r.m.opts.IceDisconnectGrace, func() {
					p.log.Info("ICE disconnected past the grace period: closing the peer", zap.String("transport", id))
					p.conn.Close(CloseTransportFailed, "ICE disconnected")
					p.Close()
				})
			}
		default:
			if grace != nil {
				grace.Stop()
				grace = nil
			}
		}
	})
	t.OnDtlsStateChange(func(s mediasoup.DtlsState) {
		if s == mediasoup.DtlsStateFailed || s == mediasoup.DtlsStateClosed {
			p.log.Info("DTLS "+string(s)+": closing the peer", zap.String("transport", id))
			go func() {
				p.conn.Close(CloseTransportFailed, "DTLS "+string(s))
				p.Close()
			}()
		}
	})
	if consuming { // (BWE trace events enabled by CreateWebRtcTransport)
		t.OnTrace(func(tr *mediasoup.TransportTraceEventData) {
			if tr.Type != mediasoup.TransportTraceEventBWE || tr.Direction != "out" {
				return
			}
			p.notify("downlinkBwe", mediasoup.H{
				"desiredBitrate":          tr.Info["desiredBitrate"],
				"effectiveDesiredBitrate": tr.Info["effectiveDesiredBitrate"],
				"availableBitrate":        tr.Info["availableBitrate"],
			})
		})
	}
}

func (p *Peer) transport(id string) (*mediasoup.Transport, error) {
	r := p.room
	r.mu.Lock()
	defer r.mu.Unlock()
	return lookup(r, p, p.transports, "transport", id)
}

// ConnectWebRtcTransport gives the transport the client's DTLS parameters.
func (p *Peer) ConnectWebRtcTransport(ctx context.Context, transportID string, dtls *mediasoup.DtlsParameters) error {
	t, err := p.transport(transportID)
	if err != nil {
		return err
	}
	return workerError("connectWebRtcTransport", p.do(ctx, func(ctx context.Context) error {
		return t.ConnectContext(ctx, &mediasoup.TransportConnectOptions{DtlsParameters: dtls})
	}))
}

// RestartIce returns new ICE parameters for the transport.
func (p *Peer) RestartIce(ctx context.Context, transportID string) (*mediasoup.IceParameters, error) {
	t, err := p.transport(transportID)
	if err != nil {
		return nil, err
	}
	ice, err := t.RestartIceContext(ctx)
	return ice, workerError("restartIce", err)
}

// TransportStats returns the worker's stats of one of the peer's transports.
func (p *Peer) TransportStats(ctx context.Context, transportID string) (any, error) {
	t, err := p.transport(transportID)
	if err != nil {
		return nil, err
	}
	s, err := t.GetStatsContext(ctx)
	if err != nil {
		return nil, workerError("getTransportStats", err)
	}
	return []any{s}, nil
}

// requireJoined fails with 409 unless the peer joined. r.mu held.
func (p *Peer) requireJoinedLocked() error {
	if p.closed {
		return ErrPeerClosed
	}
	if !p.joined {
		return errorf(ErrNotJoined, "peer %q has not joined", p.id)
	}
	return nil
}

// ProduceRequest is the data of produce.
type ProduceRequest struct {
	TransportID   string
	Kind          mediasoup.MediaKind
	RtpParameters *mediasoup.RtpParameters
	AppData       mediasoup.H
}

// Produce creates a producer; After creates its consumers on the others.
func (p *Peer) Produce(ctx context.Context, req ProduceRequest) (string, After, error) {
	r := p.room
	t, err := p.producingTransport(req.TransportID, func() int { return len(p.producers) },
		r.m.opts.MaxProducersPerPeer, "producers")
	if err != nil {
		return "", nil, err
	}
	pr, err := t.ProduceContext(ctx, &mediasoup.ProducerOptions{
		Kind: req.Kind, RtpParameters: req.RtpParameters, AppData: withPeerID(req.AppData, p.id),
	})
	if err != nil {
		return "", nil, workerError("produce", err)
	}
	var targets []*Peer
	// Same lock as the map insert, so each peer consumes it exactly once: see Join.
	if !adopt(p, p.producers, pr, func() { targets = r.joinedLocked() }) {
		return "", nil, ErrPeerClosed
	}
	pr.OnScore(func(score []mediasoup.ProducerScore) {
		p.notify("producerScore", mediasoup.H{"producerId": pr.Id(), "score": score})
	})
	if req.Kind == mediasoup.MediaKindAudio {
		// The observers live on the room's first router: audio from a peer on
		// another router is piped there.
		if err := r.ensurePipe(ctx, pr.Id(), false, p.router, r.router); err != nil {
			p.log.Warn("pipe audio to the observers' router", zap.Error(err))
		}
		if err := r.audioObserver.AddProducerContext(ctx, pr.Id()); err != nil {
			p.log.Warn("audio level observer", zap.Error(err))
		}
		if err := r.speakerObs.AddProducerContext(ctx, pr.Id()); err != nil {
			p.log.Warn("active speaker observer", zap.Error(err))
		}
	}
	return pr.Id(), func() {
		for _, q := range targets {
			if q != p {
				r.m.spawn(func() { q.consume(p, pr) })
			}
		}
	}, nil
}

func (p *Peer) producer(id string) (*mediasoup.Producer, error) {
	r := p.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := p.requireJoinedLocked(); err != nil {
		return nil, err
	}
	return lookup(r, p, p.producers, "producer", id)
}

func (p *Peer) consumer(id string) (*mediasoup.Consumer, error) {
	r := p.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := p.requireJoinedLocked(); err != nil {
		return nil, err
	}
	return lookup(r, p, p.consumers, "consumer", id)
}

// ProducerOp runs one of closeProducer, pauseProducer, resumeProducer.
func (p *Peer) ProducerOp(ctx context.Context, op, producerID string) error {
	pr, err := p.producer(producerID)
	if err != nil {
		return err
	}
	switch op {
	case "close":
		p.room.closingProducers([]string{pr.Id()}, func() { err = pr.CloseContext(ctx) })
	case "pause":
		err = pr.PauseContext(ctx)
	case "resume":
		err = pr.ResumeContext(ctx)
	default:
		return errorf(ErrBadRequest, "unknown producer operation %q", op)
	}
	return workerError(op+"Producer", err)
}

// ConsumerOp runs one of pauseConsumer, resumeConsumer, requestConsumerKeyFrame.
func (p *Peer) ConsumerOp(ctx context.Context, op, consumerID string) error {
	c, err := p.consumer(consumerID)
	if err != nil {
		return err
	}
	switch op {
	case "pause":
		err = c.PauseContext(ctx)
	case "resume":
		err = c.ResumeContext(ctx)
	case "requestKeyFrame":
		err = c.RequestKeyFrameContext(ctx)
	default:
		return errorf(ErrBadRequest, "unknown consumer operation %q", op)
	}
	return workerError(op+"Consumer", err)
}

// SetConsumerPreferredLayers sets a simulcast/SVC consumer's preferred layers.
func (p *Peer) SetConsumerPreferredLayers(ctx context.Context, consumerID string, layers mediasoup.ConsumerLayers) error {
	c, err := p.consumer(consumerID)
	if err != nil {
		return err
	}
	return workerError("setConsumerPreferredLayers", c.SetPreferredLayersContext(ctx, layers))
}

// SetConsumerPriority sets a consumer's priority (1–255).
func (p *Peer) SetConsumerPriority(ctx context.Context, consumerID string, priority uint8) error {
	c, err := p.consumer(consumerID)
	if err != nil {
		return err
	}
	return workerError("setConsumerPriority", c.SetPriorityContext(ctx, priority))
}

// ProducerStats / ConsumerStats return the worker's stats arrays.
func (p *Peer) ProducerStats(ctx context.Context, id string) (any, error) {
	pr, err := p.producer(id)
	if err != nil {
		return nil, err
	}
	s, err := pr.GetStatsContext(ctx)
	return s, workerError("getProducerStats", err)
}

// ConsumerStats returns the worker's stats of one of the peer's consumers.
func (p *Peer) ConsumerStats(ctx context.Context, id string) (any, error) {
	c, err := p.consumer(id)
	if err != nil {
		return nil, err
	}
	s, err := c.GetStatsContext(ctx)
	return s, workerError("getConsumerStats", err)
}

// consume creates p's consumer of producer (owned by owner), paused, and asks
// the client with newConsumer; it is resumed only once the client accepts.
func (p *Peer) consume(owner *Peer, producer *mediasoup.Producer) {
	if p.IsBroadcaster() {
		return // broadcasters consume explicitly
	}
	r := p.room
	r.mu.Lock()
	if p.closed || !p.joined || p.rtpCaps == nil || producer.Closed() {
		r.mu.Unlock()
		return
	}
	caps := p.rtpCaps
	t := p.consumingTransportLocked()
	from, to := owner.router, p.router
	r.mu.Unlock()
	if t == nil {
		p.log.Debug("no consuming transport: not consuming", zap.String("producer", producer.Id()))
		return
	}
	if !p.pipeForConsume(producer.Id(), false, from, to) {
		return
	}
	if !to.CanConsume(producer.Id(), caps) {
		return
	}
	var c *mediasoup.Consumer
	err := workerDo(to, func(wctx context.Context) error {
		return r.consuming(producer.Id(), func() (err error) {
			c, err = t.ConsumeContext(wctx, &mediasoup.ConsumerOptions{
				ProducerId: producer.Id(), RtpCapabilities: caps, Paused: true,
				AppData: mediasoup.H{"peerId": p.id, "producerPeerId": owner.id},
			})
			return err
		})
	})
	if err != nil {
		if errors.Is(err, mediasoup.ErrNotFound) { // the producer closed meanwhile
			p.log.Debug("consume: producer closed meanwhile", zap.String("producer", producer.Id()), zap.Error(err))
		} else {
			p.log.Warn("consume failed", zap.String("producer", producer.Id()), zap.Error(err))
		}
		return
	}
	if !adopt(p, p.consumers, c, nil) {
		return
	}
	id := c.Id()
	// What the consumer's listeners hear goes out after newConsumer: they
	// must be in place before newConsumer reads ProducerPaused (or a pause
	// in between is lost), but a pause they hear then must not overtake the
	// request. gate is held from before they listen until newConsumer is
	// queued (newConsumerData.Queued); a listener waits for it.
	var gate sync.Mutex
	var announced bool // under gate
	gate.Lock()
	open := true
	release := func() {
		if open {
			open = false
			gate.Unlock()
		}
	}
	defer release()
	tell := func(method string, data func() any) {
		gate.Lock()
		ok := announced
		gate.Unlock()
		if ok {
			p.notify(method, data())
		}
	}
	ofConsumer := func() any { return mediasoup.H{"consumerId": id} }
	c.OnProducerClose(func(context.Context) { tell("consumerClosed", ofConsumer) })
	c.OnProducerPause(func(context.Context) { tell("consumerPaused", ofConsumer) })
	c.OnProducerResume(func(context.Context) { tell("consumerResumed", ofConsumer) })
	c.OnScore(func(s mediasoup.ConsumerScore) {
		tell("consumerScore", func() any { return mediasoup.H{"consumerId": id, "score": s} })
	})
	c.OnLayersChange(func(l *mediasoup.ConsumerLayers) {
		tell("consumerLayersChanged", func() any {
			data := mediasoup.H{"consumerId": id, "spatialLayer": nil, "temporalLayer": nil}
			if l != nil {
				data["spatialLayer"] = l.SpatialLayer
				if l.TemporalLayer != nil {
					data["temporalLayer"] = *l.TemporalLayer
				}
			}
			return data
		})
	})

	ctx, cancel := context.WithTimeout(context.Background(), r.m.opts.ServerRequestTimeout)
	defer cancel()
	_, err = p.conn.Request(ctx, "newConsumer", newConsumerData{
		PeerID: owner.id, ProducerID: producer.Id(), ID: id, Kind: c.Kind(),
		RtpParameters: c.RtpParameters(), Type: c.Type(), AppData: producer.AppData(),
		ProducerPaused: c.ProducerPaused(),
		queued: func() {
			announced = true
			release()
		},
	})
	release() // (not queued: the listeners stay silent)
	if err != nil {
		// Rejected or unanswered: no consumer stays behind.
		p.log.Debug("newConsumer not accepted: closing the consumer", zap.String("consumer", id), zap.Error(err))
		_ = c.Close()
		return
	}
	if err := workerDo(to, c.ResumeContext); err != nil && !c.Closed() {
		// Not found: the worker closed it (its producer closed) before
		// mediasoup-go heard; the consumerClosed notification follows.
		if errors.Is(err, mediasoup.ErrNotFound) {
			p.log.Debug("resume consumer: closed meanwhile", zap.String("consumer", id), zap.Error(err))
		} else {
			p.log.Warn("resume consumer", zap.String("consumer", id), zap.Error(err))
		}
	}
}

// pipeForConsume makes producer (or data producer) id, on router from,
// available on router to for one of p's background consumes (see
// Room.ensurePipe); false, logged, when it cannot.
func (p *Peer) pipeForConsume(id string, data bool, from, to *worker.Router) bool {
	ctx, cancel := workerContext()
	defer cancel()
	err := p.room.ensurePipe(ctx, id, data, from, to)
	if err != nil {
		kind := "producer"
		if data {
			kind = "dataProducer"
		}
		p.log.Warn("cannot consume across workers", zap.String(kind, id), zap.Error(err))
	}
	return err == nil
}

// newConsumerData is the data of newConsumer (a struct: a map's keys would
// be sorted for every consumer).
type newConsumerData struct {
	PeerID         string                   `json:"peerId"`
	ProducerID     string                   `json:"producerId"`
	ID             string                   `json:"id"`
	Kind           mediasoup.MediaKind      `json:"kind"`
	RtpParameters  *mediasoup.RtpParameters `json:"rtpParameters"`
	Type           mediasoup.ConsumerType   `json:"type"`
	AppData        mediasoup.H              `json:"appData"`
	ProducerPaused bool                     `json:"producerPaused"`

	queued func() // called once the request is queued (PeerConn.Request)
}

// Queued is called by the connection once newConsumer is queued, before
// it waits for the answer.
func (d newConsumerData) Queued() {
	if d.queued != nil {
		d.queued()
	}
}

// consumingTransportLocked is the peer's first transport created for consuming.
func (p *Peer) consumingTransportLocked() *mediasoup.Transport {
	for _, t := range p.transports {
		if c, _ := t.AppData()["consuming"].(bool); c {
			return t
		}
	}
	return nil
}

// Close frees everything the peer owns and tells the others it left (if it
// had joined). The last peer out closes the room. Idempotent.
func (p *Peer) Close() {
	r := p.room
	r.mu.Lock()
	if p.closed {
		r.mu.Unlock()
		return
	}
	p.closed = true
	wasJoined := p.joined
	var tell []*Peer // who hears peerClosed: chosen as p leaves, so that
	// a peer joining after this hears neither of p nor of its leaving
	if wasJoined {
		r.removeJoinedLocked(p)
		tell = r.joinedLocked()
	}
	if r.peers[p.id] == p {
		delete(r.peers, p.id)
	}
	r.closing++
	transports := make([]*mediasoup.Transport, 0, len(p.transports))
	for _, t := range p.transports {
		transports = append(transports, t)
	}
	// No producer is added once closed is set (adopt): these are all the
	// producers and data producers closing with the transports (ids are
	// unique across both: the locks of Room.consuming cover both).
	producers := make([]string, 0, len(p.producers)+len(p.dataProds))
	for id := range p.producers {
		producers = append(producers, id)
	}
	for id := range p.dataProds {
		producers = append(producers, id)
	}
	r.mu.Unlock()
	if wasJoined {
		n := NewNotification("peerClosed", mediasoup.H{"peerId": p.id})
		for _, q := range tell {
			q.notifyShared(n)
		}
	}
	// Closing the transports closes their producers, consumers and data
	// objects; consumers of this peer's producers on other peers close with
	// them and those peers get consumerClosed / dataConsumerClosed. Only
	// this peer's producers close: consumes of other producers it has in
	// flight on these transports need no lock (ConsumeContext then returns
	// ErrTransportClosed, and unlocks).
	r.closingProducers(producers, func() {
		for _, t := range transports {
			ctx, cancel := workerContext()
			err := t.CloseContext(ctx)
			cancel()
			if err != nil && !errors.Is(err, mediasoup.ErrRouterClosed) {
				p.log.Debug("transport close", zap.Error(err))
			}
		}
	})
	p.log.Info("peer left", zap.Bool("joined", wasJoined))
	r.mu.Lock()
	r.closing--
	r.mu.Unlock()
	r.releaseRouter(p.router)
	// The last peer to finish closing closes the room, so no router goes
	// away under a transport that is still being closed.
	r.closeIfEmpty()
}
