package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// waitTime bounds every wait in these tests (and the requests' contexts):
// the bound only ends a test that would wait forever; none comes close to
// it, even on a busy machine.
const waitTime = 30 * time.Second

// testServer is a test double of the protoo wire: it checks the handshake like
// the real server (403 without protoo, 400 without roomId/peerId, 403 with a
// wrong token when one is required), then hands each connection to the test,
// which scripts the server side through serverConn.
type testServer struct {
	*httptest.Server
	conns chan *serverConn

	mu  sync.Mutex
	all []*serverConn
}

func newTestServer(t *testing.T, token string) *testServer {
	t.Helper()
	s := &testServer{conns: make(chan *serverConn, 16)}
	up := websocket.Upgrader{Subprotocols: []string{Subprotocol}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
			http.Error(w, "protoo subprotocol required", http.StatusForbidden)
			return
		}
		q := r.URL.Query()
		if q.Get("roomId") == "" || q.Get("peerId") == "" {
			http.Error(w, "roomId and peerId required", http.StatusBadRequest)
			return
		}
		if token != "" && q.Get("token") != token {
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		sc := &serverConn{ws: ws, query: q, in: make(chan []byte, 256), closed: make(chan struct{})}
		go sc.readLoop()
		s.mu.Lock()
		s.all = append(s.all, sc)
		s.mu.Unlock()
		s.conns <- sc
	}))
	t.Cleanup(func() {
		s.mu.Lock()
		for _, sc := range s.all {
			sc.ws.Close()
			<-sc.closed
		}
		s.mu.Unlock()
		s.Close()
	})
	return s
}

func (s *testServer) accept(t *testing.T) *serverConn {
	t.Helper()
	select {
	case sc := <-s.conns:
		return sc
	case <-time.After(waitTime):
		t.Fatal("no connection")
		return nil
	}
}

type serverConn struct {
	ws     *websocket.Conn
	query  url.Values
	wmu    sync.Mutex
	in     chan []byte
	closed chan struct{} // the read loop ended
	err    error         // the read error, valid after closed
}

func (sc *serverConn) readLoop() {
	defer close(sc.closed)
	defer close(sc.in)
	for {
		_, b, err := sc.ws.ReadMessage() // the default close handler echoes close frames
		if err != nil {
			sc.err = err
			sc.ws.Close()
			return
		}
		sc.in <- b
	}
}

func (sc *serverConn) sendRaw(t *testing.T, s string) {
	t.Helper()
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if err := sc.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatalf("server write: %v", err)
	}
}

func (sc *serverConn) notify(t *testing.T, method string, data any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"notification": true, "method": method, "data": data})
	sc.sendRaw(t, string(b))
}

// wireMsg is what the test server decodes; ID stays raw to check it exactly.
type wireMsg struct {
	Request      bool            `json:"request"`
	Response     bool            `json:"response"`
	Notification bool            `json:"notification"`
	ID           json.RawMessage `json:"id"`
	Method       string          `json:"method"`
	OK           *bool           `json:"ok"`
	Data         json.RawMessage `json:"data"`
	ErrorCode    int             `json:"errorCode"`
	ErrorReason  string          `json:"errorReason"`
}

func (sc *serverConn) recv(t *testing.T) wireMsg {
	t.Helper()
	select {
	case b, ok := <-sc.in:
		if !ok {
			t.Fatalf("server: connection closed: %v", sc.err)
		}
		var m wireMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("server: bad frame %q: %v", b, err)
		}
		return m
	case <-time.After(waitTime):
		t.Fatal("server: nothing received")
		return wireMsg{}
	}
}

func (sc *serverConn) reply(t *testing.T, req wireMsg, data string) {
	t.Helper()
	sc.sendRaw(t, fmt.Sprintf(`{"response":true,"id":%s,"ok":true,"data":%s}`, req.ID, data))
}

func (sc *serverConn) replyError(t *testing.T, req wireMsg, code int, reason string) {
	t.Helper()
	sc.sendRaw(t, fmt.Sprintf(`{"response":true,"id":%s,"ok":false,"errorCode":%d,"errorReason":%q}`, req.ID, code, reason))
}

