package signaling

import (
	"errors"
	"fmt"
	"strconv"
)

// Error is a protocol error with its code (400, 403, 404, 405, 409, 429, 500,
// 503; see PROTOCOL.md §2). Returned by a Session, it becomes an error
// response with that errorCode and errorReason; returned by an AcceptFunc,
// the code is the HTTP status.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string {
	return strconv.Itoa(e.Code) + " " + e.Reason
}

// Errorf returns an *Error with the formatted reason.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// RemoteError is a client's error response (ok:false) to a server request.
type RemoteError struct {
	Code   int
	Reason string
}

func (e *RemoteError) Error() string {
	return "remote error " + strconv.Itoa(e.Code) + ": " + e.Reason
}

var (
	// ErrConnClosed: the connection is closed (or closing).
	ErrConnClosed = errors.New("signaling: connection closed")
	// ErrRequestTimeout: a server request got no answer in time.
	ErrRequestTimeout = errors.New("signaling: request timed out")
	// ErrTooManyPending: Limits.MaxPendingServerRequests requests are already
	// waiting for their answers; the request was not sent.
	ErrTooManyPending = errors.New("signaling: too many pending requests")
)

// ProtocolError maps any error to a protocol error code and reason:
//   - an *Error, also wrapped (errors.As), gives its code and its own reason;
//   - an error with a method `ProtocolCode() int` gives that code and err.Error();
//   - anything else gives 500 and err.Error().
//
// A nil error or a code that is not positive gives 500.
func ProtocolError(err error) (code int, reason string) {
	if err == nil {
		return 500, "internal error"
	}
	var pe *Error
	var coder interface{ ProtocolCode() int }
	switch {
	case errors.As(err, &pe):
		code, reason = pe.Code, pe.Reason
	case errors.As(err, &coder):
		code, reason = coder.ProtocolCode(), err.Error()
	default:
		code, reason = 500, err.Error()
	}
	if code <= 0 {
		code = 500
	}
	return code, reason
}
