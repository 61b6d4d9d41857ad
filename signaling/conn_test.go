package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// waitFor bounds every wait: tests poll, never sleep blindly, and the bound
// only ends a test that would wait forever; no wait comes close to it, even
// on a busy machine.
const waitFor = 30 * time.Second

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkLeaks fails the test if goroutines started during it are still
// running once its cleanups (servers, clients) are done. Call it first.
func checkLeaks(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(waitFor)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutine leak: %d > %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// stubSession answers requests with handler, or echoes {method, data}.
type stubSession struct {
	conn    *Conn
	handler func(c *Conn, ctx context.Context, method string, data json.RawMessage) (any, error)
	notes   chan string
	closed  atomic.Int32
}

func (s *stubSession) HandleRequest(ctx context.Context, method string, data json.RawMessage) (any, error) {
	if s.handler != nil {
		return s.handler(s.conn, ctx, method, data)
	}
	return map[string]any{"method": method, "data": data}, nil
}

func (s *stubSession) HandleNotification(method string, _ json.RawMessage) {
	select {
	case s.notes <- method:
	default:
	}
}

func (s *stubSession) Closed() { s.closed.Add(1) }

type accepted struct {
	conn    *Conn
	session *stubSession
}

type harness struct {
	t        *testing.T
	url      string
	accepted chan accepted
	calls    atomic.Int32 // accept calls
	// handler, if set before dialing, answers the requests of new sessions.
	handler func(c *Conn, ctx context.Context, method string, data json.RawMessage) (any, error)
	// acceptErr, if set, refuses connections.
	acceptErr error
	// onAccept runs inside accept (e.g. to Notify before the upgrade).
	onAccept func(c *Conn)
}

func newHarness(t *testing.T, limits Limits) *harness {
	t.Helper()
	h := &harness{t: t, accepted: make(chan accepted, 16)}
	accept := func(c *Conn, roomID, peerID string, r *http.Request) (Session, error) {
		h.calls.Add(1)
		if h.acceptErr != nil {
			return nil, h.acceptErr
		}
		if c.RoomID() != roomID || c.PeerID() != peerID || c.RemoteAddr() != r.RemoteAddr {
			t.Errorf("conn ids %q %q %q, accept got %q %q %q", c.RoomID(), c.PeerID(), c.RemoteAddr(), roomID, peerID, r.RemoteAddr)
		}
		s := &stubSession{conn: c, handler: h.handler, notes: make(chan string, 16)}
		if h.onAccept != nil {
			h.onAccept(c)
		}
		h.accepted <- accepted{c, s}
		return s, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NewWebSocketHandler(accept, limits, zap.NewNop()))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	h.url = "ws://" + ln.Addr().String() + "/"
	return h
}

// client is the test's protoo peer.
type client struct {
	t   *testing.T
	ws  *websocket.Conn
	wmu sync.Mutex
}

func (h *harness) dial(query string, protocols ...string) (*websocket.Conn, *http.Response, error) {
	if protocols == nil {
		protocols = []string{"protoo"}
	}
	d := websocket.Dialer{Subprotocols: protocols, HandshakeTimeout: waitFor}
	ws, resp, err := d.Dial(h.url+"?"+query, nil)
	if ws != nil {
		h.t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, err
}

// connect dials a protoo connection and returns the client with the
// server's Conn and Session.
func (h *harness) connect() (*client, accepted) {
	h.t.Helper()
	ws, _, err := h.dial("roomId=r1&peerId=p1")
	if err != nil {
		h.t.Fatal(err)
	}
	select {
	case a := <-h.accepted:
		return &client{t: h.t, ws: ws}, a
	case <-time.After(waitFor):
		h.t.Fatal("no accept")
	}
	panic("unreachable")
}

func (c *client) send(s string) {
	c.t.Helper()
	c.write(websocket.TextMessage, []byte(s))
}

func (c *client) write(mt int, b []byte) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(waitFor))
	if err := c.ws.WriteMessage(mt, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next message.
func (c *client) read() Message {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(waitFor))
	mt, b, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if mt != websocket.TextMessage {
		c.t.Fatalf("frame type %d", mt)
	}
	m, err := ParseMessage(b)
	if err != nil {
		c.t.Fatalf("server sent %s: %v", b, err)
	}
	return m
}

// request sends a request and reads its response (the next message).
func (c *client) request(id uint64, method, data string) Message {
	c.t.Helper()
	if data == "" {
		c.send(fmt.Sprintf(`{"request":true,"id":%d,"method":%q}`, id, method))
	} else {
		c.send(fmt.Sprintf(`{"request":true,"id":%d,"method":%q,"data":%s}`, id, method, data))
	}
	m := c.read()
	if m.Kind != KindResponse || m.ID != id {
		c.t.Fatalf("request %d: got %+v", id, m)
	}
	return m
}

// readClose reads until the connection fails and returns the error.
func (c *client) readClose() error {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(waitFor))
	for {
		if _, _, err := c.ws.ReadMessage(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatal("connection not closed")
			}
			return err
		}
	}
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// waitClosed waits for the Conn to be done and checks Session.Closed ran once.
func waitClosed(t *testing.T, a accepted) {
	t.Helper()
	select {
	case <-a.conn.Done():
	case <-time.After(waitFor):
		t.Fatal("connection not done")
	}
	if n := a.session.closed.Load(); n != 1 {
		t.Fatalf("Closed called %d times", n)
	}
}

