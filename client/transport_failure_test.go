package client_test

import (
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/room"
)

// When a peer's DTLS closes (its media died) while its WebSocket stays open,
// the server frees the peer, closes its socket with a reconnectable code, and
// the others hear peerClosed.
func TestServerFreesPeerWhoseDTLSCloses(t *testing.T) {
	e := newMediaEnv(t)
	a := e.join("dtls", "a", client.JoinOptions{Produce: true, Consume: true})
	b := e.join("dtls", "b", client.JoinOptions{Produce: true, Consume: true})
	ctx := testCtx(t)
	pr, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPackets(t, waitConsumer(t, b, pr.ID()), 5, "a's audio at b")

	client.CloseMediaForTest(a)
	select {
	case <-a.Conn().Done():
		if code := a.Conn().CloseCode(); code != room.CloseTransportFailed {
			t.Fatalf("a's socket closed with %d, want %d", code, room.CloseTransportFailed)
		}
	case <-time.After(settle):
		t.Fatal("the server kept a peer whose DTLS closed")
	}
	note(t, b, "peerClosed", "peerId", "a")
}
