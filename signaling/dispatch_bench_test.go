package signaling

// Benchmarks of the signaling hot paths that protoo_test.go does not cover:
// the frames of the full-mesh setup (produce in, newConsumer out, its
// answer in), the stats answer of the closed loop, the handlers table's
// decoding and validation, one worker round trip through a handler against
// the same call straight through mediasoup-go (the floor), and the
// per-connection half of a notification fan-out.
//
//	go test -run XXX -bench . -benchmem ./signaling/
//
// The dispatch benchmarks need a real room (a real router), so they start
// one real mediasoup worker (MEDIASOUP_WORKER_BIN or bin/mediasoup-worker).

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// dispatchBenchRtpParameters is what mediasoup-client 3 sends for a Chrome
// VP8 track with three simulcast layers.
const dispatchBenchRtpParameters = `{"codecs":[{"mimeType":"video/VP8","payloadType":96,"clockRate":90000,"parameters":{},"rtcpFeedback":[{"type":"goog-remb","parameter":""},{"type":"transport-cc","parameter":""},{"type":"ccm","parameter":"fir"},{"type":"nack","parameter":""},{"type":"nack","parameter":"pli"}]},{"mimeType":"video/rtx","payloadType":97,"clockRate":90000,"parameters":{"apt":96},"rtcpFeedback":[]}],"headerExtensions":[{"uri":"urn:ietf:params:rtp-hdrext:sdes:mid","id":4,"encrypt":false,"parameters":{}},{"uri":"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id","id":10,"encrypt":false,"parameters":{}},{"uri":"urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id","id":11,"encrypt":false,"parameters":{}},{"uri":"http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time","id":2,"encrypt":false,"parameters":{}},{"uri":"http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01","id":3,"encrypt":false,"parameters":{}},{"uri":"urn:3gpp:video-orientation","id":13,"encrypt":false,"parameters":{}},{"uri":"urn:ietf:params:rtp-hdrext:toffset","id":14,"encrypt":false,"parameters":{}}],"encodings":[{"active":true,"scaleResolutionDownBy":4,"maxBitrate":500000,"rid":"r0","scalabilityMode":"L1T3","dtx":false},{"active":true,"scaleResolutionDownBy":2,"maxBitrate":1000000,"rid":"r1","scalabilityMode":"L1T3","dtx":false},{"active":true,"scaleResolutionDownBy":1,"maxBitrate":5000000,"rid":"r2","scalabilityMode":"L1T3","dtx":false}],"rtcp":{"cname":"hBrEcLGU7Ub7jH0T","reducedSize":true},"mid":"1"}`

var dispatchBenchProduce = []byte(`{"transportId":"8d4c1a7e-3c4b-4b8e-9a51-0f2d5d1f7c11","kind":"video","rtpParameters":` +
	dispatchBenchRtpParameters + `,"appData":{"share":false}}`)

// ---- codec: the frames of a full-mesh setup ----

