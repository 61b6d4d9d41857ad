package room

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Error is a room failure with the protocol code it maps to. The signaling
// layer reads the code through ProtocolCode.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// ProtocolCode is the protocol error code of PROTOCOL.md §2.
func (e *Error) ProtocolCode() int { return e.Code }

// Sentinel errors; wrapped with details by the functions that return them.
// Compare with errors.Is.
var (
	ErrBadRequest    = &Error{400, "bad request"}
	ErrForbidden     = &Error{403, "not allowed"}
	ErrNotFound      = &Error{404, "not found"}
	ErrNotJoined     = &Error{409, "peer has not joined"}
	ErrAlreadyJoined = &Error{409, "peer already joined"}
	ErrConflict      = &Error{409, "conflict"}
	ErrLimit         = &Error{429, "limit reached"}
	ErrRoomClosed    = &Error{503, "room closed"}
	ErrPeerClosed    = &Error{409, "peer closed"}
)

// wrapped keeps the sentinel's code and adds detail to the message.
type wrapped struct {
	sentinel *Error
	msg      string
}

func (w *wrapped) Error() string        { return w.msg }
func (w *wrapped) Unwrap() error        { return w.sentinel }
func (w *wrapped) ProtocolCode() int    { return w.sentinel.Code }
func (w *wrapped) Is(target error) bool { return target == w.sentinel }

func errorf(sentinel *Error, format string, args ...any) error {
	return &wrapped{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// workerError marks a failure reported by the mediasoup worker (500, with
// the worker's message).
func workerError(op string, err error) error {
	if err == nil {
		return nil
	}
	var coded interface{ ProtocolCode() int }
	if errors.As(err, &coded) {
		return err
	}
	// The worker closed the object a moment ago (its producer or transport
	// closed) and mediasoup-go has not heard yet: for the client that is an
	// unknown id, not a server failure.
	if msg := err.Error(); strings.Contains(msg, "request handler with ID") && strings.Contains(msg, "not found") {
		return errorf(ErrNotFound, "%s: the object was just closed", op)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// WorkerRequestTimeout bounds one request to a worker. It must stay under
// mediasoup-go's own 5 s request timeout: when that one fires, the request's
// goroutine never returns (its cleanup waits on a timer the timeout already
// drained; still so in v2.6.0, shown by worker's
// TestUpstreamRequestNeverReturnsWhenItsOwnTimeoutFires). A context deadline
// that ends first avoids the path.
const WorkerRequestTimeout = 4 * time.Second

// workerContext is a context for one worker request of the room's own
// (see WorkerRequestTimeout): it ends WorkerRequestTimeout from now, up to
// workerContextGrain sooner. The requests of the same moment share one
// context: a room's fan-out makes thousands of worker requests a second,
// and a timer each (context.WithTimeout) was a twentieth of its CPU and a
// sixth of what it allocated. The cancel func does nothing: the shared
// context ends at its deadline, never before, whoever is done with it.
func workerContext() (context.Context, context.CancelFunc) {
	now := time.Now()
	if s := sharedWorkerContext.Load(); s != nil && now.Sub(s.at) < workerContextGrain {
		return s.ctx, noCancel
	}
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(WorkerRequestTimeout))
	sharedWorkerContext.Store(&coarseContext{ctx: ctx, cancel: cancel, at: now})
	return ctx, noCancel
}

// workerContextGrain: how long one shared worker context is handed out.
const workerContextGrain = 50 * time.Millisecond

type coarseContext struct {
	ctx    context.Context
	cancel context.CancelFunc // never called: the context ends at its deadline
	at     time.Time
}

var sharedWorkerContext atomic.Pointer[coarseContext]

func noCancel() {}
