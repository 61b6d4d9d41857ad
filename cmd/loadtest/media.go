package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
)

// Mode media: every peer is a real WebRTC client (client.Join: pion
// PeerConnections, ICE, DTLS, SRTP) sending synthetic Opus audio and VP8
// video, and receiving every other peer's. Setup, joins and consumers are
// counted as in signaling mode; on top, the run waits until every consumer
// has received its first RTP packet (the media mesh) and measures the media
// received during the closed loop.

// MediaStats is what mode media adds to the report.
type MediaStats struct {
	// From the first dial until every expected consumer received its first
	// RTP packet (0: not all did within -timeout).
	MeshMs float64 `json:"meshMs"`
	// Consumers that received at least one packet.
	ConsumersWithMedia int `json:"consumersWithMedia"`
	// Media received by all consumers during the closed loop.
	PacketsPerSec float64 `json:"packetsPerSec"`
	KbitPerSec    float64 `json:"kbitPerSec"`
	// Media sent by all producers over the whole run.
	PacketsSent uint64 `json:"packetsSent"`
}

// mediaSetup is doSetup with a real WebRTC client. Transports connect on
// first use (produce, first consumer), so join latency here is dial,
// getRouterRtpCapabilities, two transports created and join.
func (p *lpeer) mediaSetup(ctx context.Context) error {
	lt := p.lt
	t0 := time.Now()
	mp, err := client.Join(ctx, lt.cfg.URL, p.room, p.id, client.JoinOptions{
		DisplayName: p.id, Device: client.Device{Flag: "loadtest", Name: "mediasoup-server loadtest", Version: "1"},
		Produce: true, Consume: true,
		Dial: &client.DialOptions{RequestTimeout: lt.cfg.RequestTimeout, NotificationBacklog: -1, OnNotification: lt.onNotification},
	})
	lt.rec.add("join (client.Join)", time.Since(t0), err)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", p.room, p.id, err)
	}
	p.joinedIn = time.Since(t0)
	p.media, p.conn = mp, mp.Conn()
	p.send.ID = mp.SendTransportID()
	lt.joined.Add(1)
	mp.OnConsumer(func(c *client.Consumer) { p.gotConsumer(c.ProducerID()) })
	t1 := time.Now()
	audio, err := mp.ProduceAudio(ctx, client.AudioOptions{})
	lt.rec.add("produce audio (connects)", time.Since(t1), err)
	if err != nil {
		return fmt.Errorf("%s/%s: produce audio: %w", p.room, p.id, err)
	}
	p.producers = append(p.producers, audio)
	t1 = time.Now()
	video, err := mp.ProduceVideo(ctx, client.VideoOptions{})
	lt.rec.add("produce video", time.Since(t1), err)
	if err != nil {
		return fmt.Errorf("%s/%s: produce video: %w", p.room, p.id, err)
	}
	p.producers = append(p.producers, video)
	lt.produced()
	return nil
}

// mediaTotals sums what the peers' consumers received, and the first and
// last first-packet times.
func (lt *loadtest) mediaTotals() (withMedia int, lastFirst time.Time, packets, bytes uint64) {
	for _, p := range lt.peers {
		if p.media == nil {
			continue
		}
		for _, c := range p.media.Consumers() {
			s := c.Stats()
			packets += s.Packets
			bytes += s.Bytes
			if !s.FirstPacket.IsZero() {
				withMedia++
				if s.FirstPacket.After(lastFirst) {
					lastFirst = s.FirstPacket
				}
			}
		}
	}
	return
}

// waitMediaMesh waits until every expected consumer received a packet, or
// ctx ends.
func (lt *loadtest) waitMediaMesh(ctx context.Context, expected int) *MediaStats {
	st := &MediaStats{}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		n, last, _, _ := lt.mediaTotals()
		st.ConsumersWithMedia = n
		if n >= expected {
			st.MeshMs = ms(last.Sub(lt.start))
			return st
		}
		select {
		case <-ctx.Done():
			lt.fail("media: %d of %d consumers received no RTP within -timeout", expected-n, expected)
			return st
		case <-t.C:
		}
	}
}

func (lt *loadtest) packetsSent() uint64 {
	var n uint64
	for _, p := range lt.peers {
		if p.media == nil {
			continue
		}
		for _, pr := range p.producers {
			n += pr.Stats().Packets
		}
	}
	return n
}
