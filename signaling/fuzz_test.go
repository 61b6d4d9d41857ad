package signaling

import (
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseMessage: ParseMessage never panics, agrees with a reference
// decoder built on encoding/json, and what it accepts re-encodes and
// re-parses to the same message.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"request":true,"id":1,"method":"join","data":{"displayName":"x","device":{"flag":"chrome"}}}`,
		`{"request":true,"id":0,"method":"getRouterRtpCapabilities"}`,
		`{"request":true,"id":9007199254740992,"method":"m","data":null}`,
		`{"request":true,"id":9007199254740993,"method":"m"}`,
		`{"request":true,"id":1e3,"method":"m"}`,
		`{"request":true,"id":-0.0,"method":"m"}`,
		`{"request":true,"id":1.5,"method":"m"}`,
		`{"request":true,"id":"1","method":"m"}`,
		`{"response":true,"id":5,"ok":true,"data":{"id":"p"}}`,
		`{"response":true,"id":5,"ok":true}`,
		`{"response":true,"id":5,"ok":false,"errorCode":404,"errorReason":"not found"}`,
		`{"response":true,"id":5,"ok":false,"errorCode":"x","errorReason":[1]}`,
		`{"notification":true,"method":"newPeer","data":{"id":"p","displayName":"\u00e9\"\\"}}`,
		`{"notification":true,"method":"x","data":[]}`,
		`{"request":true,"response":true,"id":1,"method":"m","ok":true}`,
		`{"\u0072equest":true,"id":1,"method":"m","method":"n"}`,
		`{"request":true}`, `{}`, `[]`, `null`, `42`, `"x"`, `true`, ``, `{`, `{"a":}`,
		"{\"request\":true,\"id\":1,\"method\":\"\xff\"}",
		` {"request" : true , "id" : 2 , "method" : "m" , "data" : { "a" : [ 1 , { } ] } } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		want, known := refParse(b)
		if known {
			if (err == nil) != want.ok {
				t.Fatalf("ParseMessage(%q): err %v, reference ok=%v", b, err, want.ok)
			}
			if err == nil && (m.Kind != want.kind || m.Method != want.method || (want.hasID && m.ID != want.id)) {
				t.Fatalf("ParseMessage(%q) = %+v, reference %+v", b, m, want)
			}
		}
		if err != nil {
			return
		}
		if m.Kind != KindResponse || m.OK {
			if !json.Valid(m.Data) || m.Data[0] != '{' {
				t.Fatalf("ParseMessage(%q): data %q", b, m.Data)
			}
		}
		if m.ID > MaxID {
			t.Fatalf("ParseMessage(%q): id %d", b, m.ID)
		}
		var enc []byte
		switch {
		case m.Kind == KindRequest:
			enc, err = EncodeRequest(m.ID, m.Method, m.Data)
		case m.Kind == KindNotification:
			enc, err = EncodeNotification(m.Method, m.Data)
		case m.OK:
			enc, err = EncodeResponseOK(m.ID, m.Data)
		default:
			enc = EncodeResponseError(m.ID, m.ErrorCode, m.ErrorReason)
		}
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", m, err)
		}
		m2, err := ParseMessage(enc)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", enc, err)
		}
		if m2.Kind != m.Kind || m2.ID != m.ID || m2.Method != m.Method || m2.OK != m.OK ||
			m2.ErrorCode != m.ErrorCode || m2.ErrorReason != m.ErrorReason || !bytes.Equal(m2.Data, m.Data) {
			t.Fatalf("round trip %q → %s → %+v, want %+v", b, enc, m2, m)
		}
	})
}

type refMessage struct {
	ok     bool
	kind   Kind
	hasID  bool
	id     uint64
	method string
}

// refParse is the reference reading of the protoo shapes, with
// encoding/json. known is false when the id cannot be checked cheaply
// (a huge exponent).
func refParse(b []byte) (r refMessage, known bool) {
	if !utf8.Valid(b) {
		return r, true
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return r, true
	}
	if _, err := dec.Token(); err != io.EOF {
		return r, true // trailing data
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return r, true
	}
	kinds := 0
	for k, name := range map[Kind]string{KindRequest: "request", KindResponse: "response", KindNotification: "notification"} {
		switch x := obj[name].(type) {
		case nil:
		case bool:
			if x {
				r.kind = k
				kinds++
			}
		default:
			return r, true
		}
	}
	if kinds != 1 {
		return r, true
	}
	if r.kind != KindNotification {
		n, isNum := obj["id"].(json.Number)
		if !isNum {
			return r, true
		}
		s := string(n)
		if i := strings.IndexAny(s, "eE"); i >= 0 && len(strings.TrimLeft(s[i+1:], "+-0")) > 3 {
			return r, false
		}
		rat, okRat := new(big.Rat).SetString(s)
		if !okRat || !rat.IsInt() || rat.Sign() < 0 || rat.Num().Cmp(big.NewInt(MaxID)) > 0 {
			return r, true
		}
		r.hasID, r.id = true, rat.Num().Uint64()
	}
	if r.kind != KindResponse {
		method, isStr := obj["method"].(string)
		if !isStr {
			return r, true
		}
		r.method = method
	} else {
		okv, isBool := obj["ok"].(bool)
		if !isBool {
			return r, true
		}
		if !okv {
			r.ok = true // error responses: lenient
			return r, true
		}
	}
	switch obj["data"].(type) {
	case nil, map[string]any:
		r.ok = true
	}
	return r, true
}

// FuzzPlainString: where plainString takes a JSON string literal as it
// is, json.Unmarshal decodes it to the same string; it never takes what
// json.Unmarshal refuses.
func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`"abc"`, `""`, `"a\"b"`, `"\u0041"`, `"é"`, "\"\xff\"", "\"a\tb\"", `"a\\b"`, `abc`, `"`, `"x`, `1`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := plainString(raw)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("plainString took %q, which json.Unmarshal refuses: %v", raw, err)
		}
		if got != want {
			t.Fatalf("%q: plainString %q, json.Unmarshal %q", raw, got, want)
		}
	})
}
