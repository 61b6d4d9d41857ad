// Package protoo is the protoo wire codec (the framing of requests,
// responses and notifications that protoo-client speaks, PROTOCOL.md §1):
// parsing a frame into a Message and encoding frames. The server
// (signaling) and the Go client (client) share it.
package protoo

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"
)

// Kind tells the four protoo frame shapes apart (a success and an error
// response are both KindResponse, told apart by Message.OK).
type Kind uint8

// The kinds of protoo message.
const (
	KindRequest Kind = iota + 1
	KindResponse
	KindNotification
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindResponse:
		return "response"
	case KindNotification:
		return "notification"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// MaxID is the largest message id accepted (2^53, the largest integer a
// JavaScript number holds exactly).
const MaxID = 1 << 53

// Message is one protoo frame, decoded.
type Message struct {
	Kind   Kind
	ID     uint64 // requests and responses: 0..MaxID
	Method string // requests and notifications
	OK     bool   // responses: success (true) or error (false)
	// Data is a JSON object: a missing or null `data` is `{}`. It aliases the
	// buffer given to ParseMessage. Empty for error responses.
	Data        json.RawMessage
	ErrorCode   int    // error responses
	ErrorReason string // error responses
}

// ErrMalformed is returned (wrapped) by ParseMessage for a frame that is not
// one of the four protoo shapes.
var ErrMalformed = errors.New("malformed protoo message")

func malformed(why string) error {
	return &malformedError{why}
}

type malformedError struct{ why string }

func (e *malformedError) Error() string        { return "malformed protoo message: " + e.why }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }

// field indexes of the keys ParseMessage looks at.
const (
	fRequest = iota
	fResponse
	fNotification
	fID
	fMethod
	fOK
	fData
	fErrorCode
	fErrorReason
	nFields
)

var fieldNames = [nFields]string{"request", "response", "notification", "id", "method", "ok", "data", "errorCode", "errorReason"}

// ParseMessage decodes one frame. Any error (which wraps ErrMalformed) means
// the frame is not valid UTF-8 JSON, not an object, of none of the four
// shapes, or has a wrong field type; it never panics. Unknown keys are
// ignored; a repeated key counts with its last value (as JSON.parse does).
// Exactly one of request/response/notification must be true; each of them,
// when present, must be a boolean or null.
//
// An error response is read leniently so that a pending request always gets
// its answer: a non-numeric errorCode reads as 0, a non-string errorReason as
// its JSON text, and its data is ignored.
func ParseMessage(b []byte) (Message, error) { return parse(b, false) }

// ParseAnswer is ParseMessage for the frames a server sends: a success
// response's data may be any JSON value (the stats answers are arrays).
// The Go client uses it.
func ParseAnswer(b []byte) (Message, error) { return parse(b, true) }

func parse(b []byte, anyData bool) (Message, error) {
	var m Message
	if !utf8.Valid(b) {
		return m, malformed("not UTF-8")
	}
	if !json.Valid(b) {
		return m, malformed("not JSON")
	}
	// From here on b is known to be valid JSON, so the scanner can be simple.
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return m, malformed("not an object")
	}
	var raw [nFields][]byte
	i = skipWS(b, i+1)
	if b[i] != '}' {
		for {
			// key
			ks := i + 1
			ke := stringEnd(b, i)
			key := b[ks:ke]
			i = skipWS(b, ke+1) // at ':'
			i = skipWS(b, i+1)  // at value
			ve := valueEnd(b, i)
			if f := fieldIndex(key); f >= 0 {
				raw[f] = b[i:ve]
			}
			i = skipWS(b, ve)
			if b[i] == '}' {
				break
			}
			i = skipWS(b, i+1) // after ','
		}
	}

	kinds := 0
	for f, k := range [3]Kind{KindRequest, KindResponse, KindNotification} {
		switch v := raw[fRequest+f]; {
		case v == nil || isLit(v, "null") || isLit(v, "false"):
		case isLit(v, "true"):
			m.Kind = k
			kinds++
		default:
			return Message{}, malformed(fieldNames[fRequest+f] + " is not a boolean")
		}
	}
	if kinds != 1 {
		return Message{}, malformed("not exactly one of request/response/notification")
	}

	var err error
	if m.Kind != KindNotification {
		if m.ID, err = parseID(raw[fID]); err != nil {
			return Message{}, err
		}
	}
	if m.Kind != KindResponse {
		if m.Method, err = parseString(raw[fMethod]); err != nil {
			return Message{}, malformed("method is not a string")
		}
	} else {
		switch v := raw[fOK]; {
		case isLit(v, "true"):
			m.OK = true
		case isLit(v, "false"):
			m.ErrorCode = parseErrorCode(raw[fErrorCode])
			m.ErrorReason = parseErrorReason(raw[fErrorReason])
			return m, nil
		default:
			return Message{}, malformed("ok is not a boolean")
		}
	}
	switch v := raw[fData]; {
	case v == nil || isLit(v, "null"):
		m.Data = json.RawMessage{'{', '}'}
	case v[0] == '{', anyData && m.Kind == KindResponse:
		m.Data = v
	default:
		return Message{}, malformed("data is not an object")
	}
	return m, nil
}

