package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// ---- signaling-level peers ----

// A signaling-level peer creates on the server everything a media peer does
// (transports, producers, consumers) without media: its DTLS fingerprint is
// synthetic and no ICE ever reaches the transports, which then stay "new"
// (never "disconnected", so the server keeps them).
var fingerprint = map[string]any{"role": "client", "fingerprints": []map[string]string{{
	"algorithm": "sha-256",
	"value":     "82:5A:68:3D:36:C3:0A:DE:AF:E7:32:43:D2:88:83:57:AC:2D:65:E5:80:C4:B6:FB:AF:1A:A0:21:9F:6D:0C:AD",
}}}

var ssrcs atomic.Uint32

func rtpParams(kind string) json.RawMessage {
	codec := `{"mimeType":"audio/opus","payloadType":111,"clockRate":48000,"channels":2}`
	if kind == "video" {
		codec = `{"mimeType":"video/VP8","payloadType":96,"clockRate":90000}`
	}
	return json.RawMessage(fmt.Sprintf(`{"codecs":[%s],"headerExtensions":[],"encodings":[{"ssrc":%d}],"rtcp":{"cname":"r"}}`,
		codec, 100000+ssrcs.Add(1)))
}

// newConsumerPolicy is how a sigPeer answers newConsumer.
type newConsumerPolicy int32

const (
	acceptConsumers newConsumerPolicy = iota
	rejectConsumers                   // answer with an error
	ignoreConsumers                   // never answer (until the peer closes)
)

// sigPeer is a protoo connection that creates server objects without media.
type sigPeer struct {
	*client.Conn
	caps       json.RawMessage
	send, recv client.TransportInfo
	policy     atomic.Int32
	// answerDelay delays every newConsumer answer (0: at once).
	answerDelay atomic.Int64
	closed      chan struct{}
	closeOnce   sync.Once

	mu            sync.Mutex
	consumers     []string        // accepted consumer ids (some may be closed since)
	producersSeen map[string]bool // producer ids of the accepted consumers
	offered       atomic.Int64
}

func dialSig(ctx context.Context, serverURL, roomID, peerID string) (*sigPeer, error) {
	p := &sigPeer{closed: make(chan struct{}), producersSeen: map[string]bool{}}
	c, err := client.Dial(ctx, serverURL, roomID, peerID, &client.DialOptions{
		NotificationBacklog: 64,
		OnRequest: func(method string, data json.RawMessage) (any, error) {
			if method != "newConsumer" {
				return struct{}{}, nil
			}
			p.offered.Add(1)
			var nc client.NewConsumer
			if err := json.Unmarshal(data, &nc); err != nil {
				return nil, err
			}
			if d := time.Duration(p.answerDelay.Load()); d > 0 {
				select {
				case <-time.After(d):
				case <-p.closed:
				}
			}
			switch newConsumerPolicy(p.policy.Load()) {
			case rejectConsumers:
				return nil, &client.ResponseError{Code: 403, Reason: "rejected"}
			case ignoreConsumers:
				<-p.closed
				return nil, errors.New("closed")
			}
			p.mu.Lock()
			p.consumers = append(p.consumers, nc.ID)
			p.producersSeen[nc.ProducerID] = true
			p.mu.Unlock()
			return struct{}{}, nil
		},
	})
	if err != nil {
		return nil, err
	}
	p.Conn = c
	return p, nil
}

func (p *sigPeer) close() {
	p.closeOnce.Do(func() { close(p.closed) })
	_ = p.Conn.Close()
}

func (p *sigPeer) req(method string, data, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Request(ctx, method, data, result)
}

// setup gets the capabilities and creates and connects a sending and a
// receiving transport.
func (p *sigPeer) setup() error {
	if err := p.req("getRouterRtpCapabilities", nil, &p.caps); err != nil {
		return err
	}
	if err := p.req("createWebRtcTransport", client.CreateWebRtcTransportRequest{Producing: true}, &p.send); err != nil {
		return err
	}
	if err := p.req("createWebRtcTransport", client.CreateWebRtcTransportRequest{Consuming: true}, &p.recv); err != nil {
		return err
	}
	for _, id := range []string{p.send.ID, p.recv.ID} {
		if err := p.req("connectWebRtcTransport", map[string]any{"transportId": id, "dtlsParameters": fingerprint}, nil); err != nil {
			return err
		}
	}
	return nil
}

// join joins, consuming (with RTP capabilities) or not.
func (p *sigPeer) join(consume bool) error {
	req := client.JoinRequest{DisplayName: p.PeerID(), Device: client.Device{Flag: "go", Name: "reliability"}}
	if consume {
		req.RtpCapabilities = p.caps
	}
	return p.req("join", req, nil)
}

func (p *sigPeer) produce(kind string) (string, error) {
	var res client.IDResponse
	err := p.req("produce", client.ProduceRequest{TransportID: p.send.ID, Kind: kind, RtpParameters: rtpParams(kind)}, &res)
	return res.ID, err
}

func (p *sigPeer) hasProducer(producerID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.producersSeen[producerID]
}

func (p *sigPeer) acceptedConsumers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.consumers...)
}

// code is the protocol error code of err (0: no error; -1: not a response
// error, e.g. a timeout or a closed connection).
func code(err error) int {
	if err == nil {
		return 0
	}
	var re *client.ResponseError
	if errors.As(err, &re) {
		return re.Code
	}
	return -1
}

// ---- raw WebSocket peers ----