func dial(t *testing.T, s *testServer, opts *DialOptions) (*Conn, *serverConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	c, err := Dial(ctx, s.URL, "room 1", "peer/a", opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	sc := s.accept(t)
	if got := sc.query.Get("roomId"); got != "room 1" {
		t.Errorf("roomId = %q", got)
	}
	if got := sc.query.Get("peerId"); got != "peer/a" {
		t.Errorf("peerId = %q", got)
	}
	return c, sc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	t.Cleanup(cancel)
	return ctx
}

type result struct {
	raw json.RawMessage
	err error
}

func TestRequestRoundTrip(t *testing.T) {
	s := newTestServer(t, "")
	c, sc := dial(t, s, nil)
	ctx := testCtx(t)

	// join: typed request and response.
	joinDone := make(chan error, 1)
	var joined JoinResponse
	go func() {
		joinDone <- c.Request(ctx, "join", JoinRequest{
			DisplayName:     "Alice",
			Device:          Device{Flag: "bot", Name: "go", Version: "1"},
			RtpCapabilities: json.RawMessage(`{"codecs":[]}`),
		}, &joined)
	}()
	req := sc.recv(t)
	if !req.Request || req.Method != "join" {
		t.Fatalf("got %+v", req)
	}
	var firstID uint64
	if err := json.Unmarshal(req.ID, &firstID); err != nil || firstID >= 1<<31 {
		t.Fatalf("id %s: want an integer below 2^31 (%v)", req.ID, err)
	}
	var jr map[string]any
	if err := json.Unmarshal(req.Data, &jr); err != nil {
		t.Fatal(err)
	}
	if jr["displayName"] != "Alice" || jr["device"].(map[string]any)["flag"] != "bot" ||
		jr["rtpCapabilities"] == nil || jr["sctpCapabilities"] != nil {
		t.Errorf("join data = %s", req.Data)
	}
	sc.reply(t, req, `{"peers":[{"id":"bob","displayName":"Bob","device":{"flag":"x","name":"y","version":"2"}}]}`)
	if err := <-joinDone; err != nil {
		t.Fatalf("join: %v", err)
	}
	if len(joined.Peers) != 1 || joined.Peers[0].ID != "bob" || joined.Peers[0].Device.Version != "2" {
		t.Errorf("join response = %+v", joined)
	}

	// nil data is sent as {}, a response without data gives {}, ids increase.
	raw := make(chan result, 1)
	go func() {
		r, err := c.RequestRaw(ctx, "getRouterRtpCapabilities", nil)
		raw <- result{r, err}
	}()
	req = sc.recv(t)
	if string(req.Data) != "{}" {
		t.Errorf("nil data sent as %s", req.Data)
	}
	if string(req.ID) != fmt.Sprint(firstID+1) {
		t.Errorf("second id = %s, want %d", req.ID, firstID+1)
	}
	sc.sendRaw(t, fmt.Sprintf(`{"response":true,"id":%s,"ok":true}`, req.ID))
	if r := <-raw; r.err != nil || string(r.raw) != "{}" {
		t.Errorf("RequestRaw = %s, %v", r.raw, r.err)
	}

	// ok:false → *ResponseError.
	errc := make(chan error, 1)
	go func() { errc <- c.Request(ctx, "join", JoinRequest{}, nil) }()
	sc.replyError(t, sc.recv(t), 409, "already joined")
	err := <-errc
	var re *ResponseError
	if !errors.As(err, &re) || re.Code != 409 || re.Reason != "already joined" || re.Method != "join" {
		t.Fatalf("err = %#v", err)
	}

	// Concurrent requests answered out of order each get their own answer.
	const n = 20
	results := make([]chan result, n)
	for i := range results {
		results[i] = make(chan result, 1)
		go func() {
			var out struct{ I int }
			err := c.Request(ctx, "echo", map[string]int{"i": i}, &out)
			results[i] <- result{json.RawMessage(fmt.Sprint(out.I)), err}
		}()
	}
	reqs := make([]wireMsg, n)
	for i := range reqs {
		reqs[i] = sc.recv(t)
	}
	for i := n - 1; i >= 0; i-- {
		sc.reply(t, reqs[i], `{"i":`+string(reqs[i].Data[len(`{"i":`):]))
	}
	for i := range results {
		if r := <-results[i]; r.err != nil || string(r.raw) != fmt.Sprint(i) {
			t.Errorf("request %d: %s, %v", i, r.raw, r.err)
		}
	}

	// Notify.
	if err := c.Notify("hello", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if m := sc.recv(t); !m.Notification || m.Method != "hello" || string(m.Data) != `{"x":1}` {
		t.Errorf("notification = %+v", m)
	}
}

// A request unanswered for RequestTimeout fails with DeadlineExceeded, not
// before RequestTimeout; the caller's context has no deadline, so only
// RequestTimeout can have ended it. A late answer to it is ignored and the
// connection still works.
func TestRequestTimeout(t *testing.T) {
	s := newTestServer(t, "")
	const timeout = 100 * time.Millisecond
	c, sc := dial(t, s, &DialOptions{RequestTimeout: timeout})

	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- c.Request(context.Background(), "slow", nil, nil) }()
	late := sc.recv(t) // never answered in time
	select {
	case err := <-errc:
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || took < timeout {
			t.Fatalf("err = %v after %v, want DeadlineExceeded after %v", err, took, timeout)
		}
		t.Logf("unanswered request failed after %v (RequestTimeout %v)", took.Round(time.Millisecond), timeout)
	case <-time.After(timeout + waitTime):
		t.Fatalf("request still waiting %v after its RequestTimeout", waitTime)
	}

	// The late response is ignored: the connection still answers a server
	// request (which RequestTimeout does not bound).
	sc.reply(t, late, `{}`)
	sc.sendRaw(t, `{"request":true,"id":7,"method":"ping"}`)
	if m := sc.recv(t); !m.Response || string(m.ID) != "7" || m.OK == nil || !*m.OK {
		t.Fatalf("after a late response: %+v", m)
	}
}

// The caller's context ending first gives its error (Canceled); a late
// answer to the cancelled request is ignored and the connection still works.
// No RequestTimeout here: nothing races the cancellation.
func TestRequestCancelled(t *testing.T) {
	s := newTestServer(t, "")
	c, sc := dial(t, s, &DialOptions{RequestTimeout: -1})
	errc := make(chan error, 1)

	cctx, cancel := context.WithCancel(context.Background())
	go func() { errc <- c.Request(cctx, "slow", nil, nil) }()
	cancelled := sc.recv(t)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}

	sc.reply(t, cancelled, `{}`)
	go func() { errc <- c.Request(testCtx(t), "fast", nil, nil) }()
	sc.reply(t, sc.recv(t), `{}`)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

type codedError struct{}

func (codedError) Error() string { return "no such method" }
func (codedError) Code() int     { return 405 }

func TestServerRequest(t *testing.T) {
	s := newTestServer(t, "")
	got := make(chan NewConsumer, 1)
	c, sc := dial(t, s, &DialOptions{
		OnRequest: func(method string, data json.RawMessage) (any, error) {
			switch method {
			case "newConsumer":
				var nc NewConsumer
				if err := json.Unmarshal(data, &nc); err != nil {
					return nil, err
				}
				got <- nc
				return nil, nil
			case "newDataConsumer":
				return nil, &ResponseError{Code: 403, Reason: "no data channels"}
			case "answer":
				return map[string]string{"a": "b"}, nil
			case "coded":
				return nil, fmt.Errorf("wrapped: %w", codedError{})
			}
			return nil, errors.New("boom")
		},
	})
	_ = c

	sc.sendRaw(t, `{"request":true,"id":0,"method":"newConsumer","data":{"peerId":"bob","producerId":"p1","id":"c1","kind":"video","rtpParameters":{"codecs":[]},"type":"simulcast","appData":{"x":1},"producerPaused":true}}`)
	m := sc.recv(t)
	if !m.Response || string(m.ID) != "0" || m.OK == nil || !*m.OK || string(m.Data) != "{}" {
		t.Errorf("newConsumer response = %+v", m)
	}
	nc := <-got
	if nc.PeerID != "bob" || nc.ProducerID != "p1" || nc.ID != "c1" || nc.Kind != "video" ||
		nc.Type != "simulcast" || !nc.ProducerPaused || string(nc.AppData) != `{"x":1}` ||
		string(nc.RtpParameters) != `{"codecs":[]}` {
		t.Errorf("NewConsumer = %+v", nc)
	}

	cases := []struct {
		method, id string
		ok         bool
		data       string
		code       int
		reason     string
	}{
		{"answer", "9007199254740992", true, `{"a":"b"}`, 0, ""},
		{"newDataConsumer", "12", false, "", 403, "no data channels"},
		{"coded", "13", false, "", 405, "wrapped: no such method"},
		{"other", "14", false, "", 500, "boom"},
	}
	for _, tc := range cases {
		sc.sendRaw(t, fmt.Sprintf(`{"request":true,"id":%s,"method":%q}`, tc.id, tc.method))
		m := sc.recv(t)
		if !m.Response || string(m.ID) != tc.id || m.OK == nil || *m.OK != tc.ok ||
			(tc.ok && string(m.Data) != tc.data) || m.ErrorCode != tc.code || m.ErrorReason != tc.reason {
			t.Errorf("%s: response = %+v", tc.method, m)
		}
	}
}

func TestServerRequestDefaultAnswer(t *testing.T) {
	s := newTestServer(t, "")
	_, sc := dial(t, s, nil)
	sc.sendRaw(t, `{"request":true,"id":5,"method":"newDataConsumer","data":null}`)
	m := sc.recv(t)
	if !m.Response || string(m.ID) != "5" || m.OK == nil || !*m.OK || string(m.Data) != "{}" {
		t.Errorf("response = %+v", m)
	}
}

func TestNotifications(t *testing.T) {
	s := newTestServer(t, "")
	type note struct {
		method string
		i      int
	}
	notes := make(chan note, 1000)
	c, sc := dial(t, s, &DialOptions{
		OnNotification: func(method string, data json.RawMessage) {
			var d struct{ I int }
			json.Unmarshal(data, &d)
			notes <- note{method, d.I}
		},
	})
	ctx := testCtx(t)

	// Junk frames are counted and ignored, the connection stays usable.
	sc.sendRaw(t, `not json`)
	sc.sendRaw(t, `{"foo":1}`)
	sc.notify(t, "mediasoup-version", map[string]string{"version": "3.14.0"})
	const n = 200
	for i := range n {
		sc.notify(t, "n", map[string]int{"i": i})
	}
	// All delivered in order to OnNotification.
	for i := -1; i < n; i++ {
		select {
		case got := <-notes:
			want := note{"n", i}
			if i < 0 {
				want = note{"mediasoup-version", 0}
			}
			if got != want {
				t.Fatalf("notification %d = %+v, want %+v", i+1, got, want)
			}
		case <-time.After(waitTime):
			t.Fatalf("notification %d not delivered", i+1)
		}
	}
	if c.BadFrames() != 2 {
		t.Errorf("BadFrames = %d, want 2", c.BadFrames())
	}

	// WaitNotification sees notifications that arrived before the call.
	data, err := c.WaitNotification(ctx, "mediasoup-version", nil)
	if err != nil || string(data) != `{"version":"3.14.0"}` {
		t.Fatalf("WaitNotification = %s, %v", data, err)
	}
	is := func(want int) func(json.RawMessage) bool {
		return func(d json.RawMessage) bool {
			var v struct{ I int }
			return json.Unmarshal(d, &v) == nil && v.I == want
		}
	}
	if data, err := c.WaitNotification(ctx, "n", is(150)); err != nil || string(data) != `{"i":150}` {
		t.Fatalf("WaitNotification(150) = %s, %v", data, err)
	}
	// Oldest first, each returned once.
	if data, err := c.WaitNotification(ctx, "n", nil); err != nil || string(data) != `{"i":0}` {
		t.Fatalf("WaitNotification(any) = %s, %v", data, err)
	}
	// A consumed notification is not returned again.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.WaitNotification(short, "n", is(150)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second WaitNotification(150): %v", err)
	}

	// A notification arriving during the wait.
	type res struct {
		data json.RawMessage
		err  error
	}
	waited := make(chan res, 1)
	go func() {
		d, err := c.WaitNotification(ctx, "peerClosed", func(d json.RawMessage) bool {
			var pc PeerClosed
			return json.Unmarshal(d, &pc) == nil && pc.PeerID == "bob"
		})
		waited <- res{d, err}
	}()
	sc.notify(t, "peerClosed", PeerClosed{PeerID: "carol"})
	sc.notify(t, "peerClosed", PeerClosed{PeerID: "bob"})
	if r := <-waited; r.err != nil || string(r.data) != `{"peerId":"bob"}` {
		t.Fatalf("WaitNotification(peerClosed) = %s, %v", r.data, r.err)
	}
	if data, err := c.WaitNotification(ctx, "", nil); err != nil || string(data) != `{"i":1}` {
		t.Fatalf("WaitNotification(\"\") = %s, %v", data, err)
	}

	// After the connection is gone, buffered notifications are still found.
	sc.notify(t, "last", nil)
	sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"), time.Now().Add(waitTime))
	<-c.Done()
	if data, err := c.WaitNotification(ctx, "last", nil); err != nil || string(data) != "{}" {
		t.Fatalf("WaitNotification(last) after close = %s, %v", data, err)
	}
	if _, err := c.WaitNotification(ctx, "never", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitNotification after close: %v", err)
	}
}

