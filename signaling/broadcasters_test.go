package signaling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/pion/rtp"
)

// api does one request to the broadcaster HTTP API. body is sent as is when
// it is a string, as JSON otherwise (nil: no body). A 200 answer must be
// JSON and is decoded into out (when not nil). It returns the status and
// the body (the reason of an error).
func (e *env) api(method, path string, body, out any) (int, string) {
	e.t.Helper()
	return testutil.API(e.t, method, e.url+path, body, out)
}

// mustAPI asserts a 200 answer.
func (e *env) mustAPI(method, path string, body, out any) {
	e.t.Helper()
	if code, text := e.api(method, path, body, out); code != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, path, code, text)
	}
}

// wantAPI asserts an error answer with this status, in plain text, whose
// reason contains want; it returns the reason.
func (e *env) wantAPI(code int, method, path string, body any, want string) string {
	e.t.Helper()
	got, text := e.api(method, path, body, nil)
	if got != code || !strings.Contains(text, want) {
		e.t.Fatalf("%s %s %v: got %d %q, want %d with %q", method, path, body, got, text, code, want)
	}
	if strings.Count(strings.TrimSuffix(text, "\n"), "\n") != 0 {
		e.t.Fatalf("%s %s: reason is not one line: %q", method, path, text)
	}
	return text
}

// broadcaster creates broadcaster id in roomID, consuming with caps.
func (e *env) broadcaster(roomID, id string, caps json.RawMessage) client.JoinResponse {
	e.t.Helper()
	var res client.JoinResponse
	e.mustAPI("POST", "/rooms/"+roomID+"/broadcasters", map[string]any{
		"id": id, "displayName": "Broadcaster " + id,
		"device":          map[string]string{"flag": "spoofed", "name": "ffmpeg", "version": "7"},
		"rtpCapabilities": caps,
	}, &res)
	return res
}

// plainTransport creates a plain transport for a broadcaster.
func (e *env) plainTransport(base string, comedia bool) room.PlainTransportInfo {
	e.t.Helper()
	var tr room.PlainTransportInfo
	e.mustAPI("POST", base+"/transports", map[string]any{"type": "plain", "comedia": comedia, "rtcpMux": true}, &tr)
	if tr.ID == "" || tr.IP != "127.0.0.1" || tr.Port == 0 || tr.RtcpPort != 0 {
		e.t.Fatalf("plain transport: %+v", tr)
	}
	return tr
}

func opusParams(ssrc uint32) map[string]any {
	return map[string]any{
		"codecs":    []map[string]any{{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}},
		"encodings": []map[string]any{{"ssrc": ssrc}},
		"rtcp":      map[string]any{"cname": "broadcaster"},
	}
}

// producerPackets is the packet count the worker reports for a producer.
func producerPackets(t *testing.T, p *room.Peer, producerID string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	stats, err := p.ProducerStats(ctx, producerID)
	if err != nil {
		t.Fatalf("producer stats: %v", err)
	}
	var n uint64
	switch s := stats.(type) {
	case []*mediasoup.ProducerStat:
		for _, st := range s {
			if st.ByteCount > 0 {
				n += st.PacketCount
			}
		}
	default:
		t.Fatalf("producer stats of type %T", stats)
	}
	return n
}