// rawConn is a protoo connection spoken by hand on gorilla/websocket, for
// the abusive clients: it can send anything, never read, and drop the TCP
// connection without a close frame.
type rawConn struct {
	ws     *websocket.Conn
	nextID uint64
}

func dialRaw(ctx context.Context, serverURL, roomID, peerID string) (*rawConn, error) {
	return dialRawBuffers(ctx, serverURL, roomID, peerID, 1024)
}

// dialRawBuffers is dialRaw with gorilla read and write buffers of size
// bytes: a message up to the write buffer goes out as one frame.
func dialRawBuffers(ctx context.Context, serverURL, roomID, peerID string, size int) (*rawConn, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.RawQuery = url.Values{"roomId": {roomID}, "peerId": {peerID}}.Encode()
	d := websocket.Dialer{Subprotocols: []string{"protoo"}, HandshakeTimeout: 10 * time.Second,
		ReadBufferSize: size, WriteBufferSize: size}
	ws, resp, err := d.DialContext(ctx, u.String(), nil)
	var body []byte
	if resp != nil && resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s/%s: HTTP %d %q: %w", roomID, peerID, resp.StatusCode, strings.TrimSpace(string(body)), err)
		}
		return nil, err
	}
	return &rawConn{ws: ws}, nil
}

// request sends a request and reads frames until its response (server
// requests are answered ok, notifications skipped).
func (c *rawConn) request(method string, data any) (json.RawMessage, error) {
	c.nextID++
	id := c.nextID
	if data == nil {
		data = struct{}{}
	}
	if err := c.ws.WriteJSON(map[string]any{"request": true, "id": id, "method": method, "data": data}); err != nil {
		return nil, err
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.ws.SetReadDeadline(time.Time{}) }()
	for {
		var m struct {
			Request, Response, OK bool
			ID                    json.RawMessage
			Data                  json.RawMessage
			ErrorCode             int
			ErrorReason           string
		}
		if err := c.ws.ReadJSON(&m); err != nil {
			return nil, err
		}
		switch {
		case m.Request:
			if err := c.ws.WriteJSON(map[string]any{"response": true, "id": m.ID, "ok": true, "data": struct{}{}}); err != nil {
				return nil, err
			}
		case m.Response && string(m.ID) == fmt.Sprint(id):
			if !m.OK {
				return nil, &client.ResponseError{Method: method, Code: m.ErrorCode, Reason: m.ErrorReason}
			}
			return m.Data, nil
		}
	}
}

// setupJoinProduce makes the raw peer a joined peer with a sending
// transport and an audio producer.
func (c *rawConn) setupJoinProduce() error {
	if _, err := c.request("getRouterRtpCapabilities", nil); err != nil {
		return err
	}
	raw, err := c.request("createWebRtcTransport", map[string]any{"producing": true, "consuming": false})
	if err != nil {
		return err
	}
	var ti client.TransportInfo
	if err := json.Unmarshal(raw, &ti); err != nil {
		return err
	}
	if _, err := c.request("connectWebRtcTransport", map[string]any{"transportId": ti.ID, "dtlsParameters": fingerprint}); err != nil {
		return err
	}
	if _, err := c.request("join", map[string]any{"displayName": "raw", "device": map[string]string{"flag": "raw"}}); err != nil {
		return err
	}
	_, err = c.request("produce", map[string]any{"transportId": ti.ID, "kind": "audio", "rtpParameters": rtpParams("audio")})
	return err
}

// vanish drops the TCP connection without a close frame; with reset, with
// an RST instead of a FIN (SO_LINGER 0), as a crashed host's kernel would.
func (c *rawConn) vanish(reset bool) {
	nc := c.ws.NetConn()
	if tc, ok := nc.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = nc.Close()
}

// readClose reads until the connection ends and returns the close code the
// server sent (0 if it ended without one).
func (c *rawConn) readClose(timeout time.Duration) (int, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
	for {
		_, _, err := c.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, nil
		}
		return 0, err // a timeout, or the connection failed without a close frame
	}
}

// ---- media peers ----

// loopbackOnly keeps ICE on 127.0.0.1.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
}

func joinMedia(ctx context.Context, serverURL, roomID, peerID string, opts client.JoinOptions) (*client.Peer, error) {
	if opts.DisplayName == "" {
		opts.DisplayName = peerID
	}
	opts.SettingEngine = loopbackOnly
	return client.Join(ctx, serverURL, roomID, peerID, opts)
}

// arrivals records when a consumer's packets arrive.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
}

func watchArrivals(c *client.Consumer) *arrivals {
	a := &arrivals{}
	c.OnRTP(func(*rtp.Packet) {
		a.mu.Lock()
		a.times = append(a.times, time.Now())
		a.mu.Unlock()
	})
	return a
}

func (a *arrivals) n() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.times)
}

// maxGap is the longest time between two packets arriving in [from, to]
// (the edges count as arrivals only if packets arrived before from and
// after to), and the number of packets in the window.
func (a *arrivals) maxGap(from, to time.Time) (time.Duration, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var gap time.Duration
	n := 0
	prev := time.Time{}
	for _, t := range a.times {
		if t.Before(from) {
			prev = t
			continue
		}
		if t.After(to) {
			if !prev.IsZero() {
				gap = max(gap, t.Sub(prev))
			}
			break
		}
		n++
		if !prev.IsZero() {
			gap = max(gap, t.Sub(prev))
		}
		prev = t
	}
	return gap, n
}

// httpGet is a GET that closes its idle connection afterwards (no
// keep-alive goroutine left for the leak check).
func httpGet(u string) (int, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(u)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