// testLimits pings every second; the pong timeout (the default 30 s) is
// far from what a slow test step takes: a client that is only slow to read
// is not closed under a test (TestPongTimeout sets its own).
func testLimits() Limits {
	l := DefaultLimits()
	l.PingInterval = time.Second
	l.PongTimeout = 30 * time.Second
	return l
}

func TestHTTPRefusals(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	for _, tt := range []struct {
		query     string
		protocols []string
		status    int
		body      string
	}{
		{"peerId=p", nil, 400, "missing roomId"},
		{"roomId=r", nil, 400, "missing peerId"},
		{"roomId=&peerId=p", nil, 400, "missing roomId"},
		{"roomId=r&peerId=a%20b", nil, 400, "bad peerId"},
		{"roomId=r&peerId=a%0Ab", nil, 400, "bad peerId"},
		{"roomId=r&peerId=p&peerId=q", nil, 400, "bad peerId"},
		{"roomId=" + strings.Repeat("x", 129) + "&peerId=p", nil, 400, "bad roomId"},
		{"roomId=r&peerId=%FF", nil, 400, "bad peerId"},
		{"roomId=r&peerId=p", []string{}, 403, "protoo subprotocol required"},
		{"roomId=r&peerId=p", []string{"chat", "protoo-v2"}, 403, "protoo subprotocol required"},
	} {
		ws, resp, err := h.dial(tt.query, tt.protocols...)
		if err == nil {
			ws.Close()
			t.Errorf("%s %v: upgraded", tt.query, tt.protocols)
			continue
		}
		if resp == nil {
			t.Errorf("%s: %v", tt.query, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || string(body) != tt.body+"\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s %v: %d %q (%s), want %d %q", tt.query, tt.protocols, resp.StatusCode, body, resp.Header.Get("Content-Type"), tt.status, tt.body)
		}
	}

	// Not a WebSocket handshake: refused before accept.
	u := strings.Replace(h.url, "ws://", "http://", 1) + "?roomId=r&peerId=p"
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Sec-WebSocket-Protocol", "protoo")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || string(body) != "not a websocket handshake\n" {
		t.Errorf("plain GET: %d %q", resp.StatusCode, body)
	}
	if n := h.calls.Load(); n != 0 {
		t.Errorf("accept called %d times for refused requests", n)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestAcceptRefuses(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	for _, tt := range []struct {
		err    error
		status int
		body   string
	}{
		{Errorf(503, "server is draining"), 503, "server is draining"},
		{fmt.Errorf("auth: %w", &Error{Code: 401, Reason: "bad token"}), 401, "bad token"},
		{errors.New("boom\nsecond line"), 500, "boom second line"},
		{&Error{Code: 200, Reason: "not an error status"}, 500, "not an error status"},
	} {
		h.acceptErr = tt.err
		_, resp, err := h.dial("roomId=r&peerId=p")
		if err == nil || resp == nil {
			t.Fatalf("%v: upgraded (%v)", tt.err, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || string(body) != tt.body+"\n" {
			t.Errorf("%v: %d %q, want %d %q", tt.err, resp.StatusCode, body, tt.status, tt.body)
		}
	}
}

func TestHandshake(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	h.onAccept = func(c *Conn) {
		// Queued before the upgrade, sent right after it.
		if err := c.Notify("mediasoup-version", map[string]string{"version": "3.x"}); err != nil {
			t.Error(err)
		}
	}
	ws, resp, err := h.dial("roomId=room-1&peerId=p%C3%A9&consumerReplicas=undefined&token=x", "chat", "protoo")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "protoo" || ws.Subprotocol() != "protoo" {
		t.Errorf("subprotocol %q", got)
	}
	a := <-h.accepted
	if a.conn.RoomID() != "room-1" || a.conn.PeerID() != "pé" || !strings.HasPrefix(a.conn.RemoteAddr(), "127.0.0.1:") {
		t.Errorf("ids %q %q %q", a.conn.RoomID(), a.conn.PeerID(), a.conn.RemoteAddr())
	}
	c := &client{t: t, ws: ws}
	if m := c.read(); m.Kind != KindNotification || m.Method != "mediasoup-version" || string(m.Data) != `{"version":"3.x"}` {
		t.Errorf("first message %+v %s", m, m.Data)
	}
	// The client leaves: Closed once.
	ws.Close()
	waitClosed(t, a)
	if err := a.conn.Notify("x", nil); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Notify after close: %v", err)
	}
	if _, err := a.conn.Request(context.Background(), "x", nil); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Request after close: %v", err)
	}
}

func TestUpgradeFailsAfterAccept(t *testing.T) {
	checkLeaks(t)
	var s *stubSession
	hd := NewWebSocketHandler(func(c *Conn, _, _ string, _ *http.Request) (Session, error) {
		s = &stubSession{conn: c}
		return s, nil
	}, testLimits(), nil)
	r := httptest.NewRequest(http.MethodGet, "/?roomId=r&peerId=p", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	r.Header.Set("Sec-WebSocket-Protocol", "protoo")
	w := httptest.NewRecorder() // not a Hijacker
	hd.ServeHTTP(w, r)
	if w.Code != 500 {
		t.Errorf("status %d", w.Code)
	}
	if s == nil {
		t.Fatal("accept not called")
	}
	waitClosed(t, accepted{s.conn, s})
}

func TestRequestResponse(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	h.handler = func(_ *Conn, _ context.Context, method string, data json.RawMessage) (any, error) {
		switch method {
		case "notFound":
			return nil, Errorf(404, "producer %q not found", "x")
		case "wrapped":
			return nil, fmt.Errorf("produce: %w", Errorf(409, "not joined"))
		case "plain":
			return nil, errors.New("worker said no")
		case "panic":
			panic("handler bug")
		case "unencodable":
			return make(chan int), nil
		case "stats":
			return []map[string]int{{"a": 1}}, nil
		case "nil":
			return nil, nil
		}
		return map[string]any{"method": method, "data": data}, nil
	}
	c, a := h.connect()
	for _, id := range []uint64{0, 1, 7, MaxID - 1, MaxID} {
		m := c.request(id, "echo", `{"x":[1,2]}`)
		if !m.OK || string(m.Data) != `{"data":{"x":[1,2]},"method":"echo"}` {
			t.Errorf("id %d: %+v %s", id, m, m.Data)
		}
	}
	for _, data := range []string{"", "null"} {
		if m := c.request(3, "echo", data); string(m.Data) != `{"data":{},"method":"echo"}` {
			t.Errorf("data %q: handler got %s", data, m.Data)
		}
	}
	for _, tt := range []struct {
		method string
		code   int
		reason string
	}{
		{"notFound", 404, `producer "x" not found`},
		{"wrapped", 409, "not joined"},
		{"plain", 500, "worker said no"},
		{"panic", 500, "internal error"},
		{"unencodable", 500, "cannot encode response"},
	} {
		m := c.request(9, tt.method, `{}`)
		if m.OK || m.ErrorCode != tt.code || m.ErrorReason != tt.reason {
			t.Errorf("%s: %+v", tt.method, m)
		}
	}
	// Array data (stats) is sent as is (ParseMessage, the server's reader,
	// only takes objects: read it raw).
	c.send(`{"request":true,"id":10,"method":"stats"}`)
	if _, b, err := c.ws.ReadMessage(); err != nil || string(b) != `{"response":true,"id":10,"ok":true,"data":[{"a":1}]}` {
		t.Errorf("stats: %s %v", b, err)
	}
	if m := c.request(11, "nil", ""); !m.OK || string(m.Data) != `{}` {
		t.Errorf("nil: %+v %s", m, m.Data)
	}
	// Client notifications reach the session.
	c.send(`{"notification":true,"method":"hello","data":{}}`)
	select {
	case n := <-a.session.notes:
		if n != "hello" {
			t.Errorf("notification %q", n)
		}
	case <-time.After(waitFor):
		t.Error("notification not delivered")
	}
	c.ws.Close()
	waitClosed(t, a)
}

func TestRequestsInOrderAndDeferred(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	var running atomic.Int32
	h.handler = func(conn *Conn, _ context.Context, method string, _ json.RawMessage) (any, error) {
		if running.Add(1) != 1 {
			t.Error("two requests handled at once")
		}
		defer running.Add(-1)
		if method == "join" {
			return Deferred{Data: map[string]int{"peers": 0}, After: func() {
				_ = conn.Notify("afterJoin", nil)
			}}, nil
		}
		time.Sleep(time.Millisecond) // widen any overlap
		return map[string]string{"m": method}, nil
	}
	c, a := h.connect()
	for i := range 20 {
		c.send(fmt.Sprintf(`{"request":true,"id":%d,"method":"m%d"}`, i, i))
	}
	c.send(`{"request":true,"id":100,"method":"join"}`)
	for i := range 20 {
		if m := c.read(); m.ID != uint64(i) || string(m.Data) != fmt.Sprintf(`{"m":"m%d"}`, i) {
			t.Fatalf("response %d: %+v %s", i, m, m.Data)
		}
	}
	if m := c.read(); m.Kind != KindResponse || m.ID != 100 {
		t.Fatalf("join response: %+v", m)
	}
	if m := c.read(); m.Kind != KindNotification || m.Method != "afterJoin" {
		t.Fatalf("after join: %+v", m)
	}
	c.ws.Close()
	waitClosed(t, a)
}

func TestMalformed(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.MaxMalformed = 12
	h := newHarness(t, l)
	c, a := h.connect()
	bad := []string{
		`null`, `[]`, `42`, `"x"`, `{}`, `{"request":true}`, `not json`, `{"request":true,"id":-1,"method":"m"}`,
		`{"request":true,"id":1,"method":"m","data":[]}`, `{"response":true,"id":"1","ok":true}`,
	}
	for _, b := range bad {
		c.send(b)
	}
	c.write(websocket.BinaryMessage, []byte(`{"request":true,"id":1,"method":"m"}`))
	// 11 malformed frames: no answer to any, still open.
	if m := c.request(5, "echo", ""); !m.OK {
		t.Fatalf("after malformed: %+v", m)
	}
	// A response to no pending request is not malformed.
	c.send(`{"response":true,"id":123,"ok":true}`)
	if m := c.request(6, "echo", ""); !m.OK {
		t.Fatalf("after stray response: %+v", m)
	}
	c.send(`{`) // the 12th
	if err := c.readClose(); closeCode(err) != websocket.ClosePolicyViolation {
		t.Fatalf("close: %v", err)
	}
	waitClosed(t, a)
}

func TestOversizedFrame(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.MaxFrameBytes = 1024
	h := newHarness(t, l)
	c, a := h.connect()
	small := `{"request":true,"id":1,"method":"m","data":{"pad":"` + strings.Repeat("x", 900) + `"}}`
	if m := c.request(1, "m", `{"pad":"`+strings.Repeat("x", 900)+`"}`); !m.OK || len(small) > 1024 {
		t.Fatalf("small frame: %+v", m)
	}
	c.send(`{"request":true,"id":2,"method":"m","data":{"pad":"` + strings.Repeat("x", 2000) + `"}}`)
	if err := c.readClose(); closeCode(err) != websocket.CloseMessageTooBig {
		t.Fatalf("close: %v", err)
	}
	waitClosed(t, a)
}

func TestRateLimit(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	// 12 requests at once against a burst of 5 and 2 more per second: all
	// would pass only if reading 12 frames took the server 3.5 s.
	l.RequestRate = 2
	l.RequestBurst = 5
	h := newHarness(t, l)
	c, a := h.connect()
	const n = 12
	for i := range n {
		c.send(fmt.Sprintf(`{"request":true,"id":%d,"method":"m"}`, i))
	}
	limited := 0
	for range n {
		m := c.read()
		if !m.OK {
			if m.ErrorCode != 429 || m.ErrorReason != "rate limited" {
				t.Fatalf("error %+v", m)
			}
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("no request rate limited")
	}
	// The bucket refills: requests work again.
	id := uint64(100)
	eventually(t, "a request accepted again", func() bool {
		id++
		return c.request(id, "m", "").OK
	})
	c.ws.Close()
	waitClosed(t, a)
}

// TestRequestQueueFull: while one request is being handled, RequestBurst
// more wait; one over that is answered 429 at once, and the waiting ones
// are handled, in order, once the first is done. The queue gives its
// memory back when drained.
func TestRequestQueueFull(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.RequestRate = -1 // only the queue's bound
	l.RequestBurst = 3
	h := newHarness(t, l)
	entered, release := make(chan struct{}), make(chan struct{})
	h.handler = func(_ *Conn, _ context.Context, method string, _ json.RawMessage) (any, error) {
		if method == "block" {
			close(entered)
			<-release
		}
		return map[string]string{"method": method}, nil
	}
	c, a := h.connect()
	c.send(`{"request":true,"id":0,"method":"block"}`)
	<-entered
	for i := 1; i <= 5; i++ {
		c.send(fmt.Sprintf(`{"request":true,"id":%d,"method":"m"}`, i))
	}
	for _, id := range []uint64{4, 5} {
		m := c.read()
		if m.ID != id || m.OK || m.ErrorCode != 429 || m.ErrorReason != "too many pending requests" {
			t.Fatalf("want 429 for request %d, got %+v", id, m)
		}
	}
	if n := a.conn.requests.len(); n != 3 {
		t.Fatalf("%d requests waiting, want 3", n)
	}
	close(release)
	for _, id := range []uint64{0, 1, 2, 3} {
		if m := c.read(); m.ID != id || !m.OK {
			t.Fatalf("want request %d answered, got %+v", id, m)
		}
	}
	eventually(t, "the drained queue's array let go", func() bool {
		q := a.conn.requests
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.msgs) == 0 && q.head == 0
	})
	c.ws.Close()
	waitClosed(t, a)
}

// answerServerRequests is the client side of the server-request tests: it
// answers "accept" with ok, "reject" with 403, ignores the rest, and
// returns when the connection fails.
func (c *client) answerServerRequests() (done <-chan struct{}) {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for {
			_, b, err := c.ws.ReadMessage()
			if err != nil {
				return
			}
			m, err := ParseMessage(b)
			if err != nil || m.Kind != KindRequest {
				continue
			}
			var out []byte
			switch m.Method {
			case "accept":
				out = must(EncodeResponseOK(m.ID, json.RawMessage(`{"got":`+string(m.Data)+`}`)))
			case "reject":
				out = EncodeResponseError(m.ID, 403, "no thanks")
			default:
				continue
			}
			c.wmu.Lock()
			err = c.ws.WriteMessage(websocket.TextMessage, out)
			c.wmu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func pendingRequests(c *Conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// The answers, the caller's context, and the pending limit. The server
// request timeout is an hour: no answer the client gives on a slow machine
// can race it.
func TestServerRequest(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.ServerRequestTimeout = time.Hour
	l.MaxPendingServerRequests = 2
	h := newHarness(t, l)
	c, a := h.connect()
	clientDone := c.answerServerRequests()

	ctx := context.Background()
	data, err := a.conn.Request(ctx, "accept", map[string]int{"n": 1})
	if err != nil || string(data) != `{"got":{"n":1}}` {
		t.Fatalf("accept: %s %v", data, err)
	}
	_, err = a.conn.Request(ctx, "reject", nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != 403 || re.Reason != "no thanks" {
		t.Fatalf("reject: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.conn.Request(cctx, "ignore", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if n := pendingRequests(a.conn); n != 0 {
		t.Fatalf("%d pending after a cancelled request", n)
	}

	// The pending limit.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := a.conn.Request(ctx, "ignore", nil)
			errs <- err
		}()
	}
	eventually(t, "2 pending requests", func() bool { return pendingRequests(a.conn) == 2 })
	if _, err := a.conn.Request(ctx, "ignore", nil); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("third pending: %v", err)
	}
	a.conn.Close(4000, "bye")
	pendingFailClosed(t, errs, 2)
	waitClosed(t, a)
	<-clientDone
}

// An unanswered server request fails with ErrRequestTimeout, not before
// ServerRequestTimeout, and is forgotten.
func TestServerRequestTimeout(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.ServerRequestTimeout = 200 * time.Millisecond
	h := newHarness(t, l)
	c, a := h.connect()
	clientDone := c.answerServerRequests()

	start := time.Now()
	got := make(chan error, 1)
	go func() {
		_, err := a.conn.Request(context.Background(), "ignore", nil)
		got <- err
	}()
	select {
	case err := <-got:
		took := time.Since(start)
		if !errors.Is(err, ErrRequestTimeout) || took < l.ServerRequestTimeout {
			t.Fatalf("ignore: %v after %v", err, took)
		}
		t.Logf("unanswered request failed after %v (ServerRequestTimeout %v)", took.Round(time.Millisecond), l.ServerRequestTimeout)
	case <-time.After(l.ServerRequestTimeout + waitFor):
		t.Fatalf("unanswered request still waiting %v after its timeout", waitFor)
	}
	if n := pendingRequests(a.conn); n != 0 {
		t.Fatalf("%d pending after timeout", n)
	}
	c.ws.Close()
	waitClosed(t, a)
	<-clientDone
}

// Close fails the pending server requests at once: without waiting for
// their timeout (an hour here), nor for the session's running handler to
// return (it blocks until the test lets it go, so the connection cannot
// finish closing before that).
func TestCloseFailsPendingRequests(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.ServerRequestTimeout = time.Hour
	h := newHarness(t, l)
	release := make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer letGo() // also on failure: let the connection finish
	handling := make(chan struct{})
	h.handler = func(_ *Conn, _ context.Context, _ string, _ json.RawMessage) (any, error) {
		close(handling)
		<-release // ignores the cancellation: the connection cannot finish closing
		return nil, nil
	}
	c, a := h.connect()
	clientDone := c.answerServerRequests() // ignores "ignore", answers the close frame
	c.send(`{"request":true,"id":1,"method":"block"}`)
	<-handling

	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := a.conn.Request(context.Background(), "ignore", nil)
			errs <- err
		}()
	}
	eventually(t, "2 pending requests", func() bool { return pendingRequests(a.conn) == 2 })
	start := time.Now()
	a.conn.Close(4000, "bye")
	pendingFailClosed(t, errs, 2)
	failed := time.Since(start)
	select {
	case <-a.conn.Done():
		t.Fatal("the connection finished closing while its handler still ran")
	default:
	}
	t.Logf("pending requests failed %v after Close", failed.Round(time.Microsecond))
	letGo()
	waitClosed(t, a)
	<-clientDone
}

func TestHandlerBlockingKeepsReading(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	release := make(chan struct{})
	h.handler = func(_ *Conn, ctx context.Context, method string, _ json.RawMessage) (any, error) {
		if method == "block" {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, nil
	}
	c, a := h.connect()
	c.send(`{"request":true,"id":1,"method":"block"}`)
	// While the handler blocks, a server request is still answered.
	got := make(chan error, 1)
	go func() {
		_, err := a.conn.Request(context.Background(), "newConsumer", nil)
		got <- err
	}()
	m := c.read()
	if m.Kind != KindRequest || m.Method != "newConsumer" {
		t.Fatalf("got %+v", m)
	}
	c.send(string(must(EncodeResponseOK(m.ID, nil))))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	close(release)
	if m := c.read(); m.ID != 1 || !m.OK {
		t.Fatalf("block response: %+v", m)
	}
	c.ws.Close()
	waitClosed(t, a)
}

func TestNotifyOrderAndClose(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	c, a := h.connect()
	const n = 500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if err := a.conn.Notify("seq", map[string]int{"i": i}); err != nil {
				t.Error(err)
				return
			}
		}
		a.conn.Close(4000, "room closed")
		a.conn.Close(1000, "again") // idempotent
	}()
	for i := range n {
		m := c.read()
		if m.Method != "seq" || string(m.Data) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("message %d: %+v %s", i, m, m.Data)
		}
	}
	err := c.readClose()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "room closed" {
		t.Fatalf("close: %v", err)
	}
	wg.Wait()
	waitClosed(t, a)
	if err := a.conn.Notify("late", nil); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Notify after Close: %v", err)
	}
}

