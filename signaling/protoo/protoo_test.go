package protoo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseMessageShapes(t *testing.T) {
	tests := []struct {
		in   string
		want Message
	}{
		{`{"request":true,"id":12,"method":"join","data":{"a":1}}`,
			Message{Kind: KindRequest, ID: 12, Method: "join", Data: json.RawMessage(`{"a":1}`)}},
		{`{"request":true,"id":0,"method":"m"}`,
			Message{Kind: KindRequest, ID: 0, Method: "m", Data: json.RawMessage(`{}`)}},
		{`{"request":true,"id":9007199254740992,"method":"m","data":null}`,
			Message{Kind: KindRequest, ID: MaxID, Method: "m", Data: json.RawMessage(`{}`)}},
		{` { "data" : { "x" : [1,"}",{"y":"\""}] } , "method" : "m\u00e9\n" , "id" : 7 , "request" : true } `,
			Message{Kind: KindRequest, ID: 7, Method: "mé\n", Data: json.RawMessage(`{ "x" : [1,"}",{"y":"\""}] }`)}},
		{`{"response":true,"id":3,"ok":true,"data":{"id":"x"}}`,
			Message{Kind: KindResponse, ID: 3, OK: true, Data: json.RawMessage(`{"id":"x"}`)}},
		{`{"response":true,"id":3,"ok":true}`,
			Message{Kind: KindResponse, ID: 3, OK: true, Data: json.RawMessage(`{}`)}},
		{`{"response":true,"id":4,"ok":false,"errorCode":403,"errorReason":"no \"way\""}`,
			Message{Kind: KindResponse, ID: 4, ErrorCode: 403, ErrorReason: `no "way"`}},
		// error responses are read leniently
		{`{"response":true,"id":4,"ok":false}`,
			Message{Kind: KindResponse, ID: 4}},
		{`{"response":true,"id":4,"ok":false,"errorCode":"x","errorReason":{"a":1},"data":5}`,
			Message{Kind: KindResponse, ID: 4, ErrorReason: `{"a":1}`}},
		{`{"response":true,"id":4,"ok":false,"errorCode":500.7}`,
			Message{Kind: KindResponse, ID: 4, ErrorCode: 500}},
		{`{"notification":true,"method":"newPeer","data":{"id":"p"}}`,
			Message{Kind: KindNotification, Method: "newPeer", Data: json.RawMessage(`{"id":"p"}`)}},
		{`{"notification":true,"method":"x","id":"ignored"}`,
			Message{Kind: KindNotification, Method: "x", Data: json.RawMessage(`{}`)}},
		// other flags false or null, unknown keys, repeated keys (last wins), escaped keys
		{`{"request":true,"response":false,"notification":null,"extra":[1],"id":1,"method":"a","method":"b"}`,
			Message{Kind: KindRequest, ID: 1, Method: "b", Data: json.RawMessage(`{}`)}},
		{`{"request":"x","request":true,"id":1,"method":"a"}`,
			Message{Kind: KindRequest, ID: 1, Method: "a", Data: json.RawMessage(`{}`)}},
		{`{"\u0072equest":true,"i\u0064":5,"method":"a"}`,
			Message{Kind: KindRequest, ID: 5, Method: "a", Data: json.RawMessage(`{}`)}},
	}
	for _, tt := range tests {
		got, err := ParseMessage([]byte(tt.in))
		if err != nil {
			t.Errorf("ParseMessage(%s): %v", tt.in, err)
			continue
		}
		if got.Kind != tt.want.Kind || got.ID != tt.want.ID || got.Method != tt.want.Method || got.OK != tt.want.OK ||
			string(got.Data) != string(tt.want.Data) || got.ErrorCode != tt.want.ErrorCode || got.ErrorReason != tt.want.ErrorReason {
			t.Errorf("ParseMessage(%s)\n got %+v (data %s)\nwant %+v (data %s)", tt.in, got, got.Data, tt.want, tt.want.Data)
		}
	}
}

