package signaling

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// sendQueue holds a connection's outgoing frames, in order. It grows as
// frames come (an idle peer's queue holds nothing) up to a limit in bytes,
// and the writer takes everything that waits at once, to write it in one
// go.
type sendQueue struct {
	mu     sync.Mutex
	frames [][]byte
	bytes  int // in frames
	limit  int
	// lazy: in lazyFlush's list, waiting for its tick to wake the writer.
	lazy bool
	// holding: frames go to held, behind a frame to come (hold).
	holding bool
	held    [][]byte
	// ready has room for one token: "there is something to take".
	ready chan struct{}
}

func newSendQueue(limit int) *sendQueue {
	return &sendQueue{limit: limit, ready: make(chan struct{}, 1)}
}

// push queues f and wakes the writer; false (and nothing queued) when f
// would take the queue past its limit (a frame alone is always taken).
func (q *sendQueue) push(f []byte) bool {
	if !q.add(f, false) {
		return false
	}
	q.wake()
	return true
}

// pushLazy queues f like push, but leaves the writer asleep until the next
// tick of lazyFlush (or an urgent push): notifications to a peer that come
// in quick succession (a room filling up sends every peer a newPeer per
// joiner) go out together, in one write, instead of one write each.
func (q *sendQueue) pushLazy(f []byte) bool {
	return q.add(f, true)
}

func (q *sendQueue) add(f []byte, lazy bool) bool {
	q.mu.Lock()
	if q.bytes+len(f) > q.limit && len(q.frames)+len(q.held) > 0 {
		q.mu.Unlock()
		return false
	}
	q.bytes += len(f)
	if q.holding {
		q.held = append(q.held, f)
		q.mu.Unlock()
		return true
	}
	q.frames = append(q.frames, f)
	schedule := lazy && !q.lazy
	if schedule {
		q.lazy = true
	}
	q.mu.Unlock()
	if schedule {
		lazyFlush.add(q)
	}
	return true
}

// hold keeps what is queued from now on (notifications and server
// requests alike) behind the frame release will queue: a join's answer
// goes out before anything the room produced for the joiner once it took
// the join's snapshot.
func (q *sendQueue) hold() {
	q.mu.Lock()
	q.holding = true
	q.mu.Unlock()
}

// release queues f (nil: nothing) and then what was held, and ends the
// hold. f is queued whatever the limit: it answers a request.
func (q *sendQueue) release(f []byte) {
	q.mu.Lock()
	if f != nil {
		q.frames = append(q.frames, f)
		q.bytes += len(f)
	}
	q.frames = append(q.frames, q.held...)
	q.held = nil // a join in a big room held thousands: not kept
	q.holding = false
	q.mu.Unlock()
	q.wake()
}

func (q *sendQueue) wake() {
	select {
	case q.ready <- struct{}{}:
	default: // a token is already there
	}
}

// take returns every queued frame, oldest first (not those held behind a
// frame to come), and leaves the queue empty of them. spare (the previous batch, done with) becomes the queue's next
// backing array, unless it grew large: a burst does not pin its memory.
func (q *sendQueue) take(spare [][]byte) [][]byte {
	clear(spare)
	if cap(spare) > maxKeptBatch {
		spare = nil
	}
	q.mu.Lock()
	out := q.frames
	q.frames = spare[:0]
	q.bytes = 0
	for _, f := range q.held {
		q.bytes += len(f)
	}
	q.mu.Unlock()
	return out
}

// lazyDelay is how long a notification may wait for the frames that
// follow it (pushLazy).
const lazyDelay = 10 * time.Millisecond

// lazyFlush wakes, every lazyDelay, the writers of the queues that have
// lazily pushed frames waiting. Its goroutine runs only while some do.
var lazyFlush flusher

type flusher struct {
	mu      sync.Mutex
	queues  []*sendQueue
	running bool
}

func (l *flusher) add(q *sendQueue) {
	l.mu.Lock()
	l.queues = append(l.queues, q)
	start := !l.running
	l.running = true
	l.mu.Unlock()
	if start {
		go l.run()
	}
}

func (l *flusher) run() {
	var queues []*sendQueue
	for {
		time.Sleep(lazyDelay)
		l.mu.Lock()
		queues, l.queues = l.queues, queues[:0]
		if len(queues) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		for _, q := range queues {
			q.mu.Lock()
			q.lazy = false
			q.mu.Unlock()
			q.wake()
		}
		clear(queues)
	}
}

// maxKeptBatch: a batch array larger than this is left to the collector.
const maxKeptBatch = 256

// ---- batched writes ----

// batchConn is the WebSocket's network connection. Between cork and
// uncork, writes (the frames gorilla/websocket encodes one by one, and a
// pong the reader sends meanwhile) collect in a buffer that uncork writes
// with one system call: frames that queued up go out together.
type batchConn struct {
	net.Conn
	mu     sync.Mutex // held across writes
	corked bool
	buf    *[]byte

	// Not mu: the deadline is how a write blocked on a client that does
	// not read is ended (the slow-consumer close).
	dmu      sync.Mutex
	deadline time.Time // the write deadline last set
}

// SetWriteDeadline passes t on unless it is the deadline already set
// (gorilla/websocket sets it again for every frame: a timer update each).
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	if t.Equal(b.deadline) {
		return nil
	}
	b.deadline = t
	return b.Conn.SetWriteDeadline(t)
}

// maxBatchBytes: a batch is written out when it grows past this.
const maxBatchBytes = 64 << 10

var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxBatchBytes); return &b }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.corked {
		return b.Conn.Write(p)
	}
	if len(*b.buf)+len(p) > maxBatchBytes {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxBatchBytes {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// SetDeadline sets both deadlines (and keeps SetWriteDeadline's record true).
func (b *batchConn) SetDeadline(t time.Time) error {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	b.deadline = t
	return b.Conn.SetDeadline(t)
}

func (b *batchConn) flushLocked() error {
	if len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

// cork starts collecting writes.
func (b *batchConn) cork() {
	b.mu.Lock()
	b.corked = true
	b.buf = batchBuffers.Get().(*[]byte)
	b.mu.Unlock()
}

// uncork writes what was collected and writes through again. Its error is
// the error of the writes it did; a collected write that then failed is
// lost, like any write to a broken connection.
func (b *batchConn) uncork() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.corked {
		return nil
	}
	err := b.flushLocked()
	b.corked = false
	batchBuffers.Put(b.buf)
	b.buf = nil
	return err
}

// batchingWriter hands gorilla/websocket's upgrade a batchConn instead of
// the hijacked connection.
type batchingWriter struct {
	http.ResponseWriter
	conn *batchConn
}

func (w batchingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn.Conn = nc
	return w.conn, brw, nil
}
