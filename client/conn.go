package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mediasoup-server/mediasoup-server/signaling/protoo"
)

// Subprotocol is the WebSocket subprotocol of the protoo protocol.
const Subprotocol = "protoo"

const (
	defaultRequestTimeout   = 10 * time.Second
	defaultHandshakeTimeout = 10 * time.Second
	defaultBacklog          = 1024
	writeTimeout            = 10 * time.Second
	// closeTimeout bounds how long Close waits for the server to answer the
	// close frame before dropping the TCP connection.
	closeTimeout = time.Second
)

// ErrClosed is wrapped by the errors of operations on a connection that is gone.
var ErrClosed = errors.New("client: connection closed")

// closedError is why a connection ended; it matches ErrClosed with errors.Is.
type closedError struct{ cause error }

func (e *closedError) Error() string        { return "connection closed: " + e.cause.Error() }
func (e *closedError) Unwrap() error        { return e.cause }
func (e *closedError) Is(target error) bool { return target == ErrClosed }

// DialOptions configures Dial. The zero value (or nil) is usable.
type DialOptions struct {
	// Header is sent with the WebSocket handshake request.
	Header http.Header
	// Query holds extra URL query parameters (e.g. token). They are applied
	// after roomId and peerId, so a key given here replaces that parameter.
	Query url.Values
	// Subprotocols overrides the offered WebSocket subprotocols. nil offers
	// "protoo"; an empty non-nil slice offers none (to test the server's 403).
	// When "protoo" is offered, Dial fails unless the server selects it.
	Subprotocols []string
	// TLSConfig is used for wss:// (and https://) URLs.
	TLSConfig *tls.Config
	// HandshakeTimeout bounds the TCP/TLS/WebSocket handshake (default 10 s).
	HandshakeTimeout time.Duration
	// RequestTimeout bounds every Request (default 10 s; negative: no timeout
	// besides the request's context).
	RequestTimeout time.Duration
	// NotificationBacklog is how many unconsumed notifications are kept for
	// WaitNotification (default 1024; negative disables the backlog).
	NotificationBacklog int
	// OnRequest answers the server's requests (newConsumer, newDataConsumer).
	// Each request is handled on its own goroutine. The returned value is
	// marshaled as the response data (nil means {}); an error makes an error
	// response: a *ResponseError gives its Code and Reason, an error with a
	// Code() int method gives that code, any other error gives 500; the
	// reason is the error's text. A nil OnRequest accepts every request
	// with {}.
	OnRequest func(method string, data json.RawMessage) (any, error)
	// OnNotification receives the server's notifications in arrival order on
	// a single goroutine (not the reader goroutine: it may call Request).
	// Notifications queue up while it runs. data must not be modified.
	OnNotification func(method string, data json.RawMessage)
	// OnMessage, when set, sees every valid message the server sends
	// (requests, responses and notifications) on the reader goroutine, in
	// arrival order, before the message is handled: before OnRequest runs
	// for a request, before Request returns for a response, before
	// OnNotification for a notification. It lets a test check the order of
	// everything a peer received, which OnRequest (a goroutine per request)
	// and OnNotification (notifications only) cannot tell. It holds up the
	// reading: it must return quickly and must not wait for the server.
	// m.Data must not be modified.
	OnMessage func(m Message)
}

// MessageKind tells what a Message is (protoo's kinds).
type MessageKind = protoo.Kind

// The kinds of the server's messages.
const (
	KindRequest      = protoo.KindRequest
	KindResponse     = protoo.KindResponse
	KindNotification = protoo.KindNotification
)

// Message is one message from the server, as DialOptions.OnMessage sees it.
type Message struct {
	Kind MessageKind
	// Method: the request's or the notification's; for a response, the
	// method of the Request it answers ("" when none is waiting: late or
	// unknown).
	Method string
	// OK is a response's ok (false for requests and notifications).
	OK   bool
	Data json.RawMessage // {} when the server sent none
}

// HandshakeError is returned by Dial when the server answers the WebSocket
// upgrade with an HTTP error (403 without the protoo subprotocol, 400 without
// roomId or peerId, 401/403 with a bad token, ...).
type HandshakeError struct {
	Status int    // the HTTP status code
	Body   string // the first line of the response body, trimmed
}

func (e *HandshakeError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("client: websocket handshake refused: HTTP %d", e.Status)
	}
	return fmt.Sprintf("client: websocket handshake refused: HTTP %d: %s", e.Status, e.Body)
}