func TestParseMessageMalformed(t *testing.T) {
	for _, in := range []string{
		``, ` `, `null`, `[]`, `42`, `"x"`, `true`, `{}`, `{`, `{"request":true`, `not json`,
		`{"request":true}`,
		`{"request":true,"id":1}`,
		`{"request":true,"method":"m"}`,
		`{"request":true,"id":1,"method":5}`,
		`{"request":true,"id":1,"method":null}`,
		`{"request":true,"id":"1","method":"m"}`,
		`{"request":true,"id":null,"method":"m"}`,
		`{"request":true,"id":-1,"method":"m"}`,
		`{"request":true,"id":1.5,"method":"m"}`,
		`{"request":true,"id":9007199254740993,"method":"m"}`,
		`{"request":true,"id":9007199254740992.5,"method":"m"}`,
		`{"request":true,"id":18446744073709551616,"method":"m"}`,
		`{"request":true,"id":1e400,"method":"m"}`,
		`{"request":true,"id":1e-1,"method":"m"}`,
		`{"request":true,"id":1,"method":"m","data":[]}`,
		`{"request":true,"id":1,"method":"m","data":"x"}`,
		`{"request":true,"id":1,"method":"m","data":0}`,
		`{"request":1,"id":1,"method":"m"}`,
		`{"request":"true","id":1,"method":"m"}`,
		`{"request":true,"response":true,"id":1,"method":"m","ok":true}`,
		`{"request":false,"id":1,"method":"m"}`,
		`{"response":true,"ok":true}`,
		`{"response":true,"id":1}`,
		`{"response":true,"id":1,"ok":"yes"}`,
		`{"response":true,"id":1,"ok":true,"data":[1]}`,
		`{"notification":true}`,
		`{"notification":true,"method":["m"]}`,
		`{"notification":true,"method":"m","data":true}`,
		`{"Request":true,"id":1,"method":"m"}`,
		`{"request":true,"id":1,"method":"m"} x`,
		"{\"request\":true,\"id\":1,\"method\":\"\xff\"}",
	} {
		m, err := ParseMessage([]byte(in))
		if err == nil {
			t.Errorf("ParseMessage(%q) = %+v, want an error", in, m)
		} else if !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseMessage(%q): error %v is not ErrMalformed", in, err)
		}
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]uint64{
		"0": 0, "-0": 0, "0.0": 0, "0e5": 0, "0e99999999999": 0, "-0.0e-3": 0,
		"1": 1, "1.0": 1, "1e3": 1000, "1E+3": 1000, "1.5e1": 15, "150e-1": 15, "1e0000000000003": 1000,
		"9007199254740992": MaxID, "9007199254740992.000": MaxID, "9.007199254740992e15": MaxID, "0.9007199254740992e16": MaxID,
	} {
		got, err := parseID([]byte(in))
		if err != nil || got != want {
			t.Errorf("parseID(%s) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{
		"-1", "-1e3", "0.5", "1e-1", "15e-1", "9007199254740993", "9007199254740992.5", "9.0071992547409921e15",
		"1e16", "1e400", "1e99999999999", "10000000000000000", "\"1\"", "true", "null", "",
	} {
		if got, err := parseID([]byte(in)); err == nil {
			t.Errorf("parseID(%s) = %d, want an error", in, got)
		}
	}
}

func TestEncode(t *testing.T) {
	type result struct {
		ID   string `json:"id"`
		HTML string `json:"html"`
	}
	check := func(name string, b []byte, err error, want string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(b) != want {
			t.Errorf("%s:\n got %s\nwant %s", name, b, want)
		}
		if !json.Valid(b) {
			t.Errorf("%s: invalid JSON %s", name, b)
		}
	}
	b, err := EncodeResponseOK(7, result{ID: "a", HTML: "<&>"})
	check("ok", b, err, `{"response":true,"id":7,"ok":true,"data":{"id":"a","html":"<&>"}}`)
	b, err = EncodeResponseOK(MaxID, nil)
	check("ok nil", b, err, `{"response":true,"id":9007199254740992,"ok":true,"data":{}}`)
	b, err = EncodeResponseOK(0, []int{1, 2})
	check("ok array", b, err, `{"response":true,"id":0,"ok":true,"data":[1,2]}`)
	var nilMap map[string]int
	b, err = EncodeResponseOK(1, nilMap)
	check("ok typed nil", b, err, `{"response":true,"id":1,"ok":true,"data":{}}`)
	b, err = EncodeResponseOK(1, json.RawMessage(" null "))
	check("ok raw null", b, err, `{"response":true,"id":1,"ok":true,"data":{}}`)
	b, err = EncodeRequest(3, "newConsumer", json.RawMessage(`{"id":"c"}`))
	check("request raw", b, err, `{"request":true,"id":3,"method":"newConsumer","data":{"id":"c"}}`)
	b, err = EncodeNotification(`we"ird`+"\n\u00e9", struct{}{})
	check("notification", b, err, `{"notification":true,"method":"we\"ird\né","data":{}}`)
	check("error", EncodeResponseError(5, 404, "no \"such\" producer\n"), nil,
		`{"response":true,"id":5,"ok":false,"errorCode":404,"errorReason":"no \"such\" producer\n"}`)

	if _, err := EncodeNotification("m", json.RawMessage(`{"a":`)); err == nil {
		t.Error("invalid RawMessage encoded")
	}
	if _, err := EncodeResponseOK(1, make(chan int)); err == nil {
		t.Error("channel encoded")
	}
	// The pool still works after a failed encoding.
	b, err = EncodeNotification("m", map[string]int{"a": 1})
	check("after failure", b, err, `{"notification":true,"method":"m","data":{"a":1}}`)

	// Encoded messages parse back.
	for _, b := range [][]byte{
		must(EncodeRequest(MaxID, "m\x01\u2028", map[string]any{"x": []any{"<", 1.5}})),
		must(EncodeResponseOK(0, nil)),
		EncodeResponseError(1, 500, strings.Repeat("é", 100)),
		must(EncodeNotification("n", json.RawMessage(`{}`))),
	} {
		if _, err := ParseMessage(b); err != nil {
			t.Errorf("ParseMessage(%s): %v", b, err)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

var benchRequest = []byte(`{"request":true,"id":5302711,"method":"connectWebRtcTransport","data":{"transportId":"8d4c1a7e-3c4b-4b8e-9a51-0f2d5d1f7c11","dtlsParameters":{"role":"client","fingerprints":[{"algorithm":"sha-256","value":"82:5A:68:3D:36:C3:0A:DE:AF:E7:32:43:D2:88:83:57:AC:2D:65:E5:80:C4:B6:FB:AF:1A:A0:21:9F:6D:0C:AD"}]}}}`)

func BenchmarkParseRequest(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRequest)))
	for b.Loop() {
		if _, err := ParseMessage(benchRequest); err != nil {
			b.Fatal(err)
		}
	}
}

type benchProduced struct {
	ID string `json:"id"`
}

func BenchmarkEncodeResponse(b *testing.B) {
	b.ReportAllocs()
	data := benchProduced{ID: "8d4c1a7e-3c4b-4b8e-9a51-0f2d5d1f7c11"}
	for b.Loop() {
		if _, err := EncodeResponseOK(5302711, data); err != nil {
			b.Fatal(err)
		}
	}
}

type benchScore struct {
	ProducerID string `json:"producerId"`
	Score      []struct {
		Ssrc  uint32 `json:"ssrc"`
		Rid   string `json:"rid,omitempty"`
		Score int    `json:"score"`
	} `json:"score"`
}

func BenchmarkEncodeNotification(b *testing.B) {
	b.ReportAllocs()
	data := &benchScore{ProducerID: "8d4c1a7e-3c4b-4b8e-9a51-0f2d5d1f7c11"}
	data.Score = append(data.Score, struct {
		Ssrc  uint32 `json:"ssrc"`
		Rid   string `json:"rid,omitempty"`
		Score int    `json:"score"`
	}{Ssrc: 1234567890, Rid: "r0", Score: 10})
	for b.Loop() {
		if _, err := EncodeNotification("producerScore", data); err != nil {
			b.Fatal(err)
		}
	}
}

// Field reads what decoding the whole object would.
func TestFieldAgreesWithDecode(t *testing.T) {
	for _, data := range []string{
		`{}`, `{"transportId":"t1"}`, ` { "a" : [1,{"transportId":"no"}] , "transportId" : "t2" } `,
		`{"transportId":"t1","transportId":"t3"}`, `{"transportId":null}`, `{"transportId":5}`,
		`{"x":{"transportId":"nested"}}`, `{"transportId":"a\"b"}`, `{"transport\u0049d":"escaped"}`,
		`[]`, `{"transportId":"t1"`, `"s"`, ``, `{"transportId":"é\u00e9"}`,
	} {
		raw, found, scanned := Field([]byte(data), "transportId")
		var m map[string]json.RawMessage
		err := json.Unmarshal([]byte(data), &m)
		if !scanned {
			if err == nil && !strings.Contains(data, `\u0049`) && data[0] == '{' {
				t.Errorf("%s: not scanned, but it is an object", data)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: scanned, but not an object: %v", data, err)
			continue
		}
		want, ok := m["transportId"]
		if found != ok || string(raw) != string(want) {
			t.Errorf("%s: scanned %q (found %v), decode %q (found %v)", data, raw, found, want, ok)
		}
	}
}

// ParseAnswer takes a success response whose data is not an object (a stats
// answer is an array); anything else it reads as ParseMessage does.
func TestParseAnswer(t *testing.T) {
	m, err := ParseAnswer([]byte(`{"response":true,"id":7,"ok":true,"data":[{"type":"webrtc-transport"}]}`))
	if err != nil || m.Kind != KindResponse || m.ID != 7 || string(m.Data) != `[{"type":"webrtc-transport"}]` {
		t.Fatalf("array answer: %+v, %v", m, err)
	}
	if _, err := ParseMessage([]byte(`{"response":true,"id":7,"ok":true,"data":[1]}`)); err == nil {
		t.Fatal("ParseMessage took an array as a response's data")
	}
	for _, f := range []string{
		`{"notification":true,"method":"m","data":[1]}`, `{"request":true,"id":1,"method":"m","data":"x"}`, `[]`, `{"response":true,"ok":true}`,
	} {
		if _, err := ParseAnswer([]byte(f)); err == nil {
			t.Errorf("ParseAnswer took %s", f)
		}
	}
}
