package signaling_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testserver"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap/zaptest"
)

// env is a real server in-process: a worker pool, the rooms and the
// WebSocket edge on a loopback httptest listener.
type env struct {
	t     *testing.T
	pool  *worker.Pool
	rooms *room.Manager
	url   string
}

// settle bounds every wait of these tests for the server (a request
// answered, a notification, a room closed, a worker's objects freed): the
// tests poll, and the bound only ends a test that would wait forever; a
// busy machine (-race, 2 cores, other tests) never comes close to it. It is
// also the rooms' ServerRequestTimeout: a peer slow to answer newConsumer is
// not dropped under a test (TestUnansweredNewConsumerLeavesNoConsumer sets
// its own).
const settle = 30 * time.Second

func newEnv(t *testing.T, workers int, mod ...func(*room.Options, *signaling.Limits)) *env {
	t.Helper()
	if _, ok := throughRelay.Load(t); ok {
		return newRelayEnv(t, workers, mod...)
	}
	log := zaptest.NewLogger(t)
	pool := testserver.Pool(t, workers, log)
	ropts := room.Options{Logger: log.Named("room"), ServerRequestTimeout: settle}
	limits := signaling.DefaultLimits()
	for _, m := range mod {
		m(&ropts, &limits)
	}
	rooms := room.NewManager(pool, ropts)
	h := signaling.NewHandler(signaling.Options{
		Workers: pool, Rooms: rooms, Limits: limits, Logger: log.Named("signaling"), Version: worker.Version,
	})
	srvURL := testserver.Serve(t, pool, rooms, h)
	return &env{t: t, pool: pool, rooms: rooms, url: srvURL}
}

// tpeer is a test peer: a protoo connection plus what it created.
type tpeer struct {
	*client.Conn
	t         *testing.T
	caps      json.RawMessage
	send      client.TransportInfo
	recv      client.TransportInfo
	consumers chan client.NewConsumer
	dataCons  chan client.NewDataConsumer
	reject    atomic.Bool // answer newConsumer with an error
	silent    atomic.Bool // never answer newConsumer (until the test ends)
	release   chan struct{}
}

