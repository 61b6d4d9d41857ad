package signaling

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/room"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Subprotocol is the WebSocket subprotocol clients must offer.
const Subprotocol = "protoo"

// Limits bound what one WebSocket connection may cost. A zero field takes
// its default (DefaultLimits).
type Limits struct {
	// MaxFrameBytes: a larger frame closes the connection (1009). Default 1 MiB.
	MaxFrameBytes int64
	// RequestRate is the sustained client requests per second per
	// connection (default 50); negative means unlimited.
	RequestRate float64
	// RequestBurst (default 100): requests beyond the rate and burst get an
	// error response 429 and are not handled. It also bounds the queue of
	// requests waiting for the handler (a full queue answers 429 too),
	// which holds nothing while none wait.
	RequestBurst int
	// MaxPendingServerRequests (default 1000): Request beyond it fails
	// with ErrTooManyPending and sends nothing.
	MaxPendingServerRequests int
	// MaxMalformed (default 50) malformed frames close the connection
	// (1008); negative means never.
	MaxMalformed int
	// PingInterval between keep-alive pings. Default 10s.
	PingInterval time.Duration
	// PongTimeout (default 30s): no pong nor any frame for this long closes
	// the connection. It also bounds each frame write.
	PongTimeout time.Duration
	// ServerRequestTimeout bounds Request (newConsumer etc.). Default 15s.
	ServerRequestTimeout time.Duration
	// SendQueueBytes (default 4 MiB) of outgoing frames may wait to be
	// written; a client that does not read and overflows it is closed (slow
	// consumer). The queue holds nothing while nothing waits: an idle peer
	// costs no queue. (A room stampede queues one newPeer per joiner to
	// every peer: 2,000 joiners are ≈ 300 KB.)
	SendQueueBytes int
	// HandshakeTimeout for writing the HTTP upgrade answer. Default 10s.
	HandshakeTimeout time.Duration
	// CheckOrigin decides whether the Origin of an upgrade request is
	// allowed (403 if not). nil allows any origin.
	CheckOrigin func(r *http.Request) bool
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxFrameBytes:            1 << 20,
		RequestRate:              50,
		RequestBurst:             100,
		MaxPendingServerRequests: 1000,
		MaxMalformed:             50,
		PingInterval:             10 * time.Second,
		PongTimeout:              30 * time.Second,
		ServerRequestTimeout:     15 * time.Second,
		SendQueueBytes:           4 << 20,
		HandshakeTimeout:         10 * time.Second,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFrameBytes <= 0 {
		l.MaxFrameBytes = d.MaxFrameBytes
	}
	if l.RequestRate == 0 {
		l.RequestRate = d.RequestRate
	}
	if l.RequestBurst <= 0 {
		l.RequestBurst = d.RequestBurst
	}
	if l.MaxPendingServerRequests <= 0 {
		l.MaxPendingServerRequests = d.MaxPendingServerRequests
	}
	if l.MaxMalformed == 0 {
		l.MaxMalformed = d.MaxMalformed
	}
	if l.PingInterval <= 0 {
		l.PingInterval = d.PingInterval
	}
	if l.PongTimeout <= 0 {
		l.PongTimeout = d.PongTimeout
	}
	if l.ServerRequestTimeout <= 0 {
		l.ServerRequestTimeout = d.ServerRequestTimeout
	}
	if l.SendQueueBytes <= 0 {
		l.SendQueueBytes = d.SendQueueBytes
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = d.HandshakeTimeout
	}
	return l
}

// Session is what a connection serves requests to (the rooms layer
// implements it).
type Session interface {
	// HandleRequest answers one client request. The result is JSON-encoded
	// as the response's data (nil → {}; a Deferred adds a follow-up); an error
	// becomes an error response through ProtocolError, a panic a 500.
	//
	// Requests of one connection are handled in order, one at a time, on a
	// goroutine of their own (not the reading one): the handler may block
	// (it talks to the mediasoup worker) while pings, answers to server
	// requests and rate limiting go on. It must not wait for an answer to
	// a Request on the same connection, though: the client may need an
	// answer to a later request of its own first (a first consume makes
	// mediasoup-client send connectWebRtcTransport), so such waits belong
	// in a goroutine. ctx is cancelled when the connection closes.
	HandleRequest(ctx context.Context, method string, data json.RawMessage) (any, error)
	// HandleNotification receives client notifications (protoo allows them;
	// the protocol uses none). Called in order with the requests.
	HandleNotification(method string, data json.RawMessage)
	// Closed is called exactly once when the connection is gone, whatever
	// the reason, after the last HandleRequest call has returned.
	Closed()
}

