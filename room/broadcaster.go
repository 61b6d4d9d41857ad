package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
)

// Broadcasters are peers driven over HTTP (ffmpeg, GStreamer, recorders):
// they join, create plain RTP or WebRTC transports, produce, and consume
// explicitly. They never get newConsumer requests: a BroadcasterConn refuses
// every server request, so the rooms create no automatic consumers for them.

// ErrBroadcaster is what a broadcaster's connection answers to server requests.
var ErrBroadcaster = errors.New("broadcasters consume explicitly over HTTP")

// BroadcasterConn is the PeerConn of a broadcaster: notifications are
// dropped, requests refused, Close remembered.
type BroadcasterConn struct {
	mu     sync.Mutex
	closed bool
}

// Notify drops the notification: a broadcaster has no socket.
func (*BroadcasterConn) Notify(string, any) error { return nil }

// NotifyShared drops the notification too.
func (*BroadcasterConn) NotifyShared(*Notification) error { return nil }

// Request refuses: broadcasters consume explicitly.
func (*BroadcasterConn) Request(context.Context, string, any) (json.RawMessage, error) {
	return nil, ErrBroadcaster
}

// Close marks the connection closed.
func (c *BroadcasterConn) Close(int, string) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// Closed reports whether the room closed this broadcaster.
func (c *BroadcasterConn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// IsBroadcaster reports whether p is driven over HTTP (its conn is a
// BroadcasterConn) rather than a WebSocket.
func (p *Peer) IsBroadcaster() bool {
	_, ok := p.conn.(*BroadcasterConn)
	return ok
}

// PlainTransportRequest creates a plain RTP transport (broadcasters).
type PlainTransportRequest struct {
	Comedia bool // detect the remote address from the first packet
	RtcpMux bool // RTP and RTCP on one port
	// SCTP over the plain transport (for data).
	EnableSctp bool
	// What the broadcaster declared (echoed in sctpParameters).
	SctpCapabilities *SctpCapabilities
	AppData          mediasoup.H
}

// PlainTransportInfo answers a plain transport creation.
type PlainTransportInfo struct {
	ID             string          `json:"id"`
	IP             string          `json:"ip"`
	Port           uint16          `json:"port"`
	RtcpPort       uint16          `json:"rtcpPort,omitempty"`
	SctpParameters *SctpParameters `json:"sctpParameters,omitempty"`
}

// CreatePlainTransport creates a plain RTP transport on the room's worker,
// listening on the pool's listen IP (announcing its announced address).
func (p *Peer) CreatePlainTransport(ctx context.Context, req PlainTransportRequest) (*PlainTransportInfo, error) {
	r := p.room
	o := r.m.opts
	// A plain transport mostly carries ffmpeg or GStreamer sending: it counts
	// as a producing one for placement (an overestimate for a recorder).
	rt, err := p.transportRouter(ctx, true)
	if err != nil {
		return nil, err
	}
	rtcpMux := req.RtcpMux
	opts := &mediasoup.PlainTransportOptions{
		ListenInfo: mediasoup.TransportListenInfo{
			Protocol: mediasoup.TransportProtocolUDP, Ip: o.PlainListenIP, AnnouncedAddress: o.PlainAnnouncedAddress,
		},
		RtcpMux:     &rtcpMux,
		Comedia:     req.Comedia,
		EnableSctp:  req.EnableSctp,
		SctpOptions: o.sctpOptions(),
		AppData:     withPeerID(req.AppData, p.id),
	}
	var t *mediasoup.Transport
	var rtcpPort uint16
	for attempt := 1; ; attempt++ {
		if !rtcpMux {
			// mediasoup-go (v2.4.1 to v2.6.0 at least) reports the RTCP tuple
			// of a new plain transport as a copy of its RTP tuple, although
			// the worker opened a separate RTCP socket on a port of its own
			// (router.go and Transport.Dump parse rtcpTuple from "tuple"). So
			// that the port we answer is the real one, we choose it: a port
			// the kernel just had free on the listen IP.
			if rtcpPort, err = freeUDPPort(o.PlainListenIP); err != nil {
				return nil, fmt.Errorf("createPlainTransport: no free RTCP port: %w", err)
			}
			opts.RtcpListenInfo = &mediasoup.TransportListenInfo{
				Protocol: mediasoup.TransportProtocolUDP, Ip: o.PlainListenIP,
				AnnouncedAddress: o.PlainAnnouncedAddress, Port: rtcpPort,
			}
		}
		t, err = rt.CreatePlainTransportContext(ctx, opts)
		// Someone may take the port between our probe and the worker's bind.
		if err == nil || rtcpMux || attempt == 3 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, workerError("createPlainTransport", err)
	}
	if !adopt(p, p.transports, t, nil) {
		return nil, ErrPeerClosed
	}
	d := t.Data().PlainTransportData
	info := &PlainTransportInfo{
		ID: t.Id(), IP: d.Tuple.LocalAddress, Port: d.Tuple.LocalPort, RtcpPort: rtcpPort,
		SctpParameters: clientSctpParameters(d.SctpParameters, o.sctpStreams(req.SctpCapabilities)),
	}
	return info, nil
}

// freeUDPPort returns a UDP port that is free on ip right now.
func freeUDPPort(ip string) (uint16, error) {
	c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

// ConnectPlainTransport gives a plain transport the remote address (when
// it was not created with comedia).
func (p *Peer) ConnectPlainTransport(ctx context.Context, transportID, ip string, port, rtcpPort uint16) error {
	t, err := p.transport(transportID)
	if err != nil {
		return err
	}
	opts := &mediasoup.TransportConnectOptions{Ip: ip, Port: &port}
	if rtcpPort != 0 {
		opts.RtcpPort = &rtcpPort
	}
	return workerError("connectPlainTransport", t.ConnectContext(ctx, opts))
}

// ConsumerInfo answers an explicit consume.
type ConsumerInfo struct {
	ID            string                   `json:"id"`
	ProducerID    string                   `json:"producerId"`
	Kind          mediasoup.MediaKind      `json:"kind"`
	RtpParameters *mediasoup.RtpParameters `json:"rtpParameters"`
	Type          mediasoup.ConsumerType   `json:"type"`
}

// Consume creates a consumer of producerID (any joined peer's producer in
// the room) on one of p's transports, for broadcasters. It needs the RTP
// capabilities given at join.
func (p *Peer) Consume(ctx context.Context, transportID, producerID string) (*ConsumerInfo, error) {
	r := p.room
	r.mu.Lock()
	if err := p.requireJoinedLocked(); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	t, err := lookup(r, p, p.transports, "transport", transportID)
	caps := p.rtpCaps
	owner := r.producerOwnerLocked(producerID)
	to := p.router
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if owner == nil {
		return nil, errorf(ErrNotFound, "producer %q not found", producerID)
	}
	if caps == nil {
		return nil, errorf(ErrBadRequest, "rtpCapabilities were not given at join")
	}
	if err := r.ensurePipe(ctx, producerID, false, owner.router, to); err != nil {
		return nil, workerError("consume", err)
	}
	if !to.CanConsume(producerID, caps) {
		return nil, errorf(ErrBadRequest, "cannot consume producer %q with the given rtpCapabilities", producerID)
	}
	var c *mediasoup.Consumer
	err = r.consuming(producerID, func() (err error) {
		c, err = t.ConsumeContext(ctx, &mediasoup.ConsumerOptions{
			ProducerId: producerID, RtpCapabilities: caps,
			AppData: mediasoup.H{"peerId": p.id, "producerPeerId": owner.id},
		})
		return err
	})
	if err != nil {
		return nil, workerError("consume", err)
	}
	if !adopt(p, p.consumers, c, nil) {
		return nil, ErrPeerClosed
	}
	return &ConsumerInfo{ID: c.Id(), ProducerID: producerID, Kind: c.Kind(), RtpParameters: c.RtpParameters(), Type: c.Type()}, nil
}

// DataConsumerInfo answers an explicit data consume.
type DataConsumerInfo struct {
	ID                   string                          `json:"id"`
	DataProducerID       string                          `json:"dataProducerId"`
	SctpStreamParameters *mediasoup.SctpStreamParameters `json:"sctpStreamParameters,omitempty"`
	Label                string                          `json:"label"`
	Protocol             string                          `json:"protocol"`
}

// ConsumeData creates a data consumer of dataProducerID on one of p's
// transports, for broadcasters.
func (p *Peer) ConsumeData(ctx context.Context, transportID, dataProducerID string) (*DataConsumerInfo, error) {
	r := p.room
	r.mu.Lock()
	if err := p.requireJoinedLocked(); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	t, err := lookup(r, p, p.transports, "transport", transportID)
	owner := r.dataProducerOwnerLocked(dataProducerID)
	to := p.router
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if owner == nil {
		return nil, errorf(ErrNotFound, "dataProducer %q not found", dataProducerID)
	}
	if err := r.ensurePipe(ctx, dataProducerID, true, owner.router, to); err != nil {
		return nil, workerError("consumeData", err)
	}
	var dc *mediasoup.DataConsumer
	err = r.consuming(dataProducerID, func() (err error) {
		dc, err = t.ConsumeDataContext(ctx, &mediasoup.DataConsumerOptions{
			DataProducerId: dataProducerID, AppData: mediasoup.H{"peerId": p.id},
		})
		return err
	})
	if err != nil {
		return nil, workerError("consumeData", err)
	}
	if !adopt(p, p.dataConsumes, dc, nil) {
		return nil, ErrPeerClosed
	}
	return &DataConsumerInfo{ID: dc.Id(), DataProducerID: dataProducerID,
		SctpStreamParameters: dc.SctpStreamParameters(), Label: dc.Label(), Protocol: dc.Protocol()}, nil
}

// producerOwnerLocked finds the joined peer owning a producer (through
// r.owner, not a walk of the room). r.mu held. Consuming another peer's
// producer is what rooms are for; only the owner may pause or close it,
// which the per-peer maps enforce.
func (r *Room) producerOwnerLocked(id string) *Peer {
	return ownerLocked(r, id, func(q *Peer) bool { _, ok := q.producers[id]; return ok })
}

func (r *Room) dataProducerOwnerLocked(id string) *Peer {
	return ownerLocked(r, id, func(q *Peer) bool { _, ok := q.dataProds[id]; return ok })
}

// ownerLocked is the joined, open peer that owns object id and holds it
// (has(q)): a peer id in r.owner may belong to a peer that replaced the
// owner since. r.mu held.
func ownerLocked(r *Room, id string, has func(q *Peer) bool) *Peer {
	q := r.peers[r.owner[id]]
	if q == nil || !q.joined || q.closed || !has(q) {
		return nil
	}
	return q
}

// Peer returns the room's peer with this id, or nil.
func (r *Room) Peer(id string) *Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[id]
}
