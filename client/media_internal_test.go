package client

import (
	"testing"
	"time"
)

// ParseSyntheticPayload is what the media tests rely on to tell that a
// payload arrived byte for byte: it must notice any changed byte.
func TestParseSyntheticPayloadChecksEveryByte(t *testing.T) {
	now := time.Now()
	audio := make([]byte, audioSize)
	audio[0] = audioTOC
	putRecord(audio[1:], 0, false, 0, 1, 42, now)
	sealRecord("audio", audio, 1)

	key := []byte{0x90, 0xe0, 0x80, 0x07, 0x01, 0x20, 0x10, 0, 0, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01}
	video := append(key, make([]byte, 300)...)
	putRecord(video[len(key):], 2, true, 0, 1, 7, now)
	sealRecord("video", video, len(key))

	for _, c := range []struct {
		kind    string
		payload []byte
		want    SyntheticPayload
	}{
		{"audio", audio, SyntheticPayload{Kind: "audio", Frame: 42, Packets: 1}},
		{"video", video, SyntheticPayload{Kind: "video", Layer: 2, KeyFrame: true, Frame: 7, Packets: 1}},
	} {
		got, err := ParseSyntheticPayload(c.kind, c.payload)
		if err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		if !got.SentAt.Equal(now) {
			t.Errorf("%s: sent at %v, want %v", c.kind, got.SentAt, now)
		}
		got.SentAt = time.Time{}
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.kind, got, c.want)
		}
		for i := range c.payload {
			if c.kind == "video" && i >= 2 && i <= 4 {
				continue // picture id and TL0PICIDX: rewritten by the SFU
			}
			damaged := append([]byte(nil), c.payload...)
			damaged[i] ^= 0x40
			if _, err := ParseSyntheticPayload(c.kind, damaged); err == nil {
				t.Errorf("%s: byte %d changed, not noticed", c.kind, i)
			}
		}
		if _, err := ParseSyntheticPayload(c.kind, c.payload[:len(c.payload)-1]); err == nil {
			t.Errorf("%s: truncated payload not noticed", c.kind)
		}
		// What mediasoup rewrites in VP8 payloads may change.
		if c.kind == "video" {
			rewritten := append([]byte(nil), c.payload...)
			rewritten[2], rewritten[3], rewritten[4] = 0x81, 0x23, 0x45
			if _, err := ParseSyntheticPayload(c.kind, rewritten); err != nil {
				t.Errorf("rewritten picture id and TL0PICIDX: %v", err)
			}
		}
	}
}