// Deferred is a HandleRequest result whose After runs once the response is
// queued, so that anything After sends (notifications, server requests,
// also from goroutines it starts) goes out after the response: join answers
// {peers}, then sends newConsumer requests. After runs on the handling
// goroutine before the next request is handled, and not at all if the
// connection closed first; it must not block waiting for the client.
type Deferred struct {
	Data  any
	After func()
}

// AcceptFunc is called for a valid upgrade request, before the upgrade: it
// returns the Session of this peer, or an error that refuses the upgrade
// with an HTTP status (an *Error's Code when it is 4xx or 5xx, else 500) and
// the error's reason as a one-line plain text body. The Conn can be kept and
// used at once (Notify is queued until the upgrade is done); if the upgrade
// then fails, the Session's Closed is called.
type AcceptFunc func(c *Conn, roomID, peerID string, r *http.Request) (Session, error)

// Conn is one WebSocket peer connection speaking protoo. Its methods are
// safe for concurrent use.
type Conn struct {
	roomID, peerID, remoteAddr string
	limits                     Limits
	writeWait, closeGrace      time.Duration
	log                        *zap.Logger

	ws      *websocket.Conn // set before the goroutines start
	wsp     atomic.Pointer[websocket.Conn]
	session Session

	out *sendQueue // outgoing frames, in order
	nc  *batchConn // the WebSocket's connection (nil for a relayed one)
	// writeDeadline bounds the writer's current writes (writer only).
	writeDeadline time.Time
	requests      *requestQueue // client requests and notifications, in order

	closeOnce   sync.Once
	closing     chan struct{} // closed when the close starts
	closeCode   int           // close frame to send (0: none); set before closing is closed
	closeReason string
	closeFlush  bool // send what is queued before the close frame
	// lingering: the reader sent a close frame itself (1009) and is
	// discarding what the client still sends; the writer waits for it
	// before closing the socket.
	lingering atomic.Bool

	readerDone     chan struct{}
	dispatcherDone chan struct{}
	done           chan struct{} // closed after Session.Closed returned

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	pending map[uint64]chan Message
	nextID  uint64

	limiter   *rate.Limiter
	malformed int // reader goroutine only (the relay's, for a relayed connection)

	// Cluster mode (relay.go). pipe (edge): the client's frames go to the
	// owner unparsed; link (owner): the connection's frames travel over the
	// relay, not a WebSocket (ws is nil).
	pipe func(binary bool, b []byte)
	link cluster.Link
}

// RoomID returns the roomId of the connection URL.
func (c *Conn) RoomID() string { return c.roomID }

// PeerID returns the peerId of the connection URL.
func (c *Conn) PeerID() string { return c.peerID }

// RemoteAddr returns the client's address (http.Request.RemoteAddr).
func (c *Conn) RemoteAddr() string { return c.remoteAddr }

// Done is closed once the connection is gone and Session.Closed has
// returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Notify queues a notification; it never blocks. It goes out within
// lazyDelay, with the frames queued meanwhile, or sooner with the next
// response or server request (in order either way). It fails when the
// connection is closed, when data does not encode, and when the send queue
// is full (the connection is then closed as a slow consumer).
func (c *Conn) Notify(method string, data any) error {
	select {
	case <-c.closing:
		return ErrConnClosed
	default:
	}
	frame, err := EncodeNotification(method, data)
	if err != nil {
		return fmt.Errorf("signaling: notification %s: %w", method, err)
	}
	return c.enqueueFrame(frame, true)
}

// NotifyShared queues a notification that goes to many peers: it is
// encoded once, by the first connection it reaches, and the others queue
// the same bytes. Otherwise like Notify.
func (c *Conn) NotifyShared(n *room.Notification) error {
	select {
	case <-c.closing:
		return ErrConnClosed
	default:
	}
	frame, err := n.Frame(EncodeNotification)
	if err != nil {
		return fmt.Errorf("signaling: notification %s: %w", n.Method, err)
	}
	return c.enqueueFrame(frame, true)
}

