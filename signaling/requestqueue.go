package signaling

import "sync"

// requestQueue holds a connection's client requests and notifications for
// the dispatcher, in order, up to a limit (Limits.RequestBurst). Like the
// send queue it grows as messages come and gives its memory back once
// drained: an idle peer's queue holds nothing (a channel of RequestBurst
// messages was 8.6 KiB per connection at the default burst of 100, 88 KiB
// at 1 000, allocated whether or not the peer ever sent a request).
type requestQueue struct {
	mu    sync.Mutex
	msgs  []Message
	head  int // msgs[head:] wait
	limit int
	// ready has room for one token: "there is something to take".
	ready chan struct{}
}

func newRequestQueue(limit int) *requestQueue {
	return &requestQueue{limit: max(limit, 1), ready: make(chan struct{}, 1)}
}

// push queues m and wakes the dispatcher; false (and nothing queued) when
// limit messages already wait.
func (q *requestQueue) push(m Message) bool {
	q.mu.Lock()
	if len(q.msgs)-q.head >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest message; false when none waits (wait on ready).
func (q *requestQueue) pop() (Message, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.msgs) {
		return Message{}, false
	}
	m := q.msgs[q.head]
	q.msgs[q.head] = Message{} // not kept alive by the array
	q.head++
	if q.head == len(q.msgs) {
		// Drained: start over at the front, and let a large array go.
		q.head = 0
		if cap(q.msgs) > 8 {
			q.msgs = nil
		} else {
			q.msgs = q.msgs[:0]
		}
	}
	return m, true
}

// len is how many messages wait.
func (q *requestQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs) - q.head
}