func TestNotificationBacklogBounded(t *testing.T) {
	s := newTestServer(t, "")
	c, sc := dial(t, s, &DialOptions{NotificationBacklog: 10})
	ctx := testCtx(t)
	for i := range 25 {
		sc.notify(t, "n", map[string]int{"i": i})
	}
	if _, err := c.WaitNotification(ctx, "n", func(d json.RawMessage) bool { return string(d) == `{"i":24}` }); err != nil {
		t.Fatal(err)
	}
	// Only the last 10 were kept: 15..24, and 24 is consumed.
	if data, err := c.WaitNotification(ctx, "n", nil); err != nil || string(data) != `{"i":15}` {
		t.Fatalf("oldest kept = %s, %v", data, err)
	}
}

func TestHandshakeError(t *testing.T) {
	s := newTestServer(t, "secret")
	ctx := testCtx(t)

	_, err := Dial(ctx, s.URL, "r", "p", nil)
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 403 || he.Body != "bad token" {
		t.Fatalf("no token: err = %#v", err)
	}
	_, err = Dial(ctx, s.URL, "r", "p", &DialOptions{Subprotocols: []string{}, Query: url.Values{"token": {"secret"}}})
	if !errors.As(err, &he) || he.Status != 403 || he.Body != "protoo subprotocol required" {
		t.Fatalf("no protoo: err = %#v", err)
	}
	_, err = Dial(ctx, s.URL, "", "p", &DialOptions{Query: url.Values{"token": {"secret"}}})
	if !errors.As(err, &he) || he.Status != 400 {
		t.Fatalf("no roomId: err = %#v", err)
	}

	wsURL := "ws" + s.URL[len("http"):]
	c, err := Dial(ctx, wsURL, "r", "p", &DialOptions{Query: url.Values{"token": {"secret"}}})
	if err != nil {
		t.Fatalf("with token: %v", err)
	}
	sc := s.accept(t)
	if sc.ws.Subprotocol() != Subprotocol {
		t.Errorf("subprotocol = %q", sc.ws.Subprotocol())
	}
	c.Close()

	if _, err := Dial(ctx, "ftp://x", "r", "p", nil); err == nil {
		t.Error("ftp URL accepted")
	}
}