// Request sends a server request and waits for the client's answer, ctx,
// Limits.ServerRequestTimeout (ErrRequestTimeout) or the connection's close
// (ErrConnClosed). An ok:false answer is a *RemoteError.
func (c *Conn) Request(ctx context.Context, method string, data any) (json.RawMessage, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		return nil, ErrConnClosed
	}
	if len(c.pending) >= c.limits.MaxPendingServerRequests {
		c.mu.Unlock()
		return nil, ErrTooManyPending
	}
	for {
		c.nextID++
		if c.nextID > MaxID {
			c.nextID = 1
		}
		if _, used := c.pending[c.nextID]; !used {
			break
		}
	}
	id := c.nextID
	ch := make(chan Message, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	defer c.forget(id)

	frame, err := EncodeRequest(id, method, data)
	if err != nil {
		return nil, fmt.Errorf("signaling: request %s: %w", method, err)
	}
	if err := c.enqueue(frame); err != nil {
		return nil, err
	}
	if q, ok := data.(interface{ Queued() }); ok {
		q.Queued() // see room.PeerConn
	}
	timer := time.NewTimer(c.limits.ServerRequestTimeout)
	defer timer.Stop()
	select {
	case m := <-ch:
		if !m.OK {
			return nil, &RemoteError{Code: m.ErrorCode, Reason: m.ErrorReason}
		}
		return m.Data, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, fmt.Errorf("%w: %s after %v", ErrRequestTimeout, method, c.limits.ServerRequestTimeout)
	case <-c.closing:
		return nil, ErrConnClosed
	}
}

func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Close closes the connection from the server side with a WebSocket close
// code (4000: protoo-client will not reconnect) after sending what is
// already queued. It does not wait (see Done) and is idempotent.
func (c *Conn) Close(code int, reason string) {
	c.shutdown(validCloseCode(code), truncateUTF8(reason, 123), true)
}

// shutdown starts the close, once: code 0 sends no close frame.
func (c *Conn) shutdown(code int, reason string, flush bool) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeReason, c.closeFlush = code, reason, flush
		close(c.closing)
		c.cancel()
	})
}

func (c *Conn) enqueue(frame []byte) error {
	return c.enqueueFrame(frame, false)
}

// enqueueFrame queues a frame; lazy: a notification, which may wait a
// little for more frames to go with it (sendQueue.pushLazy).
func (c *Conn) enqueueFrame(frame []byte, lazy bool) error {
	select {
	case <-c.closing:
		return ErrConnClosed
	default:
	}
	if lazy && c.out.pushLazy(frame) || !lazy && c.out.push(frame) {
		return nil
	}
	c.log.Warn("send queue full, closing slow consumer", zap.Int("queueBytes", c.limits.SendQueueBytes))
	c.shutdown(websocket.ClosePolicyViolation, "slow consumer", false)
	if ws := c.wsp.Load(); ws != nil {
		// A write blocked on a client that does not read ends within the
		// close grace; the close frame (1008) follows if the client reads.
		_ = ws.NetConn().SetWriteDeadline(time.Now().Add(c.closeGrace))
	}
	return ErrConnClosed
}

// ---- HTTP ----

type wsHandler struct {
	accept   AcceptFunc
	limits   Limits
	log      *zap.Logger
	upgrader websocket.Upgrader
}

// NewWebSocketHandler returns the handler of the protoo WebSocket endpoint
// (PROTOCOL.md §1): query parameters roomId and peerId (1–128 printable,
// non-space characters; 400 otherwise), subprotocol protoo (403 otherwise),
// then accept, then the upgrade.
func NewWebSocketHandler(accept AcceptFunc, limits Limits, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	limits = limits.withDefaults()
	checkOrigin := limits.CheckOrigin
	if checkOrigin == nil {
		checkOrigin = func(*http.Request) bool { return true }
	}
	return &wsHandler{
		accept: accept,
		limits: limits,
		log:    log,
		upgrader: websocket.Upgrader{
			HandshakeTimeout:  limits.HandshakeTimeout,
			ReadBufferSize:    4096,
			WriteBufferSize:   4096,
			Subprotocols:      []string{Subprotocol},
			CheckOrigin:       checkOrigin,
			EnableCompression: false,
			Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
				httpError(w, status, reason.Error())
			},
		},
	}
}

const maxQueryIDLen = 128