func fieldIndex(key []byte) int {
	if bytes.IndexByte(key, '\\') >= 0 {
		// An escaped key ("\u0069d"): rare, decode it properly.
		var s string
		q := make([]byte, 0, len(key)+2)
		q = append(append(append(q, '"'), key...), '"')
		if json.Unmarshal(q, &s) != nil {
			return -1
		}
		key = []byte(s)
	}
	for f, n := range fieldNames {
		if string(key) == n {
			return f
		}
	}
	return -1
}

func isLit(v []byte, lit string) bool { return string(v) == lit }

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index of the closing quote of the string whose
// opening quote is at b[i] (b is valid JSON).
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(b)
}

// valueEnd returns the index just past the value starting at b[i] (b is
// valid JSON).
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i) + 1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return len(b)
}

// parseString decodes a JSON string value.
func parseString(v []byte) (string, error) {
	if len(v) < 2 || v[0] != '"' {
		return "", ErrMalformed
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), nil // valid UTF-8 without escapes: as is
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", ErrMalformed
	}
	return s, nil
}

// parseID reads a JSON number that must be an integer in [0, MaxID]. Forms
// like 1e3 or 5.0 are integers too; -0 is 0.
func parseID(v []byte) (uint64, error) {
	if len(v) == 0 {
		return 0, malformed("missing id")
	}
	if c := v[0]; c != '-' && (c < '0' || c > '9') {
		return 0, malformed("id is not a number")
	}
	allDigits := true
	for _, c := range v {
		if c < '0' || c > '9' {
			allDigits = false
			break
		}
	}
	if allDigits {
		if len(v) <= 16 {
			if n, err := strconv.ParseUint(string(v), 10, 64); err == nil && n <= MaxID {
				return n, nil
			}
		}
		return 0, malformed("id out of range")
	}
	return parseIDSlow(v)
}

// parseIDSlow handles a number with sign, fraction or exponent exactly,
// without floating point (which would round 2^53+1 to 2^53).
func parseIDSlow(v []byte) (uint64, error) {
	neg := false
	if v[0] == '-' {
		neg = true
		v = v[1:]
	}
	var digits []byte // significant digits, integer and fraction parts
	var buf [32]byte
	digits = buf[:0]
	exp := 0 // value = digits × 10^exp
	i := 0
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
		digits = append(digits, v[i])
	}
	if i < len(v) && v[i] == '.' {
		for i++; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
			digits = append(digits, v[i])
			exp--
		}
	}
	// strip leading zeros
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, nil // 0, -0, 0.000, 0e99: zero
	}
	if neg {
		return 0, malformed("negative id")
	}
	// strip trailing zeros
	for digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		eneg := false
		if v[i] == '+' || v[i] == '-' {
			eneg = v[i] == '-'
			i++
		}
		e := 0
		for ; i < len(v); i++ {
			if e < 1000 { // anything beyond is out of range either way
				e = e*10 + int(v[i]-'0')
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if exp < 0 {
		return 0, malformed("id is not an integer")
	}
	if len(digits)+exp > 16 {
		return 0, malformed("id out of range")
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return 0, malformed("id out of range")
	}
	for ; exp > 0; exp-- {
		n *= 10
	}
	if n > MaxID {
		return 0, malformed("id out of range")
	}
	return n, nil
}

func parseErrorCode(v []byte) int {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e9 {
		return 0
	}
	return int(f)
}

func parseErrorReason(v []byte) string {
	if len(v) == 0 || isLit(v, "null") {
		return ""
	}
	if s, err := parseString(v); err == nil {
		return s
	}
	return string(v)
}

// Field finds the value of a top-level key of data, a JSON object as
// ParseMessage hands it over in Message.Data (valid JSON; the last of repeated keys
// counts), without decoding the rest. scanned is false when data is not
// such an object or a key is escaped: the caller decodes it instead.
func Field(data []byte, field string) (raw []byte, found, scanned bool) {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' || !json.Valid(data) {
		return nil, false, false
	}
	i = skipWS(data, i+1)
	for i < len(data) && data[i] == '"' {
		ke := stringEnd(data, i)
		key := data[i+1 : ke]
		if bytes.IndexByte(key, '\\') >= 0 {
			return nil, false, false
		}
		i = skipWS(data, skipWS(data, ke+1)+1) // past ':'
		ve := valueEnd(data, i)
		if string(key) == field {
			raw, found = data[i:ve], true
		}
		i = skipWS(data, ve)
		if i < len(data) && data[i] == ',' {
			i = skipWS(data, i+1)
		}
	}
	return raw, found, true
}

