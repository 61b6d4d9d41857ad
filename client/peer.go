package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// JoinOptions configures Join. The zero value joins without media: set
// Produce, Consume and Data for what the peer should do.
type JoinOptions struct {
	// DisplayName and Device are sent in join (Device defaults to
	// {Flag: "bot", Name: "go-client"}).
	DisplayName string
	Device      Device
	// Produce creates the sending transport: ProduceAudio and ProduceVideo
	// need it.
	Produce bool
	// Consume creates the receiving transport and sends the client's RTP
	// capabilities in join: the server then creates a consumer of every
	// producer of the other peers (newConsumer), which the peer accepts.
	Consume bool
	// Data enables data channels: ProduceData (on the sending transport,
	// created for it) and data consumers of the other peers' data producers
	// (on the receiving transport, created for it).
	Data bool
	// Dial configures the signaling connection. Its OnRequest is not used
	// (the peer answers the server's requests); its OnNotification, if set,
	// is called for every notification after the peer handled it.
	Dial *DialOptions
	// SettingEngine, if set, adjusts pion's settings after the defaults
	// (UDP over IPv4, loopback candidates included, mDNS off), e.g. to
	// restrict the interfaces ICE gathers on.
	SettingEngine func(*webrtc.SettingEngine)
}

// Peer is one participant of a room with real WebRTC media: a signaling
// connection, a sending and a receiving transport (each a pion
// PeerConnection negotiated with SDP built from mediasoup's parameters), and
// the producers, consumers and data channels on them. Its methods are safe for
// concurrent use.
type Peer struct {
	conn       *Conn
	id         string
	opts       JoinOptions
	routerCaps *rtpCapabilities
	localCaps  *rtpCapabilities
	cname      string // RTCP CNAME (and msid stream id) of everything sent
	send, recv *transport

	ctx    context.Context // ends when the peer closes
	cancel context.CancelFunc

	mu            sync.Mutex
	closed        bool
	wg            sync.WaitGroup // goroutines started by spawn
	peers         map[string]PeerInfo
	producers     map[string]*Producer
	consumers     map[string]*Consumer
	dataConsumers map[string]*DataConsumer
	onConsumer    func(*Consumer)
	onDataMessage func(from, label string, msg []byte)

	closeOnce sync.Once
	done      chan struct{}
}

// Join connects peerID to room roomID of the server at serverURL and joins
// it like mediasoup-client does: getRouterRtpCapabilities, then
// createWebRtcTransport for sending and/or receiving (with sctpCapabilities
// when opts.Data), then join with the client's RTP capabilities (when
// opts.Consume). Transports connect (connectWebRtcTransport) on first use.
// ctx bounds the whole join; the peer lives until Close or Leave, or until the
// server closes the connection.
func Join(ctx context.Context, serverURL, roomID, peerID string, opts JoinOptions) (*Peer, error) {
	pctx, cancel := context.WithCancel(context.Background())
	p := &Peer{
		id: peerID, opts: opts, ctx: pctx, cancel: cancel,
		peers: map[string]PeerInfo{}, producers: map[string]*Producer{}, consumers: map[string]*Consumer{},
		dataConsumers: map[string]*DataConsumer{},
		done:          make(chan struct{}),
	}
	var buf [8]byte
	_, _ = rand.Read(buf[:])
	p.cname = hex.EncodeToString(buf[:])

	var dopts DialOptions
	if opts.Dial != nil {
		dopts = *opts.Dial
	}
	userNote := dopts.OnNotification
	// Requests and notifications can arrive as soon as Dial returns; they
	// wait for the peer to be set up.
	ready := make(chan struct{})
	dopts.OnRequest = func(method string, data json.RawMessage) (any, error) {
		select {
		case <-ready:
		case <-p.done:
			return nil, &ResponseError{Code: 503, Reason: "peer closed"}
		}
		return p.handleRequest(method, data)
	}
	dopts.OnNotification = func(method string, data json.RawMessage) {
		select {
		case <-ready:
		case <-p.done:
		}
		p.handleNotification(method, data)
		if userNote != nil {
			userNote(method, data)
		}
	}
	conn, err := Dial(ctx, serverURL, roomID, peerID, &dopts)
	if err != nil {
		cancel()
		return nil, err
	}
	p.conn = conn
	if err := p.setup(ctx); err != nil {
		p.Close()
		return nil, err
	}
	close(ready)
	go func() {
		select {
		case <-conn.Done():
			p.Close()
		case <-p.done:
		}
	}()
	return p, nil
}

var sctpCapabilities = json.RawMessage(`{"numStreams":{"OS":1024,"MIS":1024}}`)