func (h *wsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	roomID, reason := queryID(q, "roomId")
	var peerID string
	if reason == "" {
		peerID, reason = queryID(q, "peerId")
	}
	if reason != "" {
		httpError(w, http.StatusBadRequest, reason)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
		httpError(w, http.StatusForbidden, "protoo subprotocol required")
		return
	}
	if status, reason := h.preflight(r); status != 0 {
		httpError(w, status, reason)
		return
	}

	c := h.newConn(roomID, peerID, r.RemoteAddr)
	session, err := h.callAccept(c, r)
	if err != nil {
		status, reason := c.refused("connection refused", err)
		httpError(w, status, reason)
		return
	}
	c.session = session

	c.nc = &batchConn{}
	ws, err := h.upgrader.Upgrade(batchingWriter{w, c.nc}, r, nil)
	if err != nil {
		c.log.Debug("upgrade failed", zap.Error(err))
		c.shutdown(0, "", false)
		c.finish()
		return
	}
	c.ws = ws
	c.wsp.Store(ws)
	c.log.Debug("connected")
	go c.writeLoop()
	go c.dispatchLoop()
	c.readLoop()
}

// refused ends a connection its accept refused (nothing of it started) and
// returns the HTTP status (4xx or 5xx) and reason to refuse it with.
func (c *Conn) refused(what string, err error) (int, string) {
	status, reason := ProtocolError(err)
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	c.log.Debug(what, zap.Int("status", status), zap.String("reason", reason))
	c.shutdown(0, "", false)
	c.mu.Lock()
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
	return status, reason
}

func (h *wsHandler) callAccept(c *Conn, r *http.Request) (s Session, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("accept panicked", zap.Any("panic", p), zap.Stack("stack"))
			s, err = nil, Errorf(http.StatusInternalServerError, "internal error")
		}
	}()
	s, err = h.accept(c, c.roomID, c.peerID, r)
	if err == nil && s == nil {
		err = Errorf(http.StatusInternalServerError, "no session")
	}
	return s, err
}

// preflight runs the checks of the WebSocket handshake that the upgrader
// would do, so that accept is only called for an upgrade that can succeed.
func (h *wsHandler) preflight(r *http.Request) (int, string) {
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, "method not allowed"
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return http.StatusBadRequest, "not a websocket handshake"
	}
	if !headerHasToken(r.Header, "Sec-Websocket-Version", "13") {
		return http.StatusBadRequest, "unsupported websocket version"
	}
	if key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key")); err != nil || len(key) != 16 {
		return http.StatusBadRequest, "bad Sec-WebSocket-Key"
	}
	if !h.upgrader.CheckOrigin(r) {
		return http.StatusForbidden, "origin not allowed"
	}
	return 0, ""
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// queryID returns the single value of an id query parameter, or the reason
// it is missing or bad.
func queryID(q url.Values, name string) (string, string) {
	vs := q[name]
	if len(vs) == 0 || vs[0] == "" {
		return "", "missing " + name
	}
	if len(vs) > 1 || !validID(vs[0]) {
		return "", "bad " + name
	}
	return vs[0], ""
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > maxQueryIDLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == ' ' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// httpError answers a plain text, one-line reason.
func httpError(w http.ResponseWriter, status int, reason string) {
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, truncateUTF8(reason, 200))
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, reason, status)
}

func (h *wsHandler) newConn(roomID, peerID, remoteAddr string) *Conn {
	l := h.limits
	ctx, cancel := context.WithCancel(context.Background())
	rl := rate.Limit(l.RequestRate)
	if l.RequestRate < 0 {
		rl = rate.Inf
	}
	c := &Conn{
		roomID:         roomID,
		peerID:         peerID,
		remoteAddr:     remoteAddr,
		limits:         l,
		writeWait:      l.PongTimeout,
		closeGrace:     min(l.PongTimeout, 2*time.Second),
		log:            h.log.With(zap.String("room", roomID), zap.String("peer", peerID), zap.String("remote", remoteAddr)),
		out:            newSendQueue(l.SendQueueBytes),
		requests:       newRequestQueue(l.RequestBurst),
		closing:        make(chan struct{}),
		readerDone:     make(chan struct{}),
		dispatcherDone: make(chan struct{}),
		done:           make(chan struct{}),
		ctx:            ctx,
		cancel:         cancel,
		pending:        make(map[uint64]chan Message),
		limiter:        rate.NewLimiter(rl, l.RequestBurst),
	}
	return c
}