func TestBroadcasterPlainRtpEndToEnd(t *testing.T) {
	e := newEnv(t, 1)
	b := e.dial("R", "B")
	b.setup()
	b.join("Bob")

	var caps mediasoup.RtpCapabilities
	e.mustAPI("GET", "/rooms/R", nil, &caps)
	if len(caps.Codecs) == 0 {
		t.Fatalf("router capabilities without codecs: %+v", caps)
	}
	res := e.broadcaster("R", "bc", b.caps)
	if len(res.Peers) != 1 || res.Peers[0].ID != "B" || res.Peers[0].DisplayName != "Bob" {
		t.Fatalf("broadcaster's join answer: %+v", res.Peers)
	}
	var np client.PeerInfo
	_ = json.Unmarshal(b.waitNote("newPeer", field("id", "bc")), &np)
	if np.Device.Flag != "broadcaster" || np.Device.Name != "ffmpeg" || np.DisplayName != "Broadcaster bc" {
		t.Fatalf("newPeer: %+v", np)
	}

	base := "/rooms/R/broadcasters/bc"
	tr := e.plainTransport(base, true)
	const ssrcA = 0x1234abcd
	var prod client.IDResponse
	e.mustAPI("POST", base+"/transports/"+tr.ID+"/producers", map[string]any{
		"kind": "audio", "rtpParameters": opusParams(ssrcA), "appData": map[string]any{"source": "mic"},
	}, &prod)
	if prod.ID == "" {
		t.Fatal("no producer id")
	}
	nc := b.nextConsumer()
	if nc.ProducerID != prod.ID || nc.PeerID != "bc" || nc.Kind != "audio" {
		t.Fatalf("B's newConsumer: %+v", nc)
	}

	// RTP over UDP to the transport; comedia learns our address from it.
	conn, err := net.Dial("udp", net.JoinHostPort(tr.IP, strconv.Itoa(int(tr.Port))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seq := uint16(1000)
	send := func() {
		pkt := rtp.Packet{
			Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq,
				Timestamp: uint32(seq) * 960, SSRC: ssrcA},
			Payload: bytes.Repeat([]byte{0xfc, 0xff, 0xfe}, 20),
		}
		raw, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(raw); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	for range 20 {
		send()
	}
	p := e.rooms.Room("R").Peer("bc")
	testutil.Eventually(t, settle, func() bool {
		if producerPackets(t, p, prod.ID) > 0 {
			return true
		}
		send() // UDP may drop: keep the stream going while polling
		return false
	}, "the producer received no RTP")
}

func TestBroadcasterConsumesPeerProducer(t *testing.T) {
	e := newEnv(t, 1)
	b := e.dial("R2", "B")
	b.setup()
	b.join("Bob")
	video := b.produce("video")

	e.broadcaster("R2", "bc", b.caps)
	base := "/rooms/R2/broadcasters/bc"
	tr := e.plainTransport(base, false)
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.LocalAddr().(*net.UDPAddr).Port
	e.mustAPI("POST", base+"/transports/"+tr.ID+"/connect", map[string]any{"ip": "127.0.0.1", "port": port}, nil)

	var ci room.ConsumerInfo
	e.mustAPI("POST", base+"/transports/"+tr.ID+"/consume?producerId="+video, nil, &ci)
	if ci.ID == "" || ci.ProducerID != video || ci.Kind != mediasoup.MediaKindVideo || ci.RtpParameters == nil ||
		len(ci.RtpParameters.Codecs) == 0 || !strings.EqualFold(ci.RtpParameters.Codecs[0].MimeType, "video/VP8") {
		t.Fatalf("consume answer: %+v", ci)
	}
	_, _, counts := e.rooms.Room("R2").Peer("bc").Snapshot()
	if counts.Consumers != 1 || counts.Transports != 1 {
		t.Fatalf("broadcaster owns %+v", counts)
	}
	// consume names its producer in the query.
	e.wantAPI(400, "POST", base+"/transports/"+tr.ID+"/consume", nil, "producerId")
}

func TestBroadcasterDeleteClosesEverything(t *testing.T) {
	e := newEnv(t, 1)
	b := e.dial("R3", "B")
	b.setup()
	b.join("Bob")
	e.broadcaster("R3", "bc", nil)
	base := "/rooms/R3/broadcasters/bc"
	tr := e.plainTransport(base, true)
	var prod client.IDResponse
	e.mustAPI("POST", base+"/transports/"+tr.ID+"/producers", map[string]any{"kind": "audio", "rtpParameters": opusParams(777)}, &prod)
	nc := b.nextConsumer()

	var out map[string]any
	e.mustAPI("DELETE", base, nil, &out)
	if len(out) != 0 {
		t.Fatalf("DELETE answered %v", out)
	}
	b.waitNote("peerClosed", field("peerId", "bc"))
	b.waitNote("consumerClosed", field("consumerId", nc.ID))
	r := e.rooms.Room("R3")
	if r.Peer("bc") != nil {
		t.Fatal("the broadcaster is still in the room")
	}
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	dump, err := r.Router().DumpContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(dump.TransportIds, tr.ID) || len(dump.TransportIds) != 2 {
		t.Fatalf("router transports after DELETE: %v (B has 2, the broadcaster's was %s)", dump.TransportIds, tr.ID)
	}
	e.wantAPI(404, "DELETE", base, nil, "bc")
	e.wantAPI(404, "POST", base+"/transports", map[string]any{"type": "plain"}, "bc")

	// A room whose last peer was a broadcaster closes with it.
	e.broadcaster("solo", "bc", nil)
	e.mustAPI("DELETE", "/rooms/solo/broadcasters/bc", nil, nil)
	testutil.Eventually(t, settle, func() bool { return e.rooms.Room("solo") == nil }, "room solo did not close")
}

func TestBroadcasterErrors(t *testing.T) {
	e := newEnv(t, 1)
	e.wantAPI(404, "GET", "/rooms/nope", nil, "nope")
	if e.rooms.Room("nope") != nil {
		t.Fatal("GET created a room")
	}

	b := e.dial("R4", "B")
	b.setup()
	b.join("Bob")
	before := e.rooms.Room("R4").Peer("B")

	// B's id is taken (409), and B is out of this API's reach (404).
	e.wantAPI(409, "POST", "/rooms/R4/broadcasters", map[string]any{"id": "B", "displayName": "x"}, "B")
	bb := "/rooms/R4/broadcasters/B"
	tb := bb + "/transports/" + b.send.ID
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"DELETE", bb, nil},
		{"POST", bb + "/transports", map[string]any{"type": "plain"}},
		{"POST", tb + "/connect", map[string]any{"dtlsParameters": fingerprint}},
		{"POST", tb + "/producers", map[string]any{"kind": "audio", "rtpParameters": opusParams(55)}},
		{"POST", tb + "/consume?producerId=x", nil},
		{"POST", tb + "/consume/data", map[string]any{"dataProducerId": "x"}},
		{"POST", tb + "/produce/data", map[string]any{"sctpStreamParameters": map[string]any{"streamId": 1}}},
	} {
		e.wantAPI(404, c.method, c.path, c.body, "broadcaster")
	}
	select {
	case <-b.Done():
		t.Fatal("B was closed")
	default:
	}
	if p := e.rooms.Room("R4").Peer("B"); p != before {
		t.Fatal("B was replaced")
	}
	if _, joined, counts := before.Snapshot(); !joined || counts.Transports != 2 || counts.Producers != 0 {
		t.Fatalf("B was touched: joined %v, %+v", joined, counts)
	}
	b.produce("audio") // B still works

	// Malformed creates.
	create := "/rooms/R4/broadcasters"
	e.wantAPI(400, "POST", create, "{", "malformed")
	e.wantAPI(400, "POST", create, `[1]`, "malformed")
	e.wantAPI(400, "POST", create, map[string]any{"displayName": "x"}, "id")
	e.wantAPI(400, "POST", create, map[string]any{"id": 5, "displayName": "x"}, "id")
	e.wantAPI(400, "POST", create, map[string]any{"id": "has space", "displayName": "x"}, "id")
	e.wantAPI(400, "POST", create, map[string]any{"id": "bc"}, "displayName")
	e.wantAPI(413, "POST", create, `{"id":"bc","displayName":"`+strings.Repeat("x", 2<<20)+`"}`, "body")
	// A join that fails after admission leaves no peer (nor a room behind).
	e.wantAPI(400, "POST", "/rooms/fresh/broadcasters",
		map[string]any{"id": "bc", "displayName": strings.Repeat("x", 1000)}, "displayName")
	testutil.Eventually(t, settle, func() bool { return e.rooms.Room("fresh") == nil }, "room fresh left behind")

	// Routes on a real broadcaster.
	e.broadcaster("R4", "bc", b.caps)
	e.wantAPI(409, "POST", create, map[string]any{"id": "bc", "displayName": "again"}, "bc")
	base := "/rooms/R4/broadcasters/bc"
	tr := e.plainTransport(base, false)
	tp := base + "/transports/" + tr.ID
	e.wantAPI(404, "POST", tp+"/consume?producerId=unknown", nil, "unknown")
	e.wantAPI(404, "POST", tp+"/consume/data", map[string]any{"dataProducerId": "unknown"}, "unknown")
	e.wantAPI(404, "POST", base+"/transports/nope/consume?producerId=x", nil, "nope")
	e.wantAPI(400, "POST", tp+"/consume/data", nil, "dataProducerId")
	e.wantAPI(400, "POST", base+"/transports", map[string]any{"type": "quic"}, "type")
	e.wantAPI(400, "POST", base+"/transports", "nope", "malformed")
	e.wantAPI(400, "POST", tp+"/connect", map[string]any{}, "dtlsParameters")
	e.wantAPI(400, "POST", tp+"/connect", map[string]any{"ip": "localhost", "port": 9}, "ip")
	e.wantAPI(400, "POST", tp+"/connect", map[string]any{"ip": "127.0.0.1"}, "port")
	e.wantAPI(400, "POST", tp+"/connect", map[string]any{"ip": "127.0.0.1", "port": 70000}, "port")
	e.wantAPI(400, "POST", tp+"/producers", map[string]any{"kind": "text", "rtpParameters": opusParams(56)}, "kind")
	e.wantAPI(400, "POST", tp+"/producers", map[string]any{"kind": "audio"}, "rtpParameters")
	e.wantAPI(404, "POST", "/rooms/R4/broadcasters/zz/transports", map[string]any{"type": "plain"}, "zz")
	e.wantAPI(404, "POST", "/rooms/nope/broadcasters/bc/transports", map[string]any{"type": "plain"}, "nope")

	// A WebRTC transport for a broadcaster, connected with DTLS parameters.
	var wt room.TransportInfo
	e.mustAPI("POST", base+"/transports", map[string]any{"type": "webrtc"}, &wt)
	if wt.ID == "" || len(wt.IceCandidates) == 0 || len(wt.DtlsParameters.Fingerprints) == 0 {
		t.Fatalf("webrtc transport: %+v", wt)
	}
	e.mustAPI("POST", base+"/transports/"+wt.ID+"/connect", map[string]any{"dtlsParameters": fingerprint}, nil)
	var dp client.IDResponse
	e.mustAPI("POST", base+"/transports/"+wt.ID+"/produce/data",
		map[string]any{"label": "chat", "sctpStreamParameters": map[string]any{"streamId": 3, "ordered": true}}, &dp)
	if dp.ID == "" {
		t.Fatal("no data producer id")
	}
}

