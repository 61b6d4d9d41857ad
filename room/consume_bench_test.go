package room

// The per-consumer cost of the full mesh (P peers: P×(P−1)×2 consumers):
// the room's consume (what join and produce spawn for every pair) against
// the same worker operations straight through mediasoup-go, the floor any
// Go server on mediasoup-go pays. Both create a paused consumer and resume
// it (two worker round trips); the room also decodes the consuming peer's
// RTP capabilities, records ownership, registers the consumer's event
// handlers and asks the client with newConsumer (answered at once by an
// in-memory PeerConn, with no encoding: signaling.BenchmarkEncodeNewConsumer
// is that part). One real worker (MEDIASOUP_WORKER_BIN or bin/mediasoup-worker).
//
//	go test -run XXX -bench Consume -benchmem ./room/

import (
	"context"
	"encoding/json"
	"testing"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
)

const consumeBenchRtpParameters = `{"mid":"1","codecs":[{"mimeType":"video/VP8","payloadType":96,"clockRate":90000,"rtcpFeedback":[{"type":"nack"},{"type":"nack","parameter":"pli"},{"type":"ccm","parameter":"fir"},{"type":"goog-remb"},{"type":"transport-cc"}]}],"headerExtensions":[],"encodings":[{"ssrc":22222222}],"rtcp":{"cname":"bench","reducedSize":true}}`

const consumeBenchBatch = 500

func BenchmarkConsume(b *testing.B) {
	m, _ := newTestManager(b, 1, Options{})
	ctx := context.Background()

	// The producing peer.
	owner, err := m.Connect(ctx, "bench", "owner", &broadcastBenchConn{})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := owner.Join(JoinRequest{DisplayName: "owner"}); err != nil {
		b.Fatal(err)
	}
	send, err := owner.CreateWebRtcTransport(ctx, TransportRequest{Producing: true})
	if err != nil {
		b.Fatal(err)
	}
	var rp mediasoup.RtpParameters
	if err := json.Unmarshal([]byte(consumeBenchRtpParameters), &rp); err != nil {
		b.Fatal(err)
	}
	pid, _, err := owner.Produce(ctx, ProduceRequest{TransportID: send.ID, Kind: mediasoup.MediaKindVideo, RtpParameters: &rp})
	if err != nil {
		b.Fatal(err)
	}
	r := owner.Room()
	r.mu.Lock()
	producer := owner.producers[pid]
	r.mu.Unlock()

	// The consuming peer joins with the router's capabilities (what
	// cmd/loadtest sends; a browser's are of the same size).
	capsJSON, err := json.Marshal(r.router.RtpCapabilities())
	if err != nil {
		b.Fatal(err)
	}
	joinCaps := new(mediasoup.RtpCapabilities)
	if err := json.Unmarshal(capsJSON, joinCaps); err != nil {
		b.Fatal(err)
	}
	q, err := m.Connect(ctx, "bench", "consumer", &broadcastBenchConn{})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := q.Join(JoinRequest{DisplayName: "consumer", RtpCapabilities: joinCaps}); err != nil {
		b.Fatal(err)
	}
	if _, err := q.CreateWebRtcTransport(ctx, TransportRequest{Consuming: true}); err != nil {
		b.Fatal(err)
	}

	// Consumers are closed every consumeBenchBatch iterations, off the
	// clock: a transport with ten thousand consumers takes the worker more
	// than mediasoup-go's 5 s request timeout to close, and mediasoup-go
	// (v2.4.1, still v2.6.0) then hangs that request forever (see
	// BENCHMARKS.md).
	b.Run("room", func(b *testing.B) {
		made := 0
		b.ReportAllocs()
		for b.Loop() {
			q.consume(owner, producer)
			if made++; made%consumeBenchBatch == 0 {
				b.StopTimer()
				r.mu.Lock()
				cs := make([]*mediasoup.Consumer, 0, len(q.consumers))
				for _, c := range q.consumers {
					cs = append(cs, c)
				}
				r.mu.Unlock()
				if len(cs) < consumeBenchBatch {
					b.Fatalf("%d consumers held, want at least %d", len(cs), consumeBenchBatch)
				}
				for _, c := range cs {
					_ = c.Close()
				}
				b.StartTimer()
			}
		}
	})

	b.Run("direct", func(b *testing.B) {
		rt := r.router
		t, err := rt.CreateWebRtcTransportContext(ctx, &mediasoup.WebRtcTransportOptions{
			WebRtcServer: rt.WebRtcServer, EnableTcp: true, PreferUdp: true, EnableSctp: true,
		})
		if err != nil {
			b.Fatal(err)
		}
		defer t.Close()
		caps := new(mediasoup.RtpCapabilities)
		if err := json.Unmarshal(capsJSON, caps); err != nil {
			b.Fatal(err)
		}
		var made []*mediasoup.Consumer
		b.ReportAllocs()
		for b.Loop() {
			if !rt.CanConsume(pid, caps) {
				b.Fatal("cannot consume")
			}
			c, err := t.ConsumeContext(ctx, &mediasoup.ConsumerOptions{ProducerId: pid, RtpCapabilities: caps, Paused: true})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.ResumeContext(ctx); err != nil {
				b.Fatal(err)
			}
			if made = append(made, c); len(made) == consumeBenchBatch {
				b.StopTimer()
				for _, c := range made {
					_ = c.Close()
				}
				made = made[:0]
				b.StartTimer()
			}
		}
	})

	// What a consume used to pay for its own copy of the consuming peer's
	// capabilities: a JSON decode (a third of the room's CPU per consumer),
	// then CloneRtpCapabilities. Now the copy is made once, at join
	// (ConsumingRtpCapabilities), and shared.
	b.Run("capsDecode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(capsJSON)))
		for b.Loop() {
			caps := new(mediasoup.RtpCapabilities)
			if err := json.Unmarshal(capsJSON, caps); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("capsClone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = CloneRtpCapabilities(q.rtpCaps)
		}
	})
}