func BenchmarkParseProduceRequest(b *testing.B) {
	frame := []byte(`{"request":true,"id":5302712,"method":"produce","data":` + string(dispatchBenchProduce) + `}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := ParseMessage(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// The client's answer to newConsumer: one per consumer.
func BenchmarkParseResponseOK(b *testing.B) {
	frame := []byte(`{"response":true,"id":1234,"ok":true,"data":{}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := ParseMessage(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// newConsumer as the room sends it (a mediasoup.H with the consumer's
// typed RtpParameters): one per consumer, P² per room.
func BenchmarkEncodeNewConsumer(b *testing.B) {
	var rp mediasoup.RtpParameters
	if err := json.Unmarshal([]byte(dispatchBenchRtpParameters), &rp); err != nil {
		b.Fatal(err)
	}
	data := mediasoup.H{
		"peerId": "peer-17", "producerId": "8d4c1a7e-3c4b-4b8e-9a51-0f2d5d1f7c11", "id": "1f0c9a52-0d6b-4c3a-9a8e-4a3f2b1c0d9e",
		"kind": mediasoup.MediaKindVideo, "rtpParameters": &rp, "type": mediasoup.ConsumerSimulcast,
		"appData": mediasoup.H{"peerId": "peer-17", "share": false}, "producerPaused": false,
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeRequest(4711, "newConsumer", data); err != nil {
			b.Fatal(err)
		}
	}
}

// The 429 answer: what a client over its request rate costs per request.
func BenchmarkEncodeResponseError(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeResponseError(5302711, 429, "rate limited")
	}
}

// ---- dispatch: the handlers table with a real room ----

// dispatchBenchConn is a PeerConn that drops notifications and accepts
// every server request.
type dispatchBenchConn struct{}

func (dispatchBenchConn) Notify(string, any) error              { return nil }
func (dispatchBenchConn) NotifyShared(*room.Notification) error { return nil }
func (dispatchBenchConn) Request(context.Context, string, any) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (dispatchBenchConn) Close(int, string) {}

type dispatchBenchEnv struct {
	rooms *room.Manager
	room  *room.Room
	peer  *room.Peer // joined, with a producing transport
	fresh *room.Peer // connected, not joined
	tid   string     // peer's transport
}

// newDispatchBenchEnv starts one real worker and a room with two peers.
func newDispatchBenchEnv(b *testing.B) *dispatchBenchEnv {
	b.Helper()
	log := zap.NewNop()
	pool, err := worker.New(worker.Options{Bin: testutil.WorkerBin(b), Count: 1, RtcPort: testutil.FreePorts(b, 1),
		ListenIP: "127.0.0.1", Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	rooms := room.NewManager(pool, room.Options{Logger: log})
	b.Cleanup(func() {
		rooms.CloseAll(room.CloseKicked, "benchmark over")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rooms.Wait(ctx)
		pool.Close()
	})
	ctx := context.Background()
	e := &dispatchBenchEnv{rooms: rooms}
	if e.peer, err = rooms.Connect(ctx, "bench", "joined", dispatchBenchConn{}); err != nil {
		b.Fatal(err)
	}
	if e.fresh, err = rooms.Connect(ctx, "bench", "fresh", dispatchBenchConn{}); err != nil {
		b.Fatal(err)
	}
	e.room = rooms.Room("bench")
	if _, _, err := e.peer.Join(room.JoinRequest{DisplayName: "joined"}); err != nil {
		b.Fatal(err)
	}
	info, err := e.peer.CreateWebRtcTransport(ctx, room.TransportRequest{Producing: true})
	if err != nil {
		b.Fatal(err)
	}
	e.tid = info.ID
	return e
}

// dispatch runs one request through the handlers table as the session does
// and returns the result and the protocol error code (0: success).
func dispatch(p *room.Peer, method string, data json.RawMessage) (any, int) {
	h, ok := handlers[method]
	if !ok {
		return nil, 405
	}
	res, _, err := h(context.Background(), p, data)
	if err != nil {
		code, _ := ProtocolError(err)
		return nil, code
	}
	return res, 0
}

// BenchmarkDispatch measures the handlers table: lookup, decoding and
// validation of each request, up to the room's cheap state check that
// refuses it (no worker call): produce and join by a peer in the wrong
// state (409), connect and stats of an unknown transport (404).
func BenchmarkDispatch(b *testing.B) {
	e := newDispatchBenchEnv(b)
	caps, err := json.Marshal(e.peer.RouterRtpCapabilities())
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name, method string
		peer         *room.Peer
		data         []byte
		want         int
	}{
		{"produce", "produce", e.fresh, dispatchBenchProduce, 409},
		{"join", "join", e.peer, []byte(`{"displayName":"Alice","device":{"flag":"chrome","name":"Chrome","version":"140.0"},"rtpCapabilities":` +
			string(caps) + `}`), 409},
		{"connectWebRtcTransport", "connectWebRtcTransport", e.fresh, []byte(`{"transportId":"8d4c1a7e-3c4b-4b8e-9a51-0f2d5d1f7c11","dtlsParameters":{"role":"client","fingerprints":[{"algorithm":"sha-256","value":"82:5A:68:3D:36:C3:0A:DE:AF:E7:32:43:D2:88:83:57:AC:2D:65:E5:80:C4:B6:FB:AF:1A:A0:21:9F:6D:0C:AD"}]}}`), 404},
		{"getTransportStats", "getTransportStats", e.fresh, []byte(`{"transportId":"8d4c1a7e-3c4b-4b8e-9a51-0f2d5d1f7c11"}`), 404},
		{"unknownMethod", "noSuchMethod", e.fresh, []byte(`{}`), 405},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, code := dispatch(c.peer, c.method, c.data); code != c.want {
				b.Fatalf("%s: code %d, want %d", c.method, code, c.want)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				dispatch(c.peer, c.method, c.data)
			}
		})
	}
}

// BenchmarkStatsRoundTrip is the closed loop's request, getTransportStats,
// with one worker round trip:
//
//   - direct: mediasoup-go's Transport.GetStatsContext on a transport of the
//     same router (the floor: what any Go server on mediasoup-go pays);
//   - handler: through our handlers table and room (decode, ownership
//     lookup, the same worker call);
//   - handler+encode: plus encoding the response frame, i.e. everything the
//     server does for the request but the WebSocket read and write.
func BenchmarkStatsRoundTrip(b *testing.B) {
	e := newDispatchBenchEnv(b)
	rt := e.room.Router()
	direct, err := rt.CreateWebRtcTransportContext(context.Background(), &mediasoup.WebRtcTransportOptions{
		WebRtcServer: rt.WebRtcServer, EnableTcp: true, PreferUdp: true, EnableSctp: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	data := json.RawMessage(`{"transportId":` + strconv.Quote(e.tid) + `}`)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := direct.GetStatsContext(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, code := dispatch(e.peer, "getTransportStats", data); code != 0 {
				b.Fatalf("code %d", code)
			}
		}
	})
	b.Run("handler+encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, code := dispatch(e.peer, "getTransportStats", data)
			if code != 0 {
				b.Fatalf("code %d", code)
			}
			if _, err := EncodeResponseOK(77, res); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeTransportStats encodes a real getTransportStats answer
// (the closed loop's response).
func BenchmarkEncodeTransportStats(b *testing.B) {
	e := newDispatchBenchEnv(b)
	res, code := dispatch(e.peer, "getTransportStats", json.RawMessage(`{"transportId":`+strconv.Quote(e.tid)+`}`))
	if code != 0 {
		b.Fatalf("code %d", code)
	}
	frame, err := EncodeResponseOK(77, res)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := EncodeResponseOK(77, res); err != nil {
			b.Fatal(err)
		}
	}
}

// ---- fan-out, the connection half ----

// BenchmarkConnNotifyFanout sends one notification to N connections, as a
// room's broadcast does: each Conn.Notify encodes the data on its own and
// queues the frame (the writer goroutines are not running: the queues are
// drained in the loop, which costs a channel receive per frame). The
// room's half (the peer loop) is room.BenchmarkBroadcast; a broadcast costs
// the sum of both.
func BenchmarkConnNotifyFanout(b *testing.B) {
	h := NewWebSocketHandler(nil, DefaultLimits(), zap.NewNop()).(*wsHandler)
	data := map[string]any{"peerId": "peer-17", "volume": -42}
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			conns := make([]*Conn, n)
			for i := range conns {
				conns[i] = h.newConn("bench", fmt.Sprintf("peer-%d", i), "127.0.0.1:1")
			}
			b.ReportAllocs()
			for b.Loop() {
				for _, c := range conns {
					if err := c.Notify("activeSpeaker", data); err != nil {
						b.Fatal(err)
					}
				}
				for _, c := range conns {
					c.out.take(nil)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/peer")
			for _, c := range conns {
				c.cancel()
			}
		})
	}
}