// ---- the connection's goroutines ----

// readLoop reads frames until the connection fails (it runs on the HTTP
// handler's goroutine).
func (c *Conn) readLoop() {
	defer close(c.readerDone)
	ws := c.ws
	ws.SetReadLimit(c.limits.MaxFrameBytes)
	extend := func() { _ = ws.SetReadDeadline(time.Now().Add(c.limits.PongTimeout)) }
	extend()
	ws.SetPongHandler(func(string) error { extend(); return nil })
	ws.SetPingHandler(func(data string) error {
		extend()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.writeWait))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
			return nil // a broken connection shows on the next read
		}
		return err
	})
	var scratch bytes.Buffer
	for {
		mt, b, err := readFrame(ws, &scratch)
		if err != nil {
			c.readFailed(err)
			return
		}
		select {
		case <-c.closing:
			continue // only waiting for the client's close frame now
		default:
		}
		extend()
		if c.pipe != nil {
			c.pipe(mt != websocket.TextMessage, b) // to the owner, unparsed
			continue
		}
		c.handleFrame(mt != websocket.TextMessage, b)
	}
}

// readFrame is ws.ReadMessage reading through scratch, then copying the
// frame out at its size: ReadMessage (io.ReadAll) allocates 512 bytes for
// a 100-byte request, and for a larger frame a chain of ever larger
// buffers. A scratch grown past 64 KiB by a large frame is let go.
func readFrame(ws *websocket.Conn, scratch *bytes.Buffer) (int, []byte, error) {
	mt, r, err := ws.NextReader()
	if err != nil {
		return mt, nil, err
	}
	scratch.Reset()
	if _, err := scratch.ReadFrom(r); err != nil {
		return mt, nil, err
	}
	b := bytes.Clone(scratch.Bytes())
	if scratch.Cap() > 64<<10 {
		*scratch = bytes.Buffer{}
	}
	return mt, b, nil
}

// handleFrame handles one frame from the client: a request or notification
// is queued for the dispatcher (or answered 429), a response wakes its
// Request. It never blocks. Called in frame order by one goroutine: the
// reader, or for a relayed connection the relay's.
func (c *Conn) handleFrame(binary bool, b []byte) {
	if binary {
		c.badFrame("binary frame", b)
		return
	}
	m, err := ParseMessage(b)
	if err != nil {
		c.badFrame(err.Error(), b)
		return
	}
	switch m.Kind {
	case KindRequest:
		if !c.limiter.Allow() {
			c.log.Debug("request rate limited", zap.String("method", m.Method))
			_ = c.enqueue(EncodeResponseError(m.ID, http.StatusTooManyRequests, "rate limited"))
			return
		}
		if !c.requests.push(m) {
			c.log.Debug("request queue full", zap.String("method", m.Method))
			_ = c.enqueue(EncodeResponseError(m.ID, http.StatusTooManyRequests, "too many pending requests"))
		}
	case KindNotification:
		if !c.limiter.Allow() {
			c.log.Debug("notification rate limited, dropped", zap.String("method", m.Method))
			return
		}
		if !c.requests.push(m) {
			c.log.Debug("request queue full, notification dropped", zap.String("method", m.Method))
		}
	case KindResponse:
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch == nil {
			c.log.Debug("response to no pending request", zap.Uint64("id", m.ID))
			return
		}
		ch <- m // buffered, only sender
	}
}

func (c *Conn) readFailed(err error) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		// The client closed; gorilla answered its close frame.
		c.log.Debug("client closed", zap.Int("code", ce.Code), zap.String("reason", ce.Text))
		c.shutdown(0, "", false)
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla sent the close frame (1009) and stopped reading in the
		// middle of the frame.
		c.log.Info("frame too large, closing", zap.Int64("limit", c.limits.MaxFrameBytes))
		c.lingering.Store(true)
		c.shutdown(0, "", false)
		c.discardUntilClosed()
	case errors.As(err, &ne) && ne.Timeout():
		select {
		case <-c.closing:
		default:
			c.log.Info("no pong, closing", zap.Duration("timeout", c.limits.PongTimeout))
		}
		// The client may be in the middle of a frame (a slow writer):
		// gorilla cannot read on after a timeout, so drop raw bytes.
		c.lingering.Store(true)
		c.shutdown(websocket.CloseGoingAway, "ping timeout", false)
		c.discardUntilClosed()
	default:
		c.log.Debug("read failed", zap.Error(err))
		c.shutdown(0, "", false)
	}
}