func (e *env) dial(roomID, peerID string) *tpeer {
	e.t.Helper()
	p := &tpeer{t: e.t, consumers: make(chan client.NewConsumer, 64), dataCons: make(chan client.NewDataConsumer, 64),
		release: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	c, err := client.Dial(ctx, e.url, roomID, peerID, &client.DialOptions{
		OnRequest: func(method string, data json.RawMessage) (any, error) {
			switch method {
			case "newConsumer":
				var nc client.NewConsumer
				if err := json.Unmarshal(data, &nc); err != nil {
					return nil, err
				}
				if p.reject.Load() {
					return nil, errors.New("rejected by test")
				}
				if p.silent.Load() {
					p.consumers <- nc // seen, never answered
					<-p.release
					return nil, errors.New("test over")
				}
				p.consumers <- nc
			case "newDataConsumer":
				var nd client.NewDataConsumer
				if err := json.Unmarshal(data, &nd); err != nil {
					return nil, err
				}
				p.dataCons <- nd
			}
			return struct{}{}, nil
		},
	})
	if err != nil {
		e.t.Fatalf("dial %s/%s: %v", roomID, peerID, err)
	}
	e.t.Cleanup(func() {
		close(p.release)
		_ = c.Close()
	})
	p.Conn = c
	return p
}

func (p *tpeer) req(method string, data, result any) error {
	return request(p.Conn, method, data, result)
}

func (p *tpeer) must(method string, data, result any) {
	p.t.Helper()
	mustRequest(p.t, p.Conn, method, data, result)
}

// request sends one request, bounded by settle.
func request(c *client.Conn, method string, data, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	return c.Request(ctx, method, data, result)
}

// mustRequest is request that fails the test on an error.
func mustRequest(t testing.TB, c *client.Conn, method string, data, result any) {
	t.Helper()
	if err := request(c, method, data, result); err != nil {
		t.Fatalf("%s %s: %v", c.PeerID(), method, err)
	}
}

// wantCode asserts an error response with this code.
func (p *tpeer) wantCode(code int, method string, data any) string {
	p.t.Helper()
	err := p.req(method, data, nil)
	var re *client.ResponseError
	if !errors.As(err, &re) || re.Code != code {
		p.t.Fatalf("%s %v: got %v, want error %d", method, data, err, code)
	}
	return re.Reason
}

var fingerprint = map[string]any{"role": "client", "fingerprints": []map[string]string{{
	"algorithm": "sha-256",
	"value":     "82:5A:68:3D:36:C3:0A:DE:AF:E7:32:43:D2:88:83:57:AC:2D:65:E5:80:C4:B6:FB:AF:1A:A0:21:9F:6D:0C:AD",
}}}

// setup: capabilities, a send and a receive transport, both connected.
func (p *tpeer) setup() {
	p.t.Helper()
	p.must("getRouterRtpCapabilities", nil, &p.caps)
	p.must("createWebRtcTransport", client.CreateWebRtcTransportRequest{Producing: true}, &p.send)
	p.must("createWebRtcTransport", client.CreateWebRtcTransportRequest{Consuming: true}, &p.recv)
	for _, id := range []string{p.send.ID, p.recv.ID} {
		p.must("connectWebRtcTransport", map[string]any{"transportId": id, "dtlsParameters": fingerprint}, nil)
	}
}

func (p *tpeer) join(name string) client.JoinResponse {
	p.t.Helper()
	var res client.JoinResponse
	p.must("join", client.JoinRequest{DisplayName: name, Device: client.Device{Flag: "go", Name: "test"}, RtpCapabilities: p.caps}, &res)
	return res
}

var ssrc atomic.Uint32

func rtpParams(kind string) json.RawMessage {
	codec := `{"mimeType":"audio/opus","payloadType":111,"clockRate":48000,"channels":2}`
	if kind == "video" {
		codec = `{"mimeType":"video/VP8","payloadType":96,"clockRate":90000}`
	}
	return json.RawMessage(fmt.Sprintf(`{"codecs":[%s],"headerExtensions":[],"encodings":[{"ssrc":%d}],"rtcp":{"cname":"t"}}`,
		codec, 100000+ssrc.Add(1)))
}

func (p *tpeer) produce(kind string) string {
	p.t.Helper()
	var res client.IDResponse
	p.must("produce", client.ProduceRequest{TransportID: p.send.ID, Kind: kind, RtpParameters: rtpParams(kind)}, &res)
	return res.ID
}

func (p *tpeer) nextConsumer() client.NewConsumer {
	p.t.Helper()
	select {
	case nc := <-p.consumers:
		return nc
	case <-time.After(settle):
		p.t.Fatalf("%s: no newConsumer", p.PeerID())
		return client.NewConsumer{}
	}
}

func (p *tpeer) nextDataConsumer() client.NewDataConsumer {
	p.t.Helper()
	select {
	case nd := <-p.dataCons:
		return nd
	case <-time.After(settle):
		p.t.Fatalf("%s: no newDataConsumer", p.PeerID())
		return client.NewDataConsumer{}
	}
}

func (p *tpeer) waitNote(method string, match func(json.RawMessage) bool) json.RawMessage {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	d, err := p.WaitNotification(ctx, method, match)
	if err != nil {
		p.t.Fatalf("%s: no %s notification: %v", p.PeerID(), method, err)
	}
	return d
}

func field(key, want string) func(json.RawMessage) bool {
	return func(d json.RawMessage) bool {
		var m map[string]any
		_ = json.Unmarshal(d, &m)
		return m[key] == want
	}
}

func TestMediasoupVersionNotificationFirst(t *testing.T) {
	e := newEnv(t, 1)
	a := e.dial("r", "a")
	d := a.waitNote("mediasoup-version", nil)
	var v struct{ Version string }
	_ = json.Unmarshal(d, &v)
	if v.Version != worker.Version {
		t.Fatalf("mediasoup-version %s, want %s", d, worker.Version)
	}
}

func TestJoinProduceConsumeAndLeave(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.dial("room1", "alice"), e.dial("room1", "bob")
	a.setup()
	b.setup()
	if res := a.join("Alice"); len(res.Peers) != 0 {
		t.Fatalf("alice sees peers %+v", res.Peers)
	}
	audio := a.produce("audio")
	video := a.produce("video")

	res := b.join("Bob")
	if len(res.Peers) != 1 || res.Peers[0].ID != "alice" || res.Peers[0].DisplayName != "Alice" {
		t.Fatalf("bob's join answer: %+v", res.Peers)
	}
	a.waitNote("newPeer", field("id", "bob"))
	got := map[string]client.NewConsumer{}
	for range 2 {
		nc := b.nextConsumer()
		got[nc.ProducerID] = nc
	}
	if got[audio].Kind != "audio" || got[video].Kind != "video" || got[audio].PeerID != "alice" {
		t.Fatalf("bob's consumers: %+v", got)
	}
	// Consumers are resumed once bob accepted them.
	cid := got[video].ID
	testutil.Eventually(t, settle, func() bool {
		var stats []map[string]any
		return b.req("getConsumerStats", map[string]string{"consumerId": cid}, &stats) == nil
	}, "consumer stats")

	// A new producer after bob joined reaches him too.
	audio2 := a.produce("audio")
	if nc := b.nextConsumer(); nc.ProducerID != audio2 {
		t.Fatalf("newConsumer for %s, want %s", nc.ProducerID, audio2)
	}

	a.must("pauseProducer", map[string]string{"producerId": video}, nil)
	b.waitNote("consumerPaused", field("consumerId", cid))
	a.must("resumeProducer", map[string]string{"producerId": video}, nil)
	b.waitNote("consumerResumed", field("consumerId", cid))
	b.must("pauseConsumer", map[string]string{"consumerId": cid}, nil)
	b.must("resumeConsumer", map[string]string{"consumerId": cid}, nil)
	b.must("setConsumerPriority", map[string]any{"consumerId": cid, "priority": 2}, nil)
	b.must("requestConsumerKeyFrame", map[string]any{"consumerId": cid}, nil)
	b.must("setConsumerPreferredLayers", map[string]any{"consumerId": cid, "spatialLayer": 0}, nil)
	a.must("closeProducer", map[string]string{"producerId": video}, nil)
	b.waitNote("consumerClosed", field("consumerId", cid))
	b.wantCode(404, "getConsumerStats", map[string]string{"consumerId": cid})

	a.must("changeDisplayName", map[string]string{"displayName": "Alice 2"}, nil)
	b.waitNote("peerDisplayNameChanged", field("oldDisplayName", "Alice"))

	var stats []map[string]any
	a.must("getTransportStats", map[string]string{"transportId": a.send.ID}, &stats)
	a.must("getProducerStats", map[string]string{"producerId": audio}, &stats)
	var ice map[string]any
	a.must("restartIce", map[string]string{"transportId": a.send.ID}, &ice)
	if ice["usernameFragment"] == nil || ice["password"] == nil {
		t.Fatalf("restartIce answered %v", ice)
	}

	// Alice leaves: bob hears peerClosed and loses her consumers.
	audioCons := got[audio].ID
	_ = a.Close()
	b.waitNote("peerClosed", field("peerId", "alice"))
	b.waitNote("consumerClosed", field("consumerId", audioCons))
	_ = b.Close()
	waitRoomGone(t, e, "room1")
}

// waitRoomGone waits until the room is closed and no worker holds a router.
func waitRoomGone(t *testing.T, e *env, id string) {
	t.Helper()
	testutil.Eventually(t, settle, func() bool { return e.rooms.Room(id) == nil }, "room %s still open", id)
	testutil.Eventually(t, settle, func() bool {
		for _, w := range e.pool.Workers() {
			d, err := w.Dump(context.Background())
			if err != nil || len(d.RouterIds) != 0 {
				return false
			}
		}
		return true
	}, "routers left in the workers")
}

func TestDataProducerReachesOthers(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.dial("d", "a"), e.dial("d", "b")
	a.setup()
	b.setup()
	a.join("A")
	b.join("B")
	var res client.IDResponse
	a.must("produceData", map[string]any{
		"transportId": a.send.ID, "label": "chat", "protocol": "",
		"sctpStreamParameters": map[string]any{"streamId": 1, "ordered": true},
	}, &res)
	nd := b.nextDataConsumer()
	if nd.DataProducerID != res.ID || nd.Label != "chat" || nd.PeerID != "a" {
		t.Fatalf("newDataConsumer %+v", nd)
	}
	var stats []map[string]any
	b.must("getDataConsumerStats", map[string]string{"dataConsumerId": nd.ID}, &stats)
	a.must("getDataProducerStats", map[string]string{"dataProducerId": res.ID}, &stats)
	// Without sctpStreamParameters on a WebRTC transport: 400.
	a.wantCode(400, "produceData", map[string]any{"transportId": a.send.ID, "label": "x"})
}

func TestErrorCodes(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.dial("e", "a"), e.dial("e", "b")
	a.setup()
	b.setup()

	a.wantCode(405, "noSuchMethod", nil)
	a.wantCode(409, "produce", client.ProduceRequest{TransportID: a.send.ID, Kind: "audio", RtpParameters: rtpParams("audio")})
	a.join("A")
	a.wantCode(409, "join", client.JoinRequest{DisplayName: "again"})
	b.join("B")

	// 400 names the field.
	for _, tc := range []struct {
		method, field string
		data          any
	}{
		{"changeDisplayName", "displayName", map[string]any{"displayName": 42}},
		{"changeDisplayName", "displayName", map[string]any{}},
		{"connectWebRtcTransport", "dtlsParameters", map[string]any{"transportId": a.send.ID}},
		{"connectWebRtcTransport", "transportId", map[string]any{"dtlsParameters": fingerprint}},
		{"produce", "kind", map[string]any{"transportId": a.send.ID, "kind": "smell", "rtpParameters": rtpParams("audio")}},
		{"produce", "rtpParameters", map[string]any{"transportId": a.send.ID, "kind": "audio"}},
		{"setConsumerPriority", "priority", map[string]any{"consumerId": "x", "priority": 0}},
		{"pauseProducer", "producerId", map[string]any{"producerId": 7}},
		{"join", "displayName", map[string]any{"displayName": true}},
	} {
		reason := a.wantCode(400, tc.method, tc.data)
		if !strings.Contains(reason, tc.field) {
			t.Errorf("%s: reason %q does not name %q", tc.method, reason, tc.field)
		}
	}

	// 404 for unknown ids, 403 for another peer's.
	a.wantCode(404, "closeProducer", map[string]string{"producerId": "nope"})
	a.wantCode(404, "getTransportStats", map[string]string{"transportId": "nope"})
	bAudio := b.produce("audio")
	nc := a.nextConsumer()
	a.wantCode(403, "closeProducer", map[string]string{"producerId": bAudio})
	a.wantCode(403, "pauseProducer", map[string]string{"producerId": bAudio})
	a.wantCode(403, "getTransportStats", map[string]string{"transportId": b.send.ID})
	a.wantCode(403, "connectWebRtcTransport", map[string]any{"transportId": b.send.ID, "dtlsParameters": fingerprint})
	a.wantCode(403, "produce", client.ProduceRequest{TransportID: b.send.ID, Kind: "audio", RtpParameters: rtpParams("audio")})
	b.wantCode(403, "pauseConsumer", map[string]string{"consumerId": nc.ID})
	b.wantCode(403, "getConsumerStats", map[string]string{"consumerId": nc.ID})
	// A producer id is not a consumer id, even one's own.
	b.wantCode(404, "pauseConsumer", map[string]string{"consumerId": bAudio})
	// Nothing of b's was touched.
	var stats []map[string]any
	b.must("getProducerStats", map[string]string{"producerId": bAudio}, &stats)
}

func TestRejectedNewConsumerLeavesNoConsumer(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.dial("rej", "a"), e.dial("rej", "b")
	a.setup()
	b.setup()
	b.reject.Store(true)
	a.join("A")
	b.join("B")
	a.produce("audio")
	// The worker must hold no consumer for b once the rejection came back.
	testutil.Eventually(t, settle, func() bool {
		return consumersOn(t, e, "rej") == 0
	}, "a rejected consumer stayed on the server")
	noPeerConsumers(t, e, "rej")
}

// consumersOn counts the consumers the room's router holds in the worker.
func consumersOn(t *testing.T, e *env, roomID string) int {
	r := e.rooms.Room(roomID)
	if r == nil {
		return 0
	}
	d, err := r.Router().Dump()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ids := range d.MapProducerIdConsumerIds {
		n += len(ids.Values)
	}
	return n
}

func TestJunkFramesDoNotHurt(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.dial("junk", "a"), e.dial("junk", "b")
	a.setup()
	a.join("A")
	for _, junk := range []string{"null", "[]", "42", `"x"`, "{}", `{"request":true}`, `{"request":true,"id":1,"method":5}`, "{"} {
		if err := a.WriteRaw(websocket.TextMessage, []byte(junk)); err != nil {
			t.Fatal(err)
		}
	}
	// Still served, and so is everyone else.
	var caps json.RawMessage
	a.must("getRouterRtpCapabilities", nil, &caps)
	b.must("getRouterRtpCapabilities", nil, &caps)
}

func TestReconnectingAlonePeerGetsAWorkingRoom(t *testing.T) {
	e := newEnv(t, 1)
	a := e.dial("alone", "a")
	a.setup()
	a.join("A")
	a.produce("audio")

	// Same peerId again: the old connection is closed with 4000 and the
	// new one works in a live room (the demo attached it to a closed one).
	a2 := e.dial("alone", "a")
	select {
	case <-a.Done():
		if a.CloseCode() != room.CloseKicked {
			t.Fatalf("old connection closed with %d, want %d", a.CloseCode(), room.CloseKicked)
		}
	case <-time.After(settle):
		t.Fatal("old connection not closed")
	}
	a2.setup()
	a2.join("A again")
	a2.produce("video")
	b := e.dial("alone", "b")
	b.setup()
	if res := b.join("B"); len(res.Peers) != 1 || res.Peers[0].DisplayName != "A again" {
		t.Fatalf("b sees %+v", res.Peers)
	}
	b.nextConsumer()
}

func TestReplacedJoinedPeerIsAnnouncedClosed(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.dial("rep", "a"), e.dial("rep", "b")
	a.setup()
	b.setup()
	a.join("A")
	b.join("B")
	a.produce("audio")
	nc := b.nextConsumer()
	e.dial("rep", "a") // reconnect
	b.waitNote("peerClosed", field("peerId", "a"))
	b.waitNote("consumerClosed", field("consumerId", nc.ID))
}

func TestLeaveRoomThenJoinAgain(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.dial("lv", "a"), e.dial("lv", "b")
	a.setup()
	b.setup()
	a.join("A")
	b.join("B")
	a.must("leaveRoom", nil, nil)
	b.waitNote("peerClosed", field("peerId", "a"))
	// The socket stays open; the old transports are gone.
	a.wantCode(404, "getTransportStats", map[string]string{"transportId": a.send.ID})
	a.setup()
	if res := a.join("A back"); len(res.Peers) != 1 {
		t.Fatalf("after rejoin: %+v", res.Peers)
	}
	b.waitNote("newPeer", field("displayName", "A back"))
}

func TestConcurrentFirstPeersShareOneRoom(t *testing.T) {
	e := newEnv(t, 2)
	const n = 6
	peers := make(chan *tpeer, n)
	for i := range n {
		go func() { peers <- e.dial("race", fmt.Sprintf("p%d", i)) }()
	}
	for range n {
		<-peers
	}
	if rs := e.rooms.Rooms(); len(rs) != 1 || len(rs[0].Peers()) != n {
		t.Fatalf("rooms after a race: %d", len(rs))
	}
	total := int64(0)
	for _, in := range e.pool.Infos() {
		total += in.Routers
	}
	if total != 1 {
		t.Fatalf("%d routers for one room", total)
	}
}

func TestWorkerDeathClosesOnlyItsRoomsAndPeersReconnect(t *testing.T) {
	e := newEnv(t, 2)
	a := e.dial("one", "a")
	a.setup()
	a.join("A")
	b := e.dial("two", "b")
	b.setup()
	b.join("B")
	ra, rb := e.rooms.Room("one").Router(), e.rooms.Room("two").Router()
	if ra.Worker == rb.Worker {
		t.Fatal("both rooms on one worker; placement should spread them")
	}
	if err := killPid(ra.Pid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
		if code := a.CloseCode(); code == room.CloseKicked || code == 0 {
			t.Fatalf("peer of the dead worker closed with %d: must be reconnectable", code)
		}
	case <-time.After(settle):
		t.Fatal("peer of the dead worker not closed")
	}
	// The other room noticed nothing.
	var caps json.RawMessage
	b.must("getRouterRtpCapabilities", nil, &caps)
	b.must("getTransportStats", map[string]string{"transportId": b.send.ID}, nil)
	// Reconnecting lands in a new room on a live worker.
	a2 := e.dial("one", "a")
	a2.setup()
	a2.join("A")
	if r := e.rooms.Room("one").Router(); r.Pid == ra.Pid {
		t.Fatal("new room on the dead worker")
	}
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// noPeerConsumers waits until no peer of the room holds a consumer (the
// worker drops a closed consumer just before the room forgets it).
func noPeerConsumers(t *testing.T, e *env, roomID string) {
	t.Helper()
	testutil.Eventually(t, settle, func() bool {
		for _, p := range e.rooms.Room(roomID).Peers() {
			if _, _, c := p.Snapshot(); c.Consumers != 0 {
				return false
			}
		}
		return true
	}, "a peer of room %s still holds consumers", roomID)
}

// The sctpParameters of a WebRTC transport carry both shapes: the fields
// mediasoup-client 3.7.17 reads (port, OS, MIS, maxMessageSize) and those of
// mediasoup 3.26 that 3.24.1 reads (maxSendMessageSize, maxReceiveMessageSize).
// OS and MIS echo the client's sctpCapabilities (1024 when it sends none).
func TestSctpParametersForOldAndNewClients(t *testing.T) {
	e := newEnv(t, 1)
	p := e.dial("R", "A")
	for _, c := range []struct {
		caps    string
		os, mis float64
	}{
		{"", 1024, 1024}, // mediasoup-client ≥ 3.21
		{`{"numStreams":{"OS":1024,"MIS":1024}}`, 1024, 1024}, // 3.7.17 in Chrome
		{`{"numStreams":{"OS":16,"MIS":2048}}`, 16, 2048},
	} {
		var res struct {
			SctpParameters map[string]float64 `json:"sctpParameters"`
		}
		p.must("createWebRtcTransport", client.CreateWebRtcTransportRequest{
			Consuming: true, SctpCapabilities: json.RawMessage(c.caps),
		}, &res)
		sp := res.SctpParameters
		if sp["port"] != 5000 || sp["OS"] != c.os || sp["MIS"] != c.mis ||
			sp["maxMessageSize"] != 262144 || sp["maxSendMessageSize"] != 262144 || sp["maxReceiveMessageSize"] != 262144 {
			t.Errorf("sctpCapabilities %q: sctpParameters %v", c.caps, sp)
		}
	}
}
