package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The relay carries relayed connections over Redis pub/sub: every node
// subscribes to one channel of its own (relay:NODE), and every message of a
// connection, in each direction, is an envelope {kind, seq, session,
// payload} published by the one goroutine that sends on that link, so
// Redis delivers them in order. Pub/sub rather than streams: a message costs
// one PUBLISH and reaches the subscriber at once; a node needs one
// subscribed connection however many links it has, where streams would
// need a blocking reader (a connection) per node and trimming. Pub/sub
// keeps nothing: a message published while the receiver is away is lost.
// That is detected, never papered over: a sequence gap, a publish nobody
// received, a subscription that broke or came back, a node whose record
// expired — each closes the affected connections, with CloseRelayLost
// (4500) on the client's side so that it reconnects.

// Envelope kinds.
const (
	kindOpen     byte = 1 // edge → owner: Open
	kindAccepted byte = 2 // owner → edge
	kindRefused  byte = 3 // owner → edge: status, reason
	kindText     byte = 4 // a text frame
	kindBinary   byte = 5 // a binary frame
	kindClose    byte = 6 // close code (0: the client went away), reason
)

type envelope struct {
	kind    byte
	seq     uint64
	sid     string
	payload []byte
}

func encodeEnvelope(e envelope) []byte {
	b := make([]byte, 0, 1+8+1+len(e.sid)+len(e.payload))
	b = append(b, e.kind)
	b = binary.BigEndian.AppendUint64(b, e.seq)
	b = append(b, byte(len(e.sid)))
	b = append(b, e.sid...)
	return append(b, e.payload...)
}

func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) < 10 || int(b[9])+10 > len(b) {
		return envelope{}, errors.New("short envelope")
	}
	n := int(b[9])
	return envelope{kind: b[0], seq: binary.BigEndian.Uint64(b[1:9]), sid: string(b[10 : 10+n]), payload: b[10+n:]}, nil
}

func codePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func parseCode(p []byte) (int, string) {
	if len(p) < 2 {
		return 0, ""
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:])
}

type openMsg struct {
	Open
	From string `json:"from"`
}

// ErrLinkClosed is what Send answers on a closed or broken link.
var ErrLinkClosed = errors.New("cluster: relayed connection closed")

var errNoListener = errors.New("nobody received it (the other node is not subscribed)")

type relay struct {
	r   *Redis
	log *zap.Logger

	mu         sync.Mutex
	serve      func(Link, Open)
	links      map[string]*link
	subscribed bool
	subErr     error
	ps         *redis.PubSub

	wg sync.WaitGroup // serve goroutines, best-effort closes
}

func newRelay(r *Redis) *relay {
	return &relay{r: r, log: r.log.Named("relay"), links: map[string]*link{}, subErr: errors.New("not subscribed yet")}
}

func (rl *relay) ready() error {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if !rl.subscribed {
		return &Unavailable{Why: fmt.Sprintf("redis unreachable (the relay's subscription: %v): new peers are refused until it is back", rl.subErr)}
	}
	return nil
}

// Serve sets what runs for each connection relayed here.
func (rl *relay) Serve(f func(Link, Open)) {
	rl.mu.Lock()
	rl.serve = f
	rl.mu.Unlock()
}

// receiveLoop reads this node's channel until the node closes. Any error
// of the subscription breaks every link (messages may have been lost); it
// is ready again once Redis confirms the subscription.
func (rl *relay) receiveLoop() {
	r := rl.r
	defer r.wg.Done()
	ps := r.rdb.Subscribe(r.ctx, r.channel(r.opts.NodeID))
	rl.mu.Lock()
	rl.ps = ps
	rl.mu.Unlock()
	defer ps.Close()
	lastPing := time.Now()
	for r.ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(r.ctx, r.opts.HeartbeatInterval)
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() {
			if time.Since(lastPing) >= r.opts.HeartbeatInterval {
				lastPing = time.Now()
				ctx, cancel := r.cmdCtx()
				err = ps.Ping(ctx)
				cancel()
			}
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				continue
			}
		}
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			rl.subscriptionLost(err)
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				rl.mu.Lock()
				again := rl.subscribed
				rl.mu.Unlock()
				if again {
					// Resubscribed without an error seen: messages may be lost.
					rl.subscriptionLost(errors.New("resubscribed"))
				}
				rl.mu.Lock()
				rl.subscribed, rl.subErr = true, nil
				rl.mu.Unlock()
				rl.log.Debug("relay subscribed", zap.String("channel", m.Channel))
			}
		case *redis.Message:
			rl.deliver([]byte(m.Payload))
		case *redis.Pong:
		}
	}
}