func (p *Peer) setup(ctx context.Context) error {
	opts := p.opts
	var caps rtpCapabilities
	if err := p.conn.Request(ctx, "getRouterRtpCapabilities", nil, &caps); err != nil {
		return err
	}
	p.routerCaps = &caps
	p.localCaps = localRtpCapabilities(&caps)

	var sctp json.RawMessage
	if opts.Data {
		sctp = sctpCapabilities
	}
	create := func(producing bool) (*transport, error) {
		var ti TransportInfo
		if err := p.conn.Request(ctx, "createWebRtcTransport", CreateWebRtcTransportRequest{
			Producing: producing, Consuming: !producing, SctpCapabilities: sctp,
		}, &ti); err != nil {
			return nil, err
		}
		rt, err := parseTransportInfo(ti)
		if err != nil {
			return nil, fmt.Errorf("client: createWebRtcTransport: %w", err)
		}
		api, err := newAPI(opts.SettingEngine)
		if err != nil {
			return nil, err
		}
		return newTransport(p, api, rt, producing)
	}
	var err error
	if opts.Produce || opts.Data {
		if p.send, err = create(true); err != nil {
			return err
		}
	}
	if opts.Consume || opts.Data {
		if p.recv, err = create(false); err != nil {
			return err
		}
		p.recv.pc.OnTrack(p.onTrack)
	}

	dev := opts.Device
	if dev == (Device{}) {
		dev = Device{Flag: "bot", Name: "go-client", Version: "1"}
	}
	req := JoinRequest{DisplayName: opts.DisplayName, Device: dev}
	if opts.Consume {
		req.RtpCapabilities, _ = json.Marshal(p.localCaps)
	}
	if opts.Data {
		req.SctpCapabilities = sctp
	}
	var res JoinResponse
	if err := p.conn.Request(ctx, "join", req, &res); err != nil {
		return err
	}
	p.mu.Lock()
	for _, o := range res.Peers {
		p.peers[o.ID] = o
	}
	p.mu.Unlock()
	return nil
}

// ID returns the peer id.
func (p *Peer) ID() string { return p.id }

// Conn returns the signaling connection, for requests and notifications this
// type does not wrap (WaitNotification works as usual: the peer's own
// handling does not consume the backlog).
func (p *Peer) Conn() *Conn { return p.conn }

// SendTransportID returns the id of the sending transport ("" without one),
// e.g. for getTransportStats.
func (p *Peer) SendTransportID() string {
	if p.send == nil {
		return ""
	}
	return p.send.id()
}

// RecvTransportID returns the id of the receiving transport ("" without one).
func (p *Peer) RecvTransportID() string {
	if p.recv == nil {
		return ""
	}
	return p.recv.id()
}

// Done is closed once the peer is closed (Close, Leave, or the server closed
// the connection).
func (p *Peer) Done() <-chan struct{} { return p.done }

// Peers returns the other joined peers: those in the join answer, updated by
// newPeer and peerClosed.
func (p *Peer) Peers() []PeerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PeerInfo, 0, len(p.peers))
	for _, o := range p.peers {
		out = append(out, o)
	}
	return out
}

// spawn runs fn on a goroutine that Close waits for, unless the peer is
// closed (then it reports false).
func (p *Peer) spawn(fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn()
	}()
	return true
}

// errClosed is returned by operations on a closed peer.
var errClosed = fmt.Errorf("client: peer closed: %w", ErrClosed)

func (p *Peer) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Peer) handleRequest(method string, data json.RawMessage) (any, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	switch method {
	case "newConsumer":
		var nc NewConsumer
		if err := json.Unmarshal(data, &nc); err != nil {
			return nil, &ResponseError{Code: 400, Reason: err.Error()}
		}
		return nil, p.newConsumer(ctx, nc)
	case "newDataConsumer":
		var nd NewDataConsumer
		if err := json.Unmarshal(data, &nd); err != nil {
			return nil, &ResponseError{Code: 400, Reason: err.Error()}
		}
		return nil, p.newDataConsumer(ctx, nd)
	}
	return nil, &ResponseError{Code: 405, Reason: "unknown method " + method}
}