// ResponseError is an error response (ok:false) to a request. Request returns
// it for the server's error responses; an OnRequest handler may return it to
// choose the error code of its answer.
type ResponseError struct {
	Method string // the request's method (set by Request; informational)
	Code   int    // errorCode
	Reason string // errorReason
}

func (e *ResponseError) Error() string {
	if e.Method == "" {
		return fmt.Sprintf("client: error response %d: %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("client: %s: error response %d: %s", e.Method, e.Code, e.Reason)
}

// Conn is one protoo connection (one peer). Its methods are safe for
// concurrent use.
type Conn struct {
	ws             *websocket.Conn
	roomID, peerID string
	requestTimeout time.Duration
	onRequest      func(string, json.RawMessage) (any, error)
	onNotification func(string, json.RawMessage)
	onMessage      func(Message)
	backlogMax     int

	wmu sync.Mutex // serializes data frame writes

	pmu     sync.Mutex
	nextID  uint64
	pending map[uint64]pendingRequest // nil once the connection is gone

	nmu      sync.Mutex
	nseq     uint64
	backlog  []notification // unconsumed notifications, oldest first
	nchanged chan struct{}  // closed and replaced on every new notification
	queue    []notification // for the OnNotification goroutine
	qsignal  chan struct{}  // capacity 1: queue is non-empty

	closeOnce sync.Once
	done      chan struct{}
	readDone  chan struct{}
	err       error // why the connection ended; set before done is closed
	closeCode atomic.Int32
	badFrames atomic.Int64
}

type response struct {
	data json.RawMessage
	err  error
}

// pendingRequest is a Request waiting for its response.
type pendingRequest struct {
	ch     chan response // capacity 1
	method string
}

type notification struct {
	seq    uint64
	method string
	data   json.RawMessage
}

// Wire messages. Field order matches protoo's.
type outRequest struct {
	Request bool            `json:"request"`
	ID      uint64          `json:"id"`
	Method  string          `json:"method"`
	Data    json.RawMessage `json:"data"`
}

type outNotification struct {
	Notification bool            `json:"notification"`
	Method       string          `json:"method"`
	Data         json.RawMessage `json:"data"`
}

type outResponse struct {
	Response    bool            `json:"response"`
	ID          json.RawMessage `json:"id"`
	OK          bool            `json:"ok"`
	Data        json.RawMessage `json:"data,omitempty"`
	ErrorCode   int             `json:"errorCode,omitempty"`
	ErrorReason string          `json:"errorReason,omitempty"`
}

// Dial connects peer peerID to room roomID of the server at serverURL
// ("ws://host:port", "wss://…"; http and https map to ws and wss; a path and
// query in serverURL are kept). It adds roomId and peerId to the query (an
// empty roomID or peerID leaves that parameter out, to test the server's 400)
// and offers the "protoo" subprotocol. ctx bounds only the dial and handshake,
// not the connection's lifetime. On an HTTP error answer the error is a
// *HandshakeError.
func Dial(ctx context.Context, serverURL, roomID, peerID string, opts *DialOptions) (*Conn, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("client: bad server URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("client: bad server URL %q: scheme must be ws, wss, http or https", serverURL)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	q := u.Query()
	if roomID != "" {
		q.Set("roomId", roomID)
	}
	if peerID != "" {
		q.Set("peerId", peerID)
	}
	for k, vs := range opts.Query {
		q[k] = append([]string(nil), vs...)
	}
	u.RawQuery = q.Encode()

	subprotocols := opts.Subprotocols
	if subprotocols == nil {
		subprotocols = []string{Subprotocol}
	}
	handshakeTimeout := opts.HandshakeTimeout
	if handshakeTimeout <= 0 {
		handshakeTimeout = defaultHandshakeTimeout
	}
	dialer := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		TLSClientConfig:  opts.TLSConfig,
		HandshakeTimeout: handshakeTimeout,
		Subprotocols:     subprotocols,
	}
	ws, resp, err := dialer.DialContext(ctx, u.String(), opts.Header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			return nil, &HandshakeError{Status: resp.StatusCode, Body: firstLine(body)}
		}
		return nil, fmt.Errorf("client: dial %s: %w", u.Redacted(), err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	for _, p := range subprotocols {
		if p == Subprotocol && ws.Subprotocol() != Subprotocol {
			ws.Close()
			return nil, fmt.Errorf("client: dial %s: server selected subprotocol %q, want %q",
				u.Redacted(), ws.Subprotocol(), Subprotocol)
		}
	}

	c := &Conn{
		ws:             ws,
		roomID:         roomID,
		peerID:         peerID,
		requestTimeout: opts.RequestTimeout,
		onRequest:      opts.OnRequest,
		onNotification: opts.OnNotification,
		onMessage:      opts.OnMessage,
		backlogMax:     opts.NotificationBacklog,
		nextID:         uint64(rand.Int64N(1 << 31)),
		pending:        make(map[uint64]pendingRequest),
		nchanged:       make(chan struct{}),
		qsignal:        make(chan struct{}, 1),
		done:           make(chan struct{}),
		readDone:       make(chan struct{}),
	}
	if c.requestTimeout == 0 {
		c.requestTimeout = defaultRequestTimeout
	}
	if c.backlogMax == 0 {
		c.backlogMax = defaultBacklog
	}
	go c.readLoop()
	if c.onNotification != nil {
		go c.dispatchLoop()
	}
	return c, nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

// RoomID returns the room the connection was dialed for.
func (c *Conn) RoomID() string { return c.roomID }

// PeerID returns the peer id the connection was dialed with.
func (c *Conn) PeerID() string { return c.peerID }

// Request sends a request and waits for its response. On success the response
// data is unmarshaled into result unless result is nil. An error response is
// returned as a *ResponseError. data may be nil (sent as {}), any value that
// marshals to a JSON object, or a json.RawMessage. The request times out after
// DialOptions.RequestTimeout (the error wraps context.DeadlineExceeded) unless
// ctx ends first (the error wraps ctx.Err()); it fails promptly with an error
// wrapping ErrClosed when the connection goes away.
func (c *Conn) Request(ctx context.Context, method string, data any, result any) error {
	raw, err := c.RequestRaw(ctx, method, data)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("client: %s: decoding response data: %w", method, err)
	}
	return nil
}

// RequestRaw is Request returning the raw response data ({} when the server
// sent none).
func (c *Conn) RequestRaw(ctx context.Context, method string, data any) (json.RawMessage, error) {
	call, err := c.Go(ctx, method, data)
	if err != nil {
		return nil, err
	}
	return call.WaitRaw()
}

// Call is a request sent with Go, waiting for its response.
type Call struct {
	c      *Conn
	method string
	id     uint64
	ch     chan response
	parent context.Context // the caller's
	ctx    context.Context // parent bounded by the request timeout
	cancel context.CancelFunc
}

// Go sends a request as Request does but returns once it is written,
// without waiting for the response: Wait or WaitRaw gives it. One goroutine's
// requests sent with Go go out in that order, and the server handles them in
// that order: a client may send its next request before the answer to the
// previous one (pipelining, as protoo-client allows). The request timeout
// runs from Go. A Call must be waited for, to free its timer.
func (c *Conn) Go(ctx context.Context, method string, data any) (*Call, error) {
	payload, err := marshalData(data)
	if err != nil {
		return nil, fmt.Errorf("client: %s: encoding request data: %w", method, err)
	}
	call := &Call{c: c, method: method, ch: make(chan response, 1), parent: ctx, ctx: ctx, cancel: func() {}}
	if c.requestTimeout > 0 {
		call.ctx, call.cancel = context.WithTimeout(ctx, c.requestTimeout)
	}

	c.pmu.Lock()
	if c.pending == nil {
		c.pmu.Unlock()
		call.cancel()
		return nil, fmt.Errorf("client: %s: %w", method, c.closedErr())
	}
	call.id = c.nextID
	c.nextID++
	c.pending[call.id] = pendingRequest{ch: call.ch, method: method}
	c.pmu.Unlock()

	msg, err := json.Marshal(outRequest{Request: true, ID: call.id, Method: method, Data: payload})
	if err == nil {
		err = c.write(websocket.TextMessage, msg)
	}
	if err != nil {
		c.forget(call.id)
		call.cancel()
		return nil, fmt.Errorf("client: %s: %w", method, err)
	}
	return call, nil
}

// Wait waits for the response to a request sent with Go and decodes its
// data into result (unless nil), with Request's errors.
func (call *Call) Wait(result any) error {
	raw, err := call.WaitRaw()
	if err != nil || result == nil {
		return err
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("client: %s: decoding response data: %w", call.method, err)
	}
	return nil
}

// WaitRaw is Wait returning the raw response data ({} when the server sent
// none).
func (call *Call) WaitRaw() (json.RawMessage, error) {
	c, method, id := call.c, call.method, call.id
	defer call.cancel()
	select {
	case r := <-call.ch:
		if r.err != nil {
			var re *ResponseError
			if errors.As(r.err, &re) {
				re.Method = method
				return nil, re
			}
			return nil, fmt.Errorf("client: %s: %w", method, r.err)
		}
		return r.data, nil
	case <-call.ctx.Done():
		c.forget(id)
		if perr := call.parent.Err(); perr != nil {
			return nil, fmt.Errorf("client: %s (id %d): %w", method, id, perr)
		}
		return nil, fmt.Errorf("client: %s (id %d): no response after %v: %w",
			method, id, c.requestTimeout, context.DeadlineExceeded)
	}
}

func (c *Conn) forget(id uint64) {
	c.pmu.Lock()
	if c.pending != nil {
		delete(c.pending, id)
	}
	c.pmu.Unlock()
}

// Notify sends a notification. data is as for Request.
func (c *Conn) Notify(method string, data any) error {
	payload, err := marshalData(data)
	if err != nil {
		return fmt.Errorf("client: %s: encoding notification data: %w", method, err)
	}
	msg, err := json.Marshal(outNotification{Notification: true, Method: method, Data: payload})
	if err != nil {
		return err
	}
	return c.write(websocket.TextMessage, msg)
}

// WriteRaw writes one frame as is (websocket.TextMessage, BinaryMessage, …),
// for tests that send malformed frames on purpose.
func (c *Conn) WriteRaw(messageType int, b []byte) error {
	return c.write(messageType, b)
}

func (c *Conn) write(messageType int, b []byte) error {
	select {
	case <-c.done:
		return c.closedErr()
	default:
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(messageType, b)
}

// WaitNotification waits for a notification of the given method (any method
// if method is "") for which match returns true (match nil: any), and returns
// its data. Notifications that arrived before the call count too: they are
// kept in a bounded backlog, oldest first, and a notification returned here is
// removed from it, so each one is returned at most once. match may be called
// more than once for the same notification. WaitNotification returns ctx's
// error when ctx ends, or an error wrapping ErrClosed when the connection is
// gone and no buffered notification matches.
func (c *Conn) WaitNotification(ctx context.Context, method string, match func(data json.RawMessage) bool) (json.RawMessage, error) {
	if c.backlogMax < 0 {
		return nil, errors.New("client: WaitNotification: the notification backlog is disabled")
	}
	var seen uint64 // notifications up to this seq have been examined
	closed := false
	for {
		c.nmu.Lock()
		var cands []notification
		for _, n := range c.backlog {
			if n.seq > seen && (method == "" || n.method == method) {
				cands = append(cands, n)
			}
		}
		seen = c.nseq
		changed := c.nchanged
		c.nmu.Unlock()

		for _, n := range cands {
			if (match == nil || match(n.data)) && c.take(n.seq) {
				return n.data, nil
			}
		}
		if closed {
			return nil, fmt.Errorf("client: waiting for %q: %w", method, c.closedErr())
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("client: waiting for %q: %w", method, ctx.Err())
		case <-c.done:
			closed = true // one last look at the backlog
		}
	}
}

// take removes notification seq from the backlog; false if it is no longer
// there (taken by another waiter or dropped).
func (c *Conn) take(seq uint64) bool {
	c.nmu.Lock()
	defer c.nmu.Unlock()
	for i, n := range c.backlog {
		if n.seq == seq {
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			return true
		}
	}
	return false
}

// Close closes the connection normally (close code 1000) and waits for the
// reader goroutine to end. It does not wait for OnRequest and OnNotification
// callbacks that are still running. Calling Close again does nothing.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeTimeout))
		t := time.NewTimer(closeTimeout)
		select {
		case <-c.readDone: // the server answered the close frame (or was gone)
		case <-t.C:
		}
		t.Stop()
		c.ws.Close()
		<-c.readDone
	})
	return nil
}

// Done returns a channel that is closed when the connection is gone (closed
// by either side or broken). Pending requests have failed by then.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseCode returns the close code the server sent (1000 answering Close,
// 4000 when the server closed the peer on purpose, …), or 0 if the
// connection ended without a close frame. It is meaningful after Done.
func (c *Conn) CloseCode() int { return int(c.closeCode.Load()) }

// Err returns why the connection ended, or nil while it is open. The error
// matches ErrClosed with errors.Is and wraps the read error (a
// *websocket.CloseError when the connection was closed by a close frame).
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// BadFrames returns how many received frames were ignored because they were
// not a valid protoo message.
func (c *Conn) BadFrames() int64 { return c.badFrames.Load() }

func (c *Conn) closedErr() error {
	select {
	case <-c.done:
		return c.err
	default:
		return ErrClosed
	}
}

func (c *Conn) readLoop() {
	defer close(c.readDone)
	var err error
	for {
		var b []byte
		_, b, err = c.ws.ReadMessage()
		if err != nil {
			break
		}
		c.handleFrame(b)
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseNoStatusReceived && ce.Code != websocket.CloseAbnormalClosure {
		c.closeCode.Store(int32(ce.Code))
	}
	c.ws.Close()
	c.err = &closedError{cause: err}

	c.pmu.Lock()
	pending := c.pending
	c.pending = nil
	c.pmu.Unlock()
	for _, pr := range pending {
		pr.ch <- response{err: c.err}
	}
	close(c.done)
}

func (c *Conn) handleFrame(b []byte) {
	// protoo's own parser (one validity scan, then the envelope): the
	// generator of cmd/loadtest reads millions of frames on the cores the
	// server it measures uses. Data aliases b, which is this frame's own.
	m, err := protoo.ParseAnswer(b)
	if err != nil {
		c.badFrames.Add(1)
		return
	}
	switch m.Kind {
	case protoo.KindResponse:
		c.pmu.Lock()
		pr, ok := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.pmu.Unlock()
		if c.onMessage != nil {
			c.onMessage(Message{Kind: KindResponse, Method: pr.method, OK: m.OK, Data: normData(m.Data)})
		}
		if !ok {
			return // late (timed out) or unknown
		}
		if m.OK {
			pr.ch <- response{data: m.Data}
		} else {
			pr.ch <- response{err: &ResponseError{Code: m.ErrorCode, Reason: m.ErrorReason}}
		}
	case protoo.KindRequest:
		if m.Method == "" {
			c.badFrames.Add(1)
			return
		}
		if c.onMessage != nil {
			c.onMessage(Message{Kind: KindRequest, Method: m.Method, Data: m.Data})
		}
		go c.handleRequest(json.RawMessage(strconv.AppendUint(nil, m.ID, 10)), m.Method, m.Data)
	case protoo.KindNotification:
		if m.Method == "" {
			c.badFrames.Add(1)
			return
		}
		if c.onMessage != nil {
			c.onMessage(Message{Kind: KindNotification, Method: m.Method, Data: m.Data})
		}
		c.addNotification(m.Method, m.Data)
	}
}

func (c *Conn) handleRequest(id json.RawMessage, method string, data json.RawMessage) {
	var result any
	var err error
	if c.onRequest != nil {
		result, err = c.onRequest(method, data)
	}
	resp := outResponse{Response: true, ID: id, OK: true}
	if err == nil {
		resp.Data, err = marshalData(result)
	}
	if err != nil {
		resp = outResponse{Response: true, ID: id, ErrorCode: 500, ErrorReason: err.Error()}
		var re *ResponseError
		var coder interface{ Code() int }
		switch {
		case errors.As(err, &re):
			resp.ErrorCode, resp.ErrorReason = re.Code, re.Reason
		case errors.As(err, &coder):
			resp.ErrorCode = coder.Code()
		}
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return
	}
	_ = c.write(websocket.TextMessage, b) // fails only if the connection is gone
}

func (c *Conn) addNotification(method string, data json.RawMessage) {
	c.nmu.Lock()
	c.nseq++
	n := notification{seq: c.nseq, method: method, data: data}
	if c.backlogMax > 0 {
		if len(c.backlog) >= c.backlogMax {
			c.backlog = append(c.backlog[:0], c.backlog[len(c.backlog)-c.backlogMax+1:]...)
		}
		c.backlog = append(c.backlog, n)
		close(c.nchanged)
		c.nchanged = make(chan struct{})
	}
	if c.onNotification != nil {
		c.queue = append(c.queue, n)
	}
	c.nmu.Unlock()
	if c.onNotification != nil {
		select {
		case c.qsignal <- struct{}{}:
		default:
		}
	}
}

// dispatchLoop calls OnNotification in order. After the connection is gone it
// delivers what is still queued, then returns.
func (c *Conn) dispatchLoop() {
	for {
		c.nmu.Lock()
		q := c.queue
		c.queue = nil
		c.nmu.Unlock()
		for _, n := range q {
			c.onNotification(n.method, n.data)
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-c.qsignal:
		case <-c.done:
			// The reader has ended: nothing more is queued after this.
			c.nmu.Lock()
			q = c.queue
			c.queue = nil
			c.nmu.Unlock()
			for _, n := range q {
				c.onNotification(n.method, n.data)
			}
			return
		}
	}
}

// normData maps a missing or null data to {}.
func normData(d json.RawMessage) json.RawMessage {
	if len(d) == 0 || bytes.Equal(d, []byte("null")) {
		return json.RawMessage("{}")
	}
	return d
}

func marshalData(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage("{}"), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return normData(b), nil
}