// subscriptionLost breaks every link: what was published meanwhile is gone.
func (rl *relay) subscriptionLost(err error) {
	rl.mu.Lock()
	was := rl.subscribed
	rl.subscribed, rl.subErr = false, err
	links := rl.snapshotLocked()
	rl.mu.Unlock()
	if was || len(links) > 0 {
		rl.log.Warn("relay subscription lost: closing the relayed connections", zap.Error(err), zap.Int("connections", len(links)))
	}
	for _, l := range links {
		l.fail("relay to redis lost", "subscriber", false)
	}
}

func (rl *relay) snapshotLocked() []*link {
	out := make([]*link, 0, len(rl.links))
	for _, l := range rl.links {
		out = append(out, l)
	}
	return out
}

// nodeLost breaks the links to and from a node whose record expired.
func (rl *relay) nodeLost(node string) {
	rl.mu.Lock()
	var lost []*link
	for _, l := range rl.links {
		if l.peer == node {
			lost = append(lost, l)
		}
	}
	rl.mu.Unlock()
	for _, l := range lost {
		l.fail("node "+node+" lost", "node_lost", false)
	}
}

// closeAll closes every link, telling both ends (shutdown).
func (rl *relay) closeAll(reason string) {
	rl.mu.Lock()
	links := rl.snapshotLocked()
	rl.mu.Unlock()
	for _, l := range links {
		l.Close(CloseRelayLost, reason)
		l.closedLocally(CloseRelayLost, reason)
	}
}

func (rl *relay) wait() { rl.wg.Wait() }

func (rl *relay) forget(l *link) {
	rl.mu.Lock()
	if rl.links[l.sid] == l {
		delete(rl.links, l.sid)
		rl.r.met.links.WithLabelValues(l.side()).Dec()
	}
	rl.mu.Unlock()
}

// publishBatch publishes envelopes in order in one pipeline (one round
// trip, one connection: Redis delivers them in that order). All of them
// count as sent only if every one reached a listener.
func (rl *relay) publishBatch(node string, es []envelope) error {
	ctx, cancel := rl.r.cmdCtx()
	defer cancel()
	ch := rl.r.channel(node)
	cmds := make([]*redis.IntCmd, len(es))
	_, err := rl.r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range es {
			cmds[i] = p.Publish(ctx, ch, encodeEnvelope(e))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if c.Val() == 0 {
			return errNoListener
		}
	}
	rl.r.met.frames.WithLabelValues("out").Add(float64(len(es)))
	return nil
}

func (rl *relay) publish(node string, e envelope) error {
	ctx, cancel := rl.r.cmdCtx()
	defer cancel()
	n, err := rl.r.rdb.Publish(ctx, rl.r.channel(node), encodeEnvelope(e)).Result()
	if err == nil && n == 0 {
		err = errNoListener
	}
	if err == nil {
		rl.r.met.frames.WithLabelValues("out").Inc()
	}
	return err
}

// deliver handles one message of this node's channel (on the receiving
// goroutine: nothing here blocks).
func (rl *relay) deliver(b []byte) {
	e, err := decodeEnvelope(b)
	if err != nil {
		rl.log.Warn("malformed relay message dropped", zap.Error(err))
		return
	}
	rl.r.met.frames.WithLabelValues("in").Inc()
	if e.kind == kindOpen {
		rl.open(e)
		return
	}
	rl.mu.Lock()
	l := rl.links[e.sid]
	rl.mu.Unlock()
	if l == nil {
		return // a late message of a link already closed here
	}
	l.receive(e)
}

