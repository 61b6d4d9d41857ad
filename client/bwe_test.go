package client_test

import (
	"encoding/json"
	"testing"

	"github.com/mediasoup-server/mediasoup-server/client"
)

// A consuming peer gets downlinkBwe (the worker's bandwidth estimation trace
// of its receiving transport) while video flows to it.
func TestDownlinkBweWhileVideoFlows(t *testing.T) {
	e := newMediaEnv(t)
	a := e.join("bwe", "a", client.JoinOptions{Produce: true})
	b := e.join("bwe", "b", client.JoinOptions{Consume: true})
	ctx := testCtx(t)
	v, err := a.ProduceVideo(ctx, client.VideoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPackets(t, waitConsumer(t, b, v.ID()), 10, "a's video at b")
	d := note(t, b, "downlinkBwe", "", "")
	var bwe struct {
		DesiredBitrate, EffectiveDesiredBitrate, AvailableBitrate *float64
	}
	if err := json.Unmarshal(d, &bwe); err != nil || bwe.AvailableBitrate == nil || bwe.DesiredBitrate == nil || bwe.EffectiveDesiredBitrate == nil {
		t.Fatalf("downlinkBwe %s: want desiredBitrate, effectiveDesiredBitrate, availableBitrate", d)
	}
}
