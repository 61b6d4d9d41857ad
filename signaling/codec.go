package signaling

import "github.com/mediasoup-server/mediasoup-server/signaling/protoo"

// The protoo codec lives in signaling/protoo (the Go client shares it);
// these are its names as this package has always exported them.

// Kind tells the protoo frame shapes apart (see protoo.Kind).
type Kind = protoo.Kind

// Message is one protoo frame, decoded (see protoo.Message).
type Message = protoo.Message

// The kinds of protoo message.
const (
	KindRequest      = protoo.KindRequest
	KindResponse     = protoo.KindResponse
	KindNotification = protoo.KindNotification
)

// MaxID is the largest message id accepted (2^53).
const MaxID = protoo.MaxID

// ErrMalformed is returned (wrapped) by ParseMessage for a frame that is
// not one of the protoo shapes.
var ErrMalformed = protoo.ErrMalformed

// ParseMessage decodes one frame (see protoo.ParseMessage).
func ParseMessage(b []byte) (Message, error) { return protoo.ParseMessage(b) }

// EncodeResponseOK encodes a success response (see protoo.EncodeResponseOK).
func EncodeResponseOK(id uint64, data any) ([]byte, error) { return protoo.EncodeResponseOK(id, data) }

// EncodeResponseError encodes an error response.
func EncodeResponseError(id uint64, code int, reason string) []byte {
	return protoo.EncodeResponseError(id, code, reason)
}

// EncodeRequest encodes a request (see protoo.EncodeRequest).
func EncodeRequest(id uint64, method string, data any) ([]byte, error) {
	return protoo.EncodeRequest(id, method, data)
}

// EncodeNotification encodes a notification (see protoo.EncodeNotification).
func EncodeNotification(method string, data any) ([]byte, error) {
	return protoo.EncodeNotification(method, data)
}