func (rl *relay) open(e envelope) {
	var m openMsg
	if err := json.Unmarshal(e.payload, &m); err != nil || m.From == "" {
		rl.log.Warn("malformed relay open dropped", zap.Error(err))
		return
	}
	l := newLink(rl, e.sid, m.From, false)
	l.inSeq = e.seq
	rl.mu.Lock()
	serve := rl.serve
	if _, dup := rl.links[e.sid]; dup {
		rl.mu.Unlock()
		return
	}
	rl.links[e.sid] = l
	rl.r.met.links.WithLabelValues("owner").Inc()
	rl.mu.Unlock()
	rl.wg.Add(1)
	go func() {
		defer rl.wg.Done()
		if serve == nil {
			l.Refuse(503, "node does not serve relayed connections")
			return
		}
		serve(l, m.Open)
	}()
}

// Dial relays a connection to node and waits for its answer.
func (rl *relay) Dial(ctx context.Context, node string, open Open, h Handler) (Link, error) {
	if err := rl.ready(); err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	sid := rl.r.opts.NodeID + "/" + hex.EncodeToString(b)
	if len(sid) > 255 {
		sid = sid[len(sid)-255:]
	}
	l := newLink(rl, sid, node, true)
	l.h = &h
	rl.mu.Lock()
	rl.links[sid] = l
	rl.r.met.links.WithLabelValues("edge").Inc()
	rl.mu.Unlock()
	payload, _ := json.Marshal(openMsg{Open: open, From: rl.r.opts.NodeID})
	if err := l.send(kindOpen, payload); err != nil {
		return nil, &Unavailable{Why: fmt.Sprintf("relay to node %s: %v", node, err)}
	}
	select {
	case err := <-l.answer:
		if err != nil {
			return nil, err
		}
		return l, nil
	case <-ctx.Done():
		rl.r.met.relayErrors.WithLabelValues("dial_timeout").Inc()
		l.Close(0, "")
		return nil, &Unavailable{Why: fmt.Sprintf("node %s, the owner of room %q, did not answer: %v", node, open.Room, ctx.Err())}
	}
}

// link is one relayed connection at one end.
type link struct {
	rl   *relay
	sid  string
	peer string // the node at the other end
	edge bool

	sendMu sync.Mutex // one sender at a time: seq order is publish order
	outSeq uint64

	mu          sync.Mutex
	done        bool
	inSeq       uint64
	h           *Handler
	pending     []envelope // owner: what came before Bind
	pendingDone *[2]any    // owner: a close or break before Bind
	accepted    bool
	answer      chan error // edge: accepted (nil) or why not
}

func newLink(rl *relay, sid, peer string, edge bool) *link {
	return &link{rl: rl, sid: sid, peer: peer, edge: edge, answer: make(chan error, 1)}
}

func (l *link) side() string {
	if l.edge {
		return "edge"
	}
	return "owner"
}

func (l *link) Peer() string { return l.peer }

func (l *link) isDone() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// send publishes one envelope in order; a failure breaks the link.
func (l *link) send(kind byte, payload []byte) error {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if l.isDone() {
		return ErrLinkClosed
	}
	l.outSeq++
	if err := l.rl.publish(l.peer, envelope{kind: kind, seq: l.outSeq, sid: l.sid, payload: payload}); err != nil {
		l.fail(fmt.Sprintf("relay to node %s failed: %v", l.peer, err), "publish", false)
		return fmt.Errorf("%w: %v", ErrLinkClosed, err)
	}
	return nil
}

// SendText publishes frames as text frames in one pipeline.
func (l *link) SendText(frames [][]byte) error {
	switch len(frames) {
	case 0:
		return nil
	case 1:
		return l.send(kindText, frames[0])
	}
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	es := make([]envelope, 0, min(len(frames), maxPipeline))
	for len(frames) > 0 {
		if l.isDone() {
			return ErrLinkClosed
		}
		n := min(len(frames), maxPipeline)
		es = es[:0]
		for _, f := range frames[:n] {
			l.outSeq++
			es = append(es, envelope{kind: kindText, seq: l.outSeq, sid: l.sid, payload: f})
		}
		frames = frames[n:]
		if err := l.rl.publishBatch(l.peer, es); err != nil {
			l.fail(fmt.Sprintf("relay to node %s failed: %v", l.peer, err), "publish", false)
			return fmt.Errorf("%w: %v", ErrLinkClosed, err)
		}
	}
	return nil
}