// A plain transport created without rtcpMux and comedia takes the mediasoup
// demo's defaults (rtcpMux false, comedia true), and answers the port of its
// separate RTCP socket.
func TestBroadcasterPlainTransportDefaults(t *testing.T) {
	e := newEnv(t, 1)
	e.broadcaster("R", "bc", nil)
	base := "/rooms/R/broadcasters/bc"
	p := e.rooms.Room("R").Peer("bc")
	for _, c := range []struct {
		body         map[string]any
		mux, comedia bool
		separateRtcp bool
	}{
		{map[string]any{"type": "plain"}, false, true, true},
		{map[string]any{"type": "plain", "rtcpMux": true}, true, true, false},
		{map[string]any{"type": "plain", "comedia": false, "rtcpMux": false}, false, false, true},
	} {
		var tr room.PlainTransportInfo
		e.mustAPI("POST", base+"/transports", c.body, &tr)
		if c.separateRtcp != (tr.RtcpPort != 0 && tr.RtcpPort != tr.Port) {
			t.Errorf("%v: port %d, rtcpPort %d", c.body, tr.Port, tr.RtcpPort)
		}
		ctx, cancel := context.WithTimeout(context.Background(), settle)
		st, err := p.TransportStats(ctx, tr.ID)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		s := st.([]any)[0].(*mediasoup.TransportStat).PlainTransportStat
		if s.RtcpMux != c.mux || s.Comedia != c.comedia {
			t.Errorf("%v: rtcpMux %v, comedia %v; want %v, %v", c.body, s.RtcpMux, s.Comedia, c.mux, c.comedia)
		}
	}
}
