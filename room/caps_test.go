package room

import (
	"reflect"
	"sync"
	"testing"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
)

// A peer's capabilities are shared by all its consumes at once (no copy
// per consume): that holds only while mediasoup-go's CanConsume and
// ConsumeContext leave what ConsumingRtpCapabilities made unchanged. The
// client's capabilities here leave unset every field mediasoup-go fills in
// (a codec's kind, an audio codec's channels, an extension's direction);
// two consumes run at once (-race sees any write), then the peer's
// capabilities must equal what they were at join.
func TestConsumingRtpCapabilitiesStayUnchanged(t *testing.T) {
	m, _ := newTestManager(t, 1, Options{})
	a := lockTestPeer(t, m, "caps", "a", nil)
	x1 := lockTestProduce(t, a, "1", 1111)
	x2 := lockTestProduce(t, a, "2", 2222)
	given := routerCaps(t, a)
	for _, c := range given.Codecs {
		c.Kind = ""
	}
	given.Codecs = append(given.Codecs, &mediasoup.RtpCodecCapability{MimeType: "audio/PCMU", ClockRate: 8000, PreferredPayloadType: 0})
	for _, h := range given.HeaderExtensions {
		h.Direction = ""
	}

	// The check can fail: mediasoup-go does write into capabilities that
	// leave these unset.
	raw := CloneRtpCapabilities(given)
	_, _ = mediasoup.CanConsume(x1.ConsumableRtpParameters(), raw)
	if reflect.DeepEqual(raw, CloneRtpCapabilities(given)) {
		t.Fatal("mediasoup-go's CanConsume no longer fills in unset capability fields: this test checks nothing (see ConsumingRtpCapabilities)")
	}

	c := lockTestPeer(t, m, "caps", "c", given)
	want := ConsumingRtpCapabilities(given)
	r := c.Room()
	r.mu.Lock()
	shared := c.rtpCaps
	r.mu.Unlock()
	if !reflect.DeepEqual(shared, want) {
		t.Fatal("the joined peer's capabilities are not ConsumingRtpCapabilities of what it sent")
	}
	var wg sync.WaitGroup
	for _, x := range []*mediasoup.Producer{x1, x2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.consume(a, x)
		}()
	}
	wg.Wait()
	for _, x := range []*mediasoup.Producer{x1, x2} {
		if !consumerOf(c, x.Id()) {
			t.Fatalf("no consumer of %s", x.Id())
		}
	}
	if _, err := mediasoup.CanConsume(x1.ConsumableRtpParameters(), shared); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shared, want) {
		t.Fatalf("mediasoup-go changed the shared capabilities:\n got %+v\nwant %+v", shared, want)
	}
	c.Close()
	a.Close()
}