// Lingering close: after the server's close frame, what the client still
// sends is read and dropped until it closes its side, it stays quiet (for
// lingerSilent if it sent nothing since, lingerQuiet once it did), or
// lingerMax passed.
const (
	lingerSilent = 500 * time.Millisecond
	lingerQuiet  = 2 * time.Second
	lingerMax    = 5 * time.Second
)

// discardUntilClosed drops raw bytes the client still sends (a lingering
// close): a socket closed with unread bytes in it sends a reset, and a
// client still writing then fails (its pong to a ping queued before the
// close frame, its write) before it reads the close frame. Used where
// gorilla can read no further frames (a frame over the limit, a read
// timeout); elsewhere readLoop goes on reading frames until the client's
// close frame. A silent client (a dead peer's keep-alive timeout) is let go
// after lingerSilent.
func (c *Conn) discardUntilClosed() {
	nc := c.ws.NetConn()
	end := time.Now().Add(lingerMax)
	buf := make([]byte, 32<<10)
	wait := lingerSilent
	for time.Now().Before(end) {
		quiet := time.Now().Add(wait)
		if quiet.After(end) {
			quiet = end
		}
		_ = nc.SetReadDeadline(quiet)
		if _, err := nc.Read(buf); err != nil {
			return // closed, reset, or quiet: closing now resets nothing
		}
		wait = lingerQuiet
	}
}

// badFrame counts a malformed frame: no answer (there is no id to answer),
// logged on the first three and then on every power of two.
func (c *Conn) badFrame(why string, b []byte) {
	c.malformed++
	n := c.malformed
	if n <= 3 || n&(n-1) == 0 {
		c.log.Info("malformed frame", zap.String("why", why), zap.Int("count", n),
			zap.ByteString("frame", b[:min(len(b), 64)]))
	}
	if limit := c.limits.MaxMalformed; limit > 0 && n >= limit {
		c.log.Info("too many malformed frames, closing", zap.Int("count", n))
		c.shutdown(websocket.ClosePolicyViolation, "too many malformed messages", false)
	}
}

// dispatchLoop hands the client's requests and notifications to the
// Session, one at a time, in order.
func (c *Conn) dispatchLoop() {
	defer close(c.dispatcherDone)
	for {
		select {
		case <-c.closing:
			return
		case <-c.requests.ready:
		}
		for {
			select {
			case <-c.closing:
				return
			default:
			}
			m, ok := c.requests.pop()
			if !ok {
				break
			}
			if m.Kind == KindNotification {
				c.log.Debug("client notification", zap.String("method", m.Method))
				c.protect("HandleNotification", func() { c.session.HandleNotification(m.Method, m.Data) })
				continue
			}
			c.handleRequest(m)
		}
	}
}

// holder is a Session whose requests of some methods hold what is queued
// meanwhile behind their answer (sendQueue.hold): a join's answer lists the
// room as the join found it, and what the room produced for the joiner
// after that must follow the answer, not overtake it.
type holder interface{ holdsDuring(method string) bool }

func (c *Conn) handleRequest(m Message) {
	h, ok := c.session.(holder)
	hold := ok && h.holdsDuring(m.Method)
	if hold {
		c.out.hold()
	}
	var res any
	var err error
	if !c.protect("HandleRequest", func() { res, err = c.session.HandleRequest(c.ctx, m.Method, m.Data) }) {
		res, err = nil, Errorf(http.StatusInternalServerError, "internal error")
	}
	var frame []byte
	var after func()
	if err == nil {
		switch r := res.(type) {
		case Deferred:
			res, after = r.Data, r.After
		case *Deferred:
			res = nil
			if r != nil {
				res, after = r.Data, r.After
			}
		}
		if frame, err = EncodeResponseOK(m.ID, res); err != nil {
			c.log.Error("cannot encode response", zap.String("method", m.Method), zap.Error(err))
			err, after = Errorf(http.StatusInternalServerError, "cannot encode response"), nil
		}
	}
	if err != nil {
		code, reason := ProtocolError(err)
		frame = EncodeResponseError(m.ID, code, reason)
	}
	queued := false
	if hold {
		c.out.release(frame)
		select {
		case <-c.closing:
		default:
			queued = true
		}
	} else {
		queued = c.enqueue(frame) == nil
	}
	if queued && after != nil {
		c.protect("Deferred.After", after)
	}
}