func (p *Peer) handleNotification(method string, data json.RawMessage) {
	var d struct {
		ConsumerID     string          `json:"consumerId"`
		ProducerID     string          `json:"producerId"`
		DataConsumerID string          `json:"dataConsumerId"`
		PeerID         string          `json:"peerId"`
		SpatialLayer   *int            `json:"spatialLayer"`
		TemporalLayer  *int            `json:"temporalLayer"`
		Score          json.RawMessage `json:"score"`
	}
	_ = json.Unmarshal(data, &d)
	switch method {
	case "newPeer":
		var info PeerInfo
		if json.Unmarshal(data, &info) == nil && info.ID != "" {
			p.mu.Lock()
			p.peers[info.ID] = info
			p.mu.Unlock()
		}
	case "peerClosed":
		p.mu.Lock()
		delete(p.peers, d.PeerID)
		p.mu.Unlock()
	case "consumerClosed":
		if c := p.consumer(d.ConsumerID); c != nil {
			c.remoteClosed()
		}
	case "consumerPaused", "consumerResumed":
		if c := p.consumer(d.ConsumerID); c != nil {
			c.producerPaused.Store(method == "consumerPaused")
		}
	case "consumerLayersChanged":
		if c := p.consumer(d.ConsumerID); c != nil {
			c.setLayers(d.SpatialLayer, d.TemporalLayer)
		}
	case "consumerScore":
		if c := p.consumer(d.ConsumerID); c != nil {
			c.setScore(d.Score)
		}
	case "producerScore":
		p.mu.Lock()
		pr := p.producers[d.ProducerID]
		p.mu.Unlock()
		if pr != nil {
			pr.setScore(d.Score)
		}
	case "dataConsumerClosed":
		p.mu.Lock()
		dc := p.dataConsumers[d.DataConsumerID]
		delete(p.dataConsumers, d.DataConsumerID)
		p.mu.Unlock()
		if dc != nil {
			_ = dc.dc.Close()
		}
	}
}

func (p *Peer) consumer(id string) *Consumer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.consumers[id]
}

// Consumers returns the open consumers.
func (p *Peer) Consumers() []*Consumer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Consumer, 0, len(p.consumers))
	for _, c := range p.consumers {
		if c.accepted {
			out = append(out, c)
		}
	}
	return out
}

// OnConsumer sets the function called for every consumer: at once for those
// already open, then for each new one, before its first packet can arrive
// (the server resumes a consumer only once the peer accepted it, after f
// returned). f must not block for long.
func (p *Peer) OnConsumer(f func(*Consumer)) {
	p.mu.Lock()
	p.onConsumer = f
	existing := make([]*Consumer, 0, len(p.consumers))
	for _, c := range p.consumers {
		if c.accepted {
			existing = append(existing, c)
		}
	}
	p.mu.Unlock()
	if f != nil {
		for _, c := range existing {
			f(c)
		}
	}
}

// DataConsumers returns the open data consumers.
func (p *Peer) DataConsumers() []*DataConsumer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*DataConsumer, 0, len(p.dataConsumers))
	for _, d := range p.dataConsumers {
		out = append(out, d)
	}
	return out
}

// OnDataMessage sets the function called for every message received on a
// data consumer: from is the sending peer, label the data producer's label.
// Messages that arrive while no function is set are dropped. Calls for one
// data consumer are sequential.
func (p *Peer) OnDataMessage(f func(from, label string, msg []byte)) {
	p.mu.Lock()
	p.onDataMessage = f
	p.mu.Unlock()
}

func (p *Peer) dataMessage(from, label string, msg []byte) {
	p.mu.Lock()
	f := p.onDataMessage
	p.mu.Unlock()
	if f != nil {
		f(from, label, msg)
	}
}

// RestartIce restarts ICE on the peer's transports: restartIce on the
// server, then an ICE restart of each PeerConnection with the new parameters.
func (p *Peer) RestartIce(ctx context.Context) error {
	for _, t := range []*transport{p.send, p.recv} {
		if t == nil {
			continue
		}
		if err := t.restartIce(ctx); err != nil {
			return fmt.Errorf("client: restartIce (%s): %w", t.name(), err)
		}
	}
	return nil
}

// Leave sends leaveRoom (the server frees everything the peer had and tells
// the others), then closes the peer.
func (p *Peer) Leave(ctx context.Context) error {
	err := p.conn.Request(ctx, "leaveRoom", nil, nil)
	p.Close()
	return err
}

// Close closes the peer: its media stops, its signaling connection and
// PeerConnections close (the server then frees its resources and tells the
// others). When Close returns, the peer's media goroutines and pion's have
// ended and every consumer is done. It must not be called from the peer's
// own callbacks (it waits for them). Calling it again does nothing.
func (p *Peer) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		producers := make([]*Producer, 0, len(p.producers))
		for _, pr := range p.producers {
			producers = append(producers, pr)
		}
		consumers := make([]*Consumer, 0, len(p.consumers))
		for _, c := range p.consumers {
			consumers = append(consumers, c)
		}
		p.mu.Unlock()
		p.cancel()
		for _, pr := range producers {
			pr.stop()
		}
		if p.conn != nil {
			_ = p.conn.Close()
		}
		for _, t := range []*transport{p.send, p.recv} {
			if t != nil {
				t.close()
			}
		}
		p.wg.Wait()
		for _, c := range consumers {
			c.markClosed()
		}
		close(p.done)
	})
}