func TestCloseCode(t *testing.T) {
	s := newTestServer(t, "")

	// The server closes the peer on purpose.
	c, sc := dial(t, s, nil)
	sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "kicked"), time.Now().Add(waitTime))
	select {
	case <-c.Done():
	case <-time.After(waitTime):
		t.Fatal("not done")
	}
	if c.CloseCode() != 4000 {
		t.Errorf("CloseCode = %d, want 4000", c.CloseCode())
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err = %v", c.Err())
	}
	var ce *websocket.CloseError
	if !errors.As(c.Err(), &ce) || ce.Text != "kicked" {
		t.Errorf("Err = %v, want the close error", c.Err())
	}
	if err := c.Request(testCtx(t), "join", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Request after close: %v", err)
	}
	if err := c.Notify("x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Notify after close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after server close: %v", err)
	}

	// The client closes normally.
	c, sc = dial(t, s, nil)
	if c.Err() != nil {
		t.Errorf("Err while open = %v", c.Err())
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	<-c.Done()
	<-sc.closed
	if !websocket.IsCloseError(sc.err, websocket.CloseNormalClosure) {
		t.Errorf("server saw %v, want close 1000", sc.err)
	}
	// 1000 is the server's answer to the close frame, read before Close gave
	// up waiting for it (closeTimeout, then the socket is closed and no close
	// code is read): Close returned on the answer, not on its timeout.
	if c.CloseCode() != 1000 {
		t.Errorf("CloseCode after Close = %d, want 1000 (Close took %v; closeTimeout %v)", c.CloseCode(), took, closeTimeout)
	}
	t.Logf("Close returned on the server's answer after %v (closeTimeout %v)", took.Round(time.Microsecond), closeTimeout)
	c.Close() // idempotent
}

