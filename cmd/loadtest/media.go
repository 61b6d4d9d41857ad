package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/pion/rtp"
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
	// Loss over the whole run, from each consumer's RTP sequence numbers
	// (mediasoup keeps a gap where a packet is missing): all consumers
	// together, and the worst single consumer, in percent.
	LossPct      float64 `json:"lossPct"`
	WorstLossPct float64 `json:"worstConsumerLossPct"`
}

// seqTracker counts the packets of one consumer and the span of their
// (unwrapped) sequence numbers: span − received is what was lost.
type seqTracker struct {
	mu       sync.Mutex
	started  bool
	first    int64
	last     int64 // highest unwrapped sequence number
	received int64
}

func (s *seqTracker) add(seq uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started, s.first, s.last = true, int64(seq), int64(seq)
		s.received = 1
		return
	}
	// Unwrap against the highest number seen: the nearest value with these
	// low 16 bits.
	ext := s.last&^0xffff | int64(seq)
	switch {
	case ext < s.last-0x8000:
		ext += 0x10000
	case ext > s.last+0x8000:
		ext -= 0x10000
	}
	if ext > s.last {
		s.last = ext
	}
	if ext < s.first {
		s.first = ext
	}
	s.received++
}

// expectedLost is how many packets the span covers and how many of them
// never arrived (duplicates can make the received count exceed the span).
func (s *seqTracker) expectedLost() (expected, lost int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return 0, 0
	}
	expected = s.last - s.first + 1
	return expected, max(0, expected-s.received)
}

// loss sums the consumers' loss and finds the worst one.
func (lt *loadtest) loss() (total, worst float64) {
	var expected, lost int64
	for _, p := range lt.peers {
		p.mu.Lock()
		trackers := append([]*seqTracker(nil), p.seqs...)
		p.mu.Unlock()
		for _, s := range trackers {
			e, l := s.expectedLost()
			expected += e
			lost += l
			if e > 0 {
				worst = max(worst, 100*float64(l)/float64(e))
			}
		}
	}
	if expected > 0 {
		total = 100 * float64(lost) / float64(expected)
	}
	return round3(total), round3(worst)
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// mediaSetup is doSetup with a real WebRTC client. Transports connect on
// first use (produce, first consumer), so join latency here is dial,
// getRouterRtpCapabilities, two transports created and join.
func (p *lpeer) mediaSetup(ctx context.Context) error {
	lt := p.lt
	t0 := time.Now()
	mp, err := client.Join(ctx, lt.cfg.URL, p.room, p.id, client.JoinOptions{
		DisplayName: p.id, Device: client.Device{Flag: "loadtest", Name: "mediasoup-server loadtest", Version: "1"},
		Produce: p.produces, Consume: true,
		Dial: &client.DialOptions{RequestTimeout: lt.cfg.RequestTimeout, NotificationBacklog: -1, OnNotification: lt.onNotification},
	})
	lt.rec.add("join (client.Join)", time.Since(t0), err)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", p.room, p.id, err)
	}
	p.joinedIn = time.Since(t0)
	p.media, p.conn = mp, mp.Conn()
	p.send.ID, p.recv.ID = mp.SendTransportID(), mp.RecvTransportID()
	lt.joined.Add(1)
	mp.OnConsumer(func(c *client.Consumer) {
		tr := &seqTracker{}
		p.mu.Lock()
		p.seqs = append(p.seqs, tr)
		p.mu.Unlock()
		c.OnRTP(func(pkt *rtp.Packet) { tr.add(pkt.SequenceNumber) })
		p.gotConsumer(c.ProducerID())
	})
	if !p.produces {
		return nil
	}
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