func TestCloseWaitsForHandler(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits())
	started := make(chan struct{})
	var returned atomic.Bool
	var closedAfter atomic.Bool
	h.handler = func(_ *Conn, ctx context.Context, _ string, _ json.RawMessage) (any, error) {
		close(started)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // a slow return after cancellation
		returned.Store(true)
		return nil, ctx.Err()
	}
	c, a := h.connect()
	c.send(`{"request":true,"id":1,"method":"slow"}`)
	<-started
	go func() {
		<-a.conn.Done()
		closedAfter.Store(returned.Load())
	}()
	c.ws.Close()
	waitClosed(t, a)
	eventually(t, "done observed", func() bool { return closedAfter.Load() })
}

// A client that answers no ping is closed after PongTimeout (not before;
// the bound on after is waitFor, the figure is logged); one that answers
// stays connected past PongTimeout. The second half runs with a pong
// timeout of 2 s: a client stalled that long on a busy machine would rightly
// be closed, and none is.
func TestPongTimeout(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.PingInterval = 50 * time.Millisecond
	l.PongTimeout = 300 * time.Millisecond
	h := newHarness(t, l)
	c, a := h.connect()
	var pings atomic.Int32
	c.ws.SetPingHandler(func(string) error { pings.Add(1); return nil }) // never answers
	start := time.Now()
	err := c.readClose()
	d := time.Since(start)
	if d < l.PongTimeout/2 {
		t.Errorf("closed after %v", d)
	}
	t.Logf("a client answering no ping closed after %v (PongTimeout %v)", d.Round(time.Millisecond), l.PongTimeout)
	if pings.Load() == 0 {
		t.Error("no ping received")
	}
	if code := closeCode(err); code != websocket.CloseGoingAway {
		t.Logf("close: %v", err) // best effort: the close frame may not make it
	}
	waitClosed(t, a)

	// A client that answers pings (gorilla's default ping handler, while
	// it reads) stays connected past PongTimeout.
	l2 := testLimits()
	l2.PingInterval = 100 * time.Millisecond
	l2.PongTimeout = 2 * time.Second
	h2 := newHarness(t, l2)
	c2, a2 := h2.connect()
	var pongs atomic.Int32
	c2.ws.SetPingHandler(func(data string) error {
		pongs.Add(1)
		return c2.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(waitFor))
	})
	_ = c2.ws.SetReadDeadline(time.Now().Add(l2.PongTimeout * 3 / 2))
	if _, _, err := c2.ws.ReadMessage(); err == nil {
		t.Fatal("unexpected message")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("answering client closed: %v", err)
	}
	select {
	case <-a2.conn.Done():
		t.Fatal("server closed an answering client")
	default:
	}
	if pongs.Load() == 0 {
		t.Fatal("no ping answered")
	}
	// (the client's read timed out, so this connection is unusable: close it)
	c2.ws.Close()
	waitClosed(t, a2)
}