// Pending requests fail with ErrClosed when the connection drops: they have
// no RequestTimeout and a context without deadline, so nothing else can end
// them. How fast is logged.
func TestPendingRequestFailsOnDrop(t *testing.T) {
	s := newTestServer(t, "")
	c, sc := dial(t, s, &DialOptions{RequestTimeout: -1})

	errc := make(chan error, 2)
	for range 2 {
		go func() { errc <- c.Request(context.Background(), "join", nil, nil) }()
	}
	sc.recv(t)
	sc.recv(t)
	start := time.Now()
	sc.ws.Close() // drop the TCP connection, no close frame
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("err = %v, want ErrClosed", err)
			}
		case <-time.After(waitTime):
			t.Fatalf("pending requests still waiting %v after the drop", waitTime)
		}
	}
	t.Logf("pending requests failed %v after the drop", time.Since(start).Round(time.Microsecond))
	<-c.Done()
	if c.CloseCode() != 0 {
		t.Errorf("CloseCode = %d, want 0", c.CloseCode())
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	s := newTestServer(t, "")
	before := runtime.NumGoroutine()

	for round := range 4 {
		notes := make(chan struct{}, 10)
		c, sc := dial(t, s, &DialOptions{
			OnNotification: func(string, json.RawMessage) { notes <- struct{}{} },
			OnRequest:      func(string, json.RawMessage) (any, error) { return nil, nil },
		})
		ctx := testCtx(t)
		sc.notify(t, "n", nil)
		<-notes
		sc.sendRaw(t, `{"request":true,"id":1,"method":"newConsumer","data":{}}`)
		sc.recv(t)
		errc := make(chan error, 2)
		go func() { errc <- c.Request(ctx, "join", nil, nil) }()
		sc.reply(t, sc.recv(t), `{}`)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		// Left pending and waiting when the connection ends.
		go func() { errc <- c.Request(ctx, "hang", nil, nil) }()
		go func() { _, err := c.WaitNotification(ctx, "never", nil); errc <- err }()
		sc.recv(t)
		switch round % 3 {
		case 0:
			c.Close()
		case 1:
			sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, ""), time.Now().Add(waitTime))
		case 2:
			sc.ws.Close()
		}
		for range 2 {
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Errorf("round %d: %v", round, err)
			}
		}
		<-c.Done()
		<-sc.closed
	}

	deadline := time.Now().Add(waitTime)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNotificationHandlerMayRequest(t *testing.T) {
	s := newTestServer(t, "")
	conn := make(chan *Conn, 1)
	answered := make(chan error, 1)
	c, sc := dial(t, s, &DialOptions{
		OnNotification: func(method string, _ json.RawMessage) {
			if method != "ask" {
				return
			}
			c := <-conn
			answered <- c.Request(context.Background(), "answer", nil, nil)
		},
	})
	conn <- c
	sc.notify(t, "ask", nil)
	req := sc.recv(t)
	if req.Method != "answer" {
		t.Fatalf("got %+v", req)
	}
	sc.reply(t, req, `{}`)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
}