// ---- encoding ----

// encoder is a pooled buffer with a json.Encoder writing into it.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoderPool = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

const maxPooledBuffer = 64 << 10

func getEncoder() *encoder {
	e := encoderPool.Get().(*encoder)
	e.buf.Reset()
	return e
}

// finish returns a copy of the buffer and puts e back into the pool.
func (e *encoder) finish() []byte {
	out := bytes.Clone(e.buf.Bytes())
	if e.buf.Cap() <= maxPooledBuffer {
		encoderPool.Put(e)
	}
	return out
}

func (e *encoder) release() {
	if e.buf.Cap() <= maxPooledBuffer {
		encoderPool.Put(e)
	}
}

// Trusted is JSON the server encoded itself: written as is, unlike a
// json.RawMessage, which is checked first.
type Trusted []byte

// MarshalJSON makes Trusted encode as itself through encoding/json too.
func (j Trusted) MarshalJSON() ([]byte, error) { return j, nil }

var errInvalidRaw = errors.New("protoo: data is a json.RawMessage that is not valid JSON")

// writeData appends data as JSON: nil, an empty json.RawMessage and anything
// that encodes as null become {}. A json.RawMessage is checked and copied as
// is; anything else goes through encoding/json. Arrays and scalars are
// allowed (stats answers are arrays).
func (e *encoder) writeData(data any) error {
	switch d := data.(type) {
	case nil:
		e.buf.WriteString("{}")
		return nil
	case Trusted:
		e.buf.Write(d)
		return nil
	case json.RawMessage:
		if len(d) == 0 || isLit(bytes.TrimSpace(d), "null") {
			e.buf.WriteString("{}")
			return nil
		}
		if !json.Valid(d) {
			return errInvalidRaw
		}
		e.buf.Write(d)
		return nil
	}
	start := e.buf.Len()
	if err := e.enc.Encode(data); err != nil {
		e.buf.Truncate(start)
		return err
	}
	e.buf.Truncate(e.buf.Len() - 1) // Encode's newline
	if isLit(e.buf.Bytes()[start:], "null") {
		e.buf.Truncate(start)
		e.buf.WriteString("{}")
	}
	return nil
}

func (e *encoder) writeUint(n uint64) {
	var tmp [20]byte
	e.buf.Write(strconv.AppendUint(tmp[:0], n, 10))
}

// writeString appends s as a JSON string.
func (e *encoder) writeString(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			e.writeStringSlow(s)
			return
		}
	}
	e.buf.WriteByte('"')
	e.buf.WriteString(s)
	e.buf.WriteByte('"')
}

func (e *encoder) writeStringSlow(s string) {
	_ = e.enc.Encode(s) // a string always encodes
	e.buf.Truncate(e.buf.Len() - 1)
}

// endWithData appends data (writeData) and the closing brace and returns
// the frame; on an encoding error nothing.
func (e *encoder) endWithData(data any) ([]byte, error) {
	if err := e.writeData(data); err != nil {
		e.release()
		return nil, err
	}
	e.buf.WriteByte('}')
	return e.finish(), nil
}

// EncodeResponseOK encodes a success response. data: see EncodeNotification.
func EncodeResponseOK(id uint64, data any) ([]byte, error) {
	e := getEncoder()
	e.buf.WriteString(`{"response":true,"id":`)
	e.writeUint(id)
	e.buf.WriteString(`,"ok":true,"data":`)
	return e.endWithData(data)
}

// EncodeResponseError encodes an error response.
func EncodeResponseError(id uint64, code int, reason string) []byte {
	e := getEncoder()
	e.buf.WriteString(`{"response":true,"id":`)
	e.writeUint(id)
	e.buf.WriteString(`,"ok":false,"errorCode":`)
	var tmp [20]byte
	e.buf.Write(strconv.AppendInt(tmp[:0], int64(code), 10))
	e.buf.WriteString(`,"errorReason":`)
	e.writeString(reason)
	e.buf.WriteByte('}')
	return e.finish()
}

// EncodeRequest encodes a request. data: see EncodeNotification.
func EncodeRequest(id uint64, method string, data any) ([]byte, error) {
	e := getEncoder()
	e.buf.WriteString(`{"request":true,"id":`)
	e.writeUint(id)
	e.buf.WriteString(`,"method":`)
	e.writeString(method)
	e.buf.WriteString(`,"data":`)
	return e.endWithData(data)
}

// EncodeNotification encodes a notification. data is encoded with
// encoding/json (HTML characters are not escaped); a json.RawMessage is
// checked for validity and copied as is; nil, an empty json.RawMessage or a
// value that encodes as null become {}. The error is the encoding error.
func EncodeNotification(method string, data any) ([]byte, error) {
	e := getEncoder()
	e.buf.WriteString(`{"notification":true,"method":`)
	e.writeString(method)
	e.buf.WriteString(`,"data":`)
	return e.endWithData(data)
}
