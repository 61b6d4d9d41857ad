package room

import (
	"context"
	"errors"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"go.uber.org/zap"
)

// ProduceDataRequest is the data of produceData.
type ProduceDataRequest struct {
	TransportID          string
	SctpStreamParameters *mediasoup.SctpStreamParameters
	Label, Protocol      string
	AppData              mediasoup.H
}

// ProduceData creates a data producer; After creates its data consumers on
// every other joined peer whose consuming transport has SCTP.
func (p *Peer) ProduceData(ctx context.Context, req ProduceDataRequest) (string, After, error) {
	r := p.room
	t, err := p.producingTransport(req.TransportID, func() int { return len(p.dataProds) },
		r.m.opts.MaxDataProducersPerPeer, "data producers")
	if err != nil {
		return "", nil, err
	}
	if req.SctpStreamParameters == nil && t.Type() == mediasoup.TransportWebRTC {
		return "", nil, errorf(ErrBadRequest, "sctpStreamParameters is required on a WebRTC transport")
	}
	d, err := t.ProduceDataContext(ctx, &mediasoup.DataProducerOptions{
		SctpStreamParameters: req.SctpStreamParameters, Label: req.Label, Protocol: req.Protocol,
		AppData: withPeerID(req.AppData, p.id),
	})
	if err != nil {
		return "", nil, workerError("produceData", err)
	}
	var targets []*Peer
	if !adopt(p, p.dataProds, d, func() { targets = r.joinedLocked() }) {
		return "", nil, ErrPeerClosed
	}
	return d.Id(), func() {
		for _, q := range targets {
			if q != p {
				r.m.spawn(func() { q.consumeData(p, d) })
			}
		}
	}, nil
}

// consumeData creates p's data consumer of d and announces it with
// newDataConsumer; a client that rejects it (or never answers) keeps none.
func (p *Peer) consumeData(owner *Peer, d *mediasoup.DataProducer) {
	if p.IsBroadcaster() {
		return // broadcasters consume explicitly
	}
	r := p.room
	r.mu.Lock()
	if p.closed || !p.joined || d.Closed() {
		r.mu.Unlock()
		return
	}
	t := p.consumingTransportLocked()
	from, to := owner.router, p.router
	r.mu.Unlock()
	if t == nil || t.Data().WebRtcTransportData == nil || t.Data().WebRtcTransportData.SctpParameters == nil {
		return
	}
	if !p.pipeForConsume(d.Id(), true, from, to) {
		return
	}
	// A worker turn, as for media (workerDo): a room's fan-out of data
	// consumers must not flood the worker's channel either.
	var dc *mediasoup.DataConsumer
	err := workerDo(to, func(wctx context.Context) error {
		return r.consuming(d.Id(), func() (err error) {
			dc, err = t.ConsumeDataContext(wctx, &mediasoup.DataConsumerOptions{
				DataProducerId: d.Id(), AppData: mediasoup.H{"peerId": p.id, "dataProducerPeerId": owner.id},
			})
			return err
		})
	})
	if err != nil {
		if errors.Is(err, mediasoup.ErrNotFound) { // the data producer closed meanwhile
			p.log.Debug("consumeData: data producer closed meanwhile", zap.String("dataProducer", d.Id()), zap.Error(err))
		} else {
			p.log.Warn("consumeData failed", zap.String("dataProducer", d.Id()), zap.Error(err))
		}
		return
	}
	if !adopt(p, p.dataConsumes, dc, nil) {
		return
	}
	id := dc.Id()
	dc.OnDataProducerClose(func(context.Context) {
		p.notify("dataConsumerClosed", mediasoup.H{"dataConsumerId": id})
	})
	ctx, cancel := context.WithTimeout(context.Background(), r.m.opts.ServerRequestTimeout)
	defer cancel()
	_, err = p.conn.Request(ctx, "newDataConsumer", mediasoup.H{
		"peerId": owner.id, "dataProducerId": d.Id(), "id": id,
		"sctpStreamParameters": dc.SctpStreamParameters(), "label": dc.Label(), "protocol": dc.Protocol(),
		"appData": d.AppData(),
	})
	if err != nil {
		p.log.Debug("newDataConsumer not accepted: closing it", zap.String("dataConsumer", id), zap.Error(err))
		_ = dc.Close()
	}
}

// DataProducerStats returns the worker's stats of one of the peer's data producers.
func (p *Peer) DataProducerStats(ctx context.Context, id string) (any, error) {
	r := p.room
	r.mu.Lock()
	d, err := lookup(r, p, p.dataProds, "dataProducer", id)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s, err := d.GetStatsContext(ctx)
	return s, workerError("getDataProducerStats", err)
}

// DataConsumerStats returns the worker's stats of one of the peer's data consumers.
func (p *Peer) DataConsumerStats(ctx context.Context, id string) (any, error) {
	r := p.room
	r.mu.Lock()
	d, err := lookup(r, p, p.dataConsumes, "dataConsumer", id)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s, err := d.GetStatsContext(ctx)
	return s, workerError("getDataConsumerStats", err)
}

// ChangeDisplayName renames a joined peer and tells the others.
func (p *Peer) ChangeDisplayName(name string) error {
	r := p.room
	r.mu.Lock()
	if err := p.requireJoinedLocked(); err != nil {
		r.mu.Unlock()
		return err
	}
	old := p.displayName
	p.displayName = name
	p.setInfoJSONLocked()
	r.mu.Unlock()
	r.broadcast(p, "peerDisplayNameChanged", mediasoup.H{"peerId": p.id, "displayName": name, "oldDisplayName": old})
	return nil
}
