package signaling_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
)

func TestUnansweredNewConsumerLeavesNoConsumer(t *testing.T) {
	const timeout = 2 * time.Second
	e := newEnv(t, 1, func(o *room.Options, _ *signaling.Limits) { o.ServerRequestTimeout = timeout })
	a, b := e.dial("silent", "a"), e.dial("silent", "b")
	a.setup()
	b.setup()
	b.silent.Store(true)
	a.join("A")
	b.join("B")
	a.produce("audio")
	b.nextConsumer() // created and announced; b never answers
	// After the timeout the consumer is gone from the worker and from b
	// (the bound is the timeout and settle's slack; the figure is logged).
	announced := time.Now()
	testutil.Eventually(t, timeout+settle, func() bool { return consumersOn(t, e, "silent") == 0 },
		"an unanswered consumer stayed on the server")
	t.Logf("unanswered consumer gone %v after it was announced (ServerRequestTimeout %v)", time.Since(announced).Round(time.Millisecond), timeout)
	noPeerConsumers(t, e, "silent")
}

func TestPerPeerAndPerRoomLimits(t *testing.T) {
	e := newEnv(t, 1, func(o *room.Options, _ *signaling.Limits) {
		o.MaxTransportsPerPeer = 2
		o.MaxProducersPerPeer = 1
		o.MaxPeersPerRoom = 2
	})
	a, b := e.dial("lim", "a"), e.dial("lim", "b")
	a.setup() // two transports
	a.join("A")
	reason := a.wantCode(429, "createWebRtcTransport", client.CreateWebRtcTransportRequest{Producing: true})
	if reason == "" {
		t.Fatal("429 without a reason")
	}
	a.produce("audio")
	a.wantCode(429, "produce", client.ProduceRequest{TransportID: a.send.ID, Kind: "video", RtpParameters: rtpParams("video")})

	// A third peer is refused before the upgrade; a reconnect of a present
	// peer id is not a new peer and is let in.
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	_, err := client.Dial(ctx, e.url, "lim", "c", nil)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != 429 {
		t.Fatalf("third peer: %v, want HTTP 429", err)
	}
	b2 := e.dial("lim", "b")
	var caps json.RawMessage
	b2.must("getRouterRtpCapabilities", nil, &caps)
	_ = b
}