// OnMessage sees requests, responses and notifications in the order they
// arrived, each before it is handled (a response before Request returns).
func TestOnMessageInArrivalOrder(t *testing.T) {
	s := newTestServer(t, "")
	var mu sync.Mutex
	var seen []string
	c, sc := dial(t, s, &DialOptions{OnMessage: func(m Message) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s %v %s", m.Kind, m.Method, m.OK, m.Data))
	}})
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() { done <- c.Request(ctx, "join", nil, nil) }()
	req := sc.recv(t)
	sc.notify(t, "newPeer", map[string]string{"id": "bob"})
	sc.sendRaw(t, `{"request":true,"id":7,"method":"newConsumer","data":{"id":"c1"}}`)
	sc.reply(t, req, `{"peers":[]}`)
	sc.notify(t, "consumerPaused", map[string]string{"consumerId": "c1"})
	sc.sendRaw(t, `{"response":true,"id":123456789012,"ok":false,"errorCode":500,"errorReason":"late"}`)
	sc.sendRaw(t, `{"notification":true,"method":"peerClosed"}`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	// The join response was seen before Request returned.
	if len(seen) < 3 || seen[2] != `response join true {"peers":[]}` {
		t.Errorf("when join returned: %q", seen)
	}
	mu.Unlock()
	if m := sc.recv(t); !m.Response || string(m.ID) != "7" {
		t.Fatalf("newConsumer answer: %+v", m)
	}
	if _, err := c.WaitNotification(ctx, "peerClosed", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		`notification newPeer false {"id":"bob"}`,
		`request newConsumer false {"id":"c1"}`,
		`response join true {"peers":[]}`,
		`notification consumerPaused false {"consumerId":"c1"}`,
		`response  false {}`,
		`notification peerClosed false {}`,
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("OnMessage saw\n%q\nwant\n%q", seen, want)
	}
}