// maxPipeline bounds the frames of one pipelined publish: a connection's
// whole queue can be thousands of frames (a relayed peer in a room
// filling up), and one round trip of them all would have to fit in the
// command deadline.
const maxPipeline = 256

func (l *link) Send(bin bool, frame []byte) error {
	kind := kindText
	if bin {
		kind = kindBinary
	}
	return l.send(kind, frame)
}

func (l *link) Accept() error {
	l.mu.Lock()
	l.accepted = true
	l.mu.Unlock()
	return l.send(kindAccepted, nil)
}

func (l *link) Refuse(status int, reason string) {
	_ = l.send(kindRefused, codePayload(status, reason))
	l.finish()
}

// Bind sets the owner's handler and hands it what came before.
func (l *link) Bind(h Handler) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h = &h
	for _, e := range l.pending {
		l.handleLocked(e)
	}
	l.pending = nil
	if d := l.pendingDone; d != nil {
		l.pendingDone = nil
		h.Closed(d[0].(int), d[1].(string))
	}
}

// Close tells the other end and ends the link.
func (l *link) Close(code int, reason string) {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if !l.finish() {
		return
	}
	l.outSeq++
	_ = l.rl.publish(l.peer, envelope{kind: kindClose, seq: l.outSeq, sid: l.sid, payload: codePayload(code, reason)})
}

// finish marks the link done and forgets it; false if it already was.
func (l *link) finish() bool {
	l.mu.Lock()
	was := l.done
	l.done = true
	l.mu.Unlock()
	if was {
		return false
	}
	l.rl.forget(l)
	return true
}

// fail breaks the link here: the local handler hears CloseRelayLost. With
// tell, the other end is told too (best effort, in the background).
func (l *link) fail(why, metric string, tell bool) {
	if !l.finish() {
		return
	}
	l.rl.r.met.relayErrors.WithLabelValues(metric).Inc()
	l.rl.log.Info("relayed connection broken", zap.String("session", l.sid), zap.String("peer", l.peer), zap.String("why", why))
	l.closedLocally(CloseRelayLost, why)
	if tell {
		l.rl.wg.Add(1)
		go func() {
			defer l.rl.wg.Done()
			l.sendMu.Lock()
			l.outSeq++
			seq := l.outSeq
			l.sendMu.Unlock()
			_ = l.rl.publish(l.peer, envelope{kind: kindClose, seq: seq, sid: l.sid, payload: codePayload(CloseRelayLost, why)})
		}()
	}
}

// closedLocally tells the local side the link is gone.
func (l *link) closedLocally(code int, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.edge && !l.accepted {
		select {
		case l.answer <- &Unavailable{Why: reason}:
		default:
		}
		return
	}
	if l.h == nil {
		l.pendingDone = &[2]any{code, reason}
		return
	}
	if l.h.Closed != nil {
		h := l.h.Closed
		l.h = &Handler{} // at most once
		h(code, reason)
	}
}

// receive handles one envelope of this link, in sequence.
func (l *link) receive(e envelope) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	if e.seq <= l.inSeq {
		l.mu.Unlock()
		return // a duplicate (a retried publish)
	}
	if e.seq != l.inSeq+1 {
		l.mu.Unlock()
		l.fail(fmt.Sprintf("relay messages lost (got %d after %d)", e.seq, l.inSeq), "gap", true)
		return
	}
	l.inSeq = e.seq
	switch e.kind {
	case kindAccepted:
		l.accepted = true
		l.answer <- nil
		l.mu.Unlock()
		return
	case kindRefused:
		code, reason := parseCode(e.payload)
		l.mu.Unlock()
		l.finish()
		l.answer <- &Refused{Status: code, Reason: reason}
		return
	case kindClose:
		l.mu.Unlock()
		if l.finish() {
			code, reason := parseCode(e.payload)
			l.closedLocally(code, reason)
		}
		return
	}
	if l.h == nil {
		l.pending = append(l.pending, e)
	} else {
		l.handleLocked(e)
	}
	l.mu.Unlock()
}

func (l *link) handleLocked(e envelope) {
	if l.h.Frame != nil && (e.kind == kindText || e.kind == kindBinary) {
		l.h.Frame(e.kind == kindBinary, e.payload)
	}
}