func TestSlowConsumer(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.SendQueueBytes = 128 << 10
	h := newHarness(t, l)
	_, a := h.connect() // the client never reads
	payload := map[string]string{"pad": strings.Repeat("x", 32<<10)}
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = a.conn.Notify("big", payload)
	}
	if !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Notify: %v", err)
	}
	waitClosed(t, a)
}

func TestProtocolError(t *testing.T) {
	for _, tt := range []struct {
		err    error
		code   int
		reason string
	}{
		{Errorf(404, "no %s", "producer"), 404, "no producer"},
		{fmt.Errorf("x: %w", Errorf(403, "not yours")), 403, "not yours"},
		{codedError{errors.New("draining")}, 503, "draining"},
		{fmt.Errorf("x: %w", codedError{errors.New("draining")}), 503, "x: draining"},
		{errors.New("worker failed"), 500, "worker failed"},
		{&Error{Reason: "zero"}, 500, "zero"},
		{nil, 500, "internal error"},
	} {
		code, reason := ProtocolError(tt.err)
		if code != tt.code || reason != tt.reason {
			t.Errorf("ProtocolError(%v) = %d %q, want %d %q", tt.err, code, reason, tt.code, tt.reason)
		}
	}
	if s := Errorf(409, "already joined").Error(); s != "409 already joined" {
		t.Errorf("Error() = %q", s)
	}
	if s := (&RemoteError{Code: 500, Reason: "x"}).Error(); !strings.Contains(s, "500") {
		t.Errorf("RemoteError.Error() = %q", s)
	}
}

type codedError struct{ error }

func (codedError) ProtocolCode() int { return 503 }

func TestLimitsDefaults(t *testing.T) {
	got := Limits{RequestRate: -1, MaxMalformed: -1, SendQueueBytes: 7}.withDefaults()
	d := DefaultLimits()
	if got.RequestRate != -1 || got.MaxMalformed != -1 || got.SendQueueBytes != 7 || got.PingInterval != d.PingInterval ||
		got.MaxFrameBytes != 1<<20 || got.PongTimeout != 30*time.Second || got.ServerRequestTimeout != 15*time.Second {
		t.Errorf("withDefaults: %+v", got)
	}
}

// pendingFailClosed waits for n pending server requests (their errors on
// errs) to fail with ErrConnClosed.
func pendingFailClosed(t *testing.T, errs <-chan error, n int) {
	t.Helper()
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrConnClosed) {
				t.Fatalf("pending at close: %v", err)
			}
		case <-time.After(waitFor):
			t.Fatalf("pending requests still waiting %v after Close", waitFor)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