// Go writes the request and returns: the next one goes out behind it before
// the first is answered, and each Call gets its own answer, in whatever
// order the answers come.
func TestGoPipelines(t *testing.T) {
	s := newTestServer(t, "")
	c, sc := dial(t, s, nil)
	ctx := testCtx(t)
	first, err := c.Go(ctx, "join", map[string]string{"displayName": "a"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Go(ctx, "changeDisplayName", map[string]string{"displayName": "b"})
	if err != nil {
		t.Fatal(err)
	}
	m1, m2 := sc.recv(t), sc.recv(t)
	if m1.Method != "join" || m2.Method != "changeDisplayName" {
		t.Fatalf("sent %s then %s", m1.Method, m2.Method)
	}
	sc.replyError(t, m2, 409, "not joined")
	sc.reply(t, m1, `{"peers":[]}`)
	var joined JoinResponse
	if err := first.Wait(&joined); err != nil || joined.Peers == nil {
		t.Fatalf("join: %+v, %v", joined, err)
	}
	var re *ResponseError
	if err := second.Wait(nil); !errors.As(err, &re) || re.Code != 409 || re.Method != "changeDisplayName" {
		t.Fatalf("changeDisplayName: %v", err)
	}

	// The request timeout runs from Go.
	c2, sc2 := dial(t, s, &DialOptions{RequestTimeout: 50 * time.Millisecond})
	call, err := c2.Go(ctx, "slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	sc2.recv(t)
	if _, err := call.WaitRaw(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered call: %v", err)
	}
}