// protect runs f, turning a panic into a logged error; false if f panicked.
func (c *Conn) protect(what string, f func()) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error(what+" panicked", zap.Any("panic", p), zap.Stack("stack"))
			ok = false
		}
	}()
	f()
	return true
}

// writeLoop writes the queued frames and the pings, then closes.
func (c *Conn) writeLoop() {
	ws := c.ws
	ping := time.NewTicker(c.limits.PingInterval)
	defer ping.Stop()
	c.pump(c.writeFrames, ping.C, func() error {
		return ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.writeWait))
	})
	deadline := time.Now().Add(c.closeGrace)
	if c.closeFlush {
		c.flushQueued(func(frames [][]byte) error { return c.writeFramesBy(deadline, frames) })
	}
	linger := c.lingering.Load()
	if c.closeCode != 0 {
		linger = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, c.closeReason), deadline) == nil || linger
	}
	if linger {
		// A lingering close: the reader goes on reading (and dropping) what
		// the client sends until the client answers the close frame or
		// closes, so that the socket is not closed with unread bytes in it
		// (a reset, which can lose the close frame on its way to the client).
		t := time.NewTimer(time.Until(deadline.Add(lingerMax)))
		select {
		case <-c.readerDone:
		case <-t.C:
		}
		t.Stop()
	}
	_ = ws.Close()
	<-c.readerDone
	c.finish()
}

// writeFrames writes frames to the WebSocket in order, in as few system
// calls as they fit in (batchConn).
func (c *Conn) writeFrames(frames [][]byte) error {
	// The deadline moves in steps of a quarter of writeWait (a write has at
	// least three quarters of it), not a timer update for every batch.
	if d := time.Now().Add(c.writeWait); d.Sub(c.writeDeadline) > c.writeWait/4 {
		c.writeDeadline = d
	}
	return c.writeFramesBy(c.writeDeadline, frames)
}

func (c *Conn) writeFramesBy(deadline time.Time, frames [][]byte) error {
	ws := c.ws
	_ = ws.SetWriteDeadline(deadline)
	c.nc.cork()
	for _, f := range frames {
		if err := ws.WriteMessage(websocket.TextMessage, f); err != nil {
			_ = c.nc.uncork()
			return err
		}
	}
	return c.nc.uncork()
}

// pump is the writer's loop, for a WebSocket and a relay link alike: it
// sends what queues up with write, everything that waits at once, until
// the close starts or write fails (the connection is then shut down).
// onTick, if given, runs on each tick (keep-alive pings).
func (c *Conn) pump(write func([][]byte) error, tick <-chan time.Time, onTick func() error) {
	var batch [][]byte
	for {
		select {
		case <-c.out.ready:
			batch = c.out.take(batch)
			if len(batch) == 0 {
				continue
			}
			if err := write(batch); err != nil {
				c.log.Debug("write failed", zap.Error(err))
				c.shutdown(0, "", false)
				<-c.closing
				return
			}
		case <-tick:
			if err := onTick(); err != nil {
				c.log.Debug("ping failed", zap.Error(err))
				c.shutdown(0, "", false)
				<-c.closing
				return
			}
		case <-c.closing:
			return
		}
	}
}

// flushQueued writes what is still queued once the close started (a close
// that sends what is queued before its close frame).
func (c *Conn) flushQueued(write func([][]byte) error) {
	if batch := c.out.take(nil); len(batch) > 0 {
		_ = write(batch)
	}
}

// finish runs once both the reader and the writer are gone: it waits for
// the handler, fails what is pending and tells the Session.
func (c *Conn) finish() {
	if c.ws != nil || c.link != nil {
		<-c.dispatcherDone
	}
	c.mu.Lock()
	c.pending = nil // pending Requests already returned on closing
	c.mu.Unlock()
	if c.malformed > 0 {
		c.log.Info("closed", zap.Int("malformed", c.malformed))
	} else {
		c.log.Debug("closed")
	}
	c.protect("Closed", c.session.Closed)
	close(c.done)
}

func validCloseCode(code int) int {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return code
	}
	return websocket.CloseNormalClosure
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
