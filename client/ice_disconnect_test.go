package client_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// mediasoup (ICE-lite) declares a transport's ICE disconnected when the
// client's consent checks (STUN binding requests) stop arriving for its
// consent timeout. mediasoup-go (v2.4.1, still v2.6.0) always sends the worker 30 s: its
// CreateWebRtcTransport drops WebRtcTransportOptions.IceConsentTimeout (and
// the worker clamps the value to 10–60 s anyway). So these tests wait for
// mediasoup's own 30 s.
const consentTimeout = 30 * time.Second

// outage is a network for one client's media that can go down. Every UDP
// socket pion opens for ICE goes through it (SettingEngine.SetNet); while it
// is down every datagram is dropped, in both directions, silently, as on a
// dead link. The WebSocket is not on it: it stays up, so the test hears the
// close code the server sends.
type outage struct {
	std  *stdnet.Net
	down atomic.Bool

	droppedIn, droppedOut atomic.Int64
	lastSTUN              atomic.Int64 // unix ns of the last STUN binding request that went out
}

func newOutage(t *testing.T) *outage {
	std, err := stdnet.NewNet()
	if err != nil {
		t.Fatalf("stdnet: %v", err)
	}
	return &outage{std: std}
}

// settings is a client.JoinOptions.SettingEngine hook.
func (o *outage) settings(se *webrtc.SettingEngine) { se.SetNet(lossyNet{o.std, o}) }

// cut drops everything from now on; restore lets it through again.
func (o *outage) cut()     { o.down.Store(true) }
func (o *outage) restore() { o.down.Store(false) }

func (o *outage) lastSTUNSent() time.Time { return time.Unix(0, o.lastSTUN.Load()) }

// lossyNet is the standard network whose UDP sockets obey an outage. pion's
// ICE (v4.4.8) opens its host candidates' sockets with ListenUDP and reads
// and writes them with ReadFrom and WriteTo; the tests check that the media
// really stops both ways, so another path would not go unnoticed.
type lossyNet struct {
	*stdnet.Net
	o *outage
}

func (n lossyNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{UDPConn: c, o: n.o}, nil
}

type lossyConn struct {
	transport.UDPConn
	o *outage
}

func (c *lossyConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(p)
		if err != nil || !c.o.down.Load() {
			return n, addr, err
		}
		c.o.droppedIn.Add(1)
	}
}

func (c *lossyConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.o.down.Load() {
		c.o.droppedOut.Add(1)
		return len(p), nil
	}
	n, err := c.UDPConn.WriteTo(p, addr)
	if err == nil && isBindingRequest(p) {
		c.o.lastSTUN.Store(time.Now().UnixNano())
	}
	return n, err
}

// isBindingRequest tells a STUN binding request (RFC 5389: type 0x0001,
// magic cookie 0x2112A442).
func isBindingRequest(p []byte) bool {
	return len(p) >= 20 && binary.BigEndian.Uint16(p) == 0x0001 && binary.BigEndian.Uint32(p[4:]) == 0x2112A442
}

// serverIceState asks the server for the ICE state of one of p's transports.
func serverIceState(ctx context.Context, p *client.Peer, transportID string) (string, error) {
	var stats []struct {
		IceState string `json:"iceState"`
	}
	if err := p.Conn().Request(ctx, "getTransportStats", map[string]string{"transportId": transportID}, &stats); err != nil {
		return "", err
	}
	if len(stats) == 0 {
		return "", errors.New("no stats")
	}
	return stats[0].IceState, nil
}

// waitIceStates polls the server every 100 ms until n of p's transports
// (ids) have an ICE state in want, and returns when the first and the n-th
// were seen. If p's socket closes first, it returns what it saw with closed
// set. It fails the test after limit.
func waitIceStates(t *testing.T, ctx context.Context, p *client.Peer, ids []string, n int, limit time.Duration, want ...string) (first, nth time.Time, closed bool) {
	t.Helper()
	seen := map[string]bool{}
	got := map[string]string{}
	deadline := time.Now().Add(limit)
	for {
		for _, id := range ids {
			if seen[id] {
				continue
			}
			s, err := serverIceState(ctx, p, id)
			if err != nil {
				select {
				case <-p.Conn().Done():
					return first, nth, true
				default:
				}
				t.Fatalf("%s: getTransportStats %s while waiting for ICE %v: %v", p.ID(), id, want, err)
			}
			got[id] = s
			if slices.Contains(want, s) {
				seen[id] = true
				if first.IsZero() {
					first = time.Now()
				}
				if len(seen) == n {
					return first, time.Now(), false
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s's transports are in ICE states %v on the server, want %d of them in %v", limit, p.ID(), got, n, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// longCtx bounds a test that waits for mediasoup's consent timeout.
func longCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// twoPeersWithAudio joins a (on the outage's network) and b to roomID, each
// producing audio that the other consumes, and waits for it to flow both
// ways. It returns a's consumer of b's audio and b's consumer of a's.
func twoPeersWithAudio(t *testing.T, e *mediaEnv, ctx context.Context, roomID string, aNet func(*webrtc.SettingEngine)) (a, b *client.Peer, atA, atB *client.Consumer, pa *client.Producer) {
	t.Helper()
	a = e.join(roomID, "a", client.JoinOptions{Produce: true, Consume: true, SettingEngine: aNet})
	b = e.join(roomID, "b", client.JoinOptions{Produce: true, Consume: true})
	pa, err := a.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.ProduceAudio(ctx, client.AudioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	atB, atA = waitConsumer(t, b, pa.ID()), waitConsumer(t, a, pb.ID())
	waitPackets(t, atB, 5, "a's audio at b")
	waitPackets(t, atA, 5, "b's audio at a")
	return a, b, atA, atB, pa
}

// assertCut checks that the outage stops a's media both ways: a's producer
// keeps sending but b receives nothing of it, and a receives nothing of b.
func assertCut(t *testing.T, o *outage, pa *client.Producer, atA, atB *client.Consumer) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // what was in flight
	fromA, fromB := atB.Stats().Packets, atA.Stats().Packets
	sent := pa.Stats().Packets
	waitFor(t, 10*time.Second, func() bool { return pa.Stats().Packets >= sent+50 && o.droppedIn.Load() > 0 },
		"a's producer stopped sending (%d more packets) or nothing reached a's sockets (%d dropped)",
		func() any { return pa.Stats().Packets - sent }, func() any { return o.droppedIn.Load() })
	if got := atB.Stats().Packets - fromA; got > 0 {
		t.Fatalf("the outage lets a's media out: b received %d packets of a's audio", got)
	}
	if got := atA.Stats().Packets - fromB; got > 0 {
		t.Fatalf("the outage lets media in: a received %d packets of b's audio", got)
	}
	if o.droppedOut.Load() == 0 {
		t.Fatal("the outage dropped nothing a sent")
	}
}

// A peer whose network dies while its WebSocket stays open: mediasoup's
// consent check puts its transports' ICE in disconnected, and after
// room.Options.IceDisconnectGrace the server closes its socket with 4501
// (reason "ICE disconnected", not the DTLS path), frees all it owned, and the
// others hear peerClosed. The other peer, whose only consent checks are
// pion's keepalives, stays.
func TestIceOutageClosesPeerWith4501(t *testing.T) {
	t.Parallel() // mostly waiting for mediasoup's 30 s: the two wait together
	const grace = time.Second
	e := newMediaEnvWith(t, 1, func(o *room.Options) { o.IceDisconnectGrace = grace })
	ctx := longCtx(t)
	o := newOutage(t)
	a, b, atA, atB, pa := twoPeersWithAudio(t, e, ctx, "ice", o.settings)
	aTransports := []string{transportID(t, a, true), transportID(t, a, false)}
	bTransports := []string{transportID(t, b, true), transportID(t, b, false)}

	o.cut()
	cutAt := time.Now()
	assertCut(t, o, pa, atA, atB)
	lastSTUN := o.lastSTUNSent()

	// The server keeps answering a's requests on the WebSocket meanwhile:
	// watch for a transport of a's to go disconnected (the socket may close
	// before a poll sees it on a loaded machine: the close reason tells).
	disc, _, closed := waitIceStates(t, ctx, a, aTransports, 1, consentTimeout+30*time.Second, "disconnected")
	select {
	case <-a.Conn().Done():
	case <-time.After(grace + 30*time.Second):
		t.Fatalf("a's ICE is disconnected on the server since %v, yet its socket is still open", time.Since(disc).Round(time.Millisecond))
	}
	closedAt := time.Now()
	if code := a.Conn().CloseCode(); code != room.CloseTransportFailed {
		t.Fatalf("a's socket closed with %d (%v), want %d", code, a.Conn().Err(), room.CloseTransportFailed)
	}
	var ce *websocket.CloseError
	if !errors.As(a.Conn().Err(), &ce) || ce.Text != "ICE disconnected" {
		t.Fatalf("a's socket closed with %v, want the reason %q", a.Conn().Err(), "ICE disconnected")
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	if closed {
		t.Logf("cut → 4501 at the client %v (last STUN request sent %v before the cut; no poll saw ICE disconnected before the close)",
			ms(closedAt.Sub(cutAt)), ms(cutAt.Sub(lastSTUN)))
	} else {
		t.Logf("cut → ICE disconnected on the server %v (last STUN request sent %v before the cut: consent expired %v after it); disconnected → 4501 at the client %v (grace %v); cut → 4501 %v",
			ms(disc.Sub(cutAt)), ms(cutAt.Sub(lastSTUN)), ms(disc.Sub(lastSTUN)), ms(closedAt.Sub(disc)), grace, ms(closedAt.Sub(cutAt)))
	}

	// Nothing of a is left: b hears peerClosed and loses its consumer, the
	// room forgets a, the router holds b's transports only.
	note(t, b, "peerClosed", "peerId", "a")
	select {
	case <-atB.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("b's consumer of a's audio not closed")
	}
	r := e.rooms.Room("ice")
	if r == nil {
		t.Fatal("the room closed with b still in it")
	}
	waitFor(t, 10*time.Second, func() bool { return r.Peer("a") == nil }, "a is still in the room")
	if r.Peer("b") == nil {
		t.Fatal("b is gone from the room")
	}
	for _, rt := range r.ReadyRouters() {
		d, err := rt.DumpContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range aTransports {
			if slices.Contains(d.TransportIds, id) {
				t.Fatalf("a's transport %s is still on router %s: %v", id, rt.Id(), d.TransportIds)
			}
		}
		slices.Sort(d.TransportIds)
		if want := slices.Sorted(slices.Values(bTransports)); !slices.Equal(d.TransportIds, want) {
			t.Fatalf("router %s holds transports %v, want b's %v", rt.Id(), d.TransportIds, want)
		}
	}

	// b has been up for longer than the consent timeout: pion's keepalives
	// are consent checks mediasoup accepts.
	select {
	case <-b.Conn().Done():
		t.Fatalf("b's socket closed too (%d, %v)", b.Conn().CloseCode(), b.Conn().Err())
	default:
	}
	if _, _, closed := waitIceStates(t, ctx, b, bTransports, 2, 10*time.Second, "connected", "completed"); closed {
		t.Fatalf("b's socket closed (%d, %v)", b.Conn().CloseCode(), b.Conn().Err())
	}
}

// An outage that outlasts the consent timeout but not the grace: the
// server sees a's ICE disconnected, then connected again when a's consent
// checks come back, and stops the grace timer. a stays in the room, its
// socket open, and media flows both ways again.
func TestShortIceOutageKeepsPeer(t *testing.T) {
	t.Parallel() // mostly waiting for mediasoup's 30 s: the two wait together
	// From the first transport seen disconnected, the grace must cover the
	// second one's consent expiring (one keepalive later), the restore and
	// the next consent check: about 3 s; ten covers a loaded machine.
	const grace = 10 * time.Second
	e := newMediaEnvWith(t, 1, func(o *room.Options) { o.IceDisconnectGrace = grace })
	ctx := longCtx(t)
	o := newOutage(t)
	aNet := func(se *webrtc.SettingEngine) {
		o.settings(se)
		// pion's defaults, except that pion never gives up: by default it
		// fails (and stops its checks for good) 30 s into an outage, just
		// when mediasoup's consent expires.
		se.SetICETimeouts(5*time.Second, 0, 2*time.Second)
	}
	a, b, atA, atB, pa := twoPeersWithAudio(t, e, ctx, "ice", aNet)
	aTransports := []string{transportID(t, a, true), transportID(t, a, false)}

	o.cut()
	cutAt := time.Now()
	assertCut(t, o, pa, atA, atB)
	lastSTUN := o.lastSTUNSent()
	first, last, closed := waitIceStates(t, ctx, a, aTransports, 2, consentTimeout+30*time.Second, "disconnected")
	if closed {
		t.Fatalf("a's socket closed (%d, %v) before both its transports were seen disconnected", a.Conn().CloseCode(), a.Conn().Err())
	}
	o.restore()
	restoredAt := time.Now()
	_, back, closed := waitIceStates(t, ctx, a, aTransports, 2, 20*time.Second, "connected", "completed")
	if closed {
		t.Fatalf("a's socket closed (%d, %v) although its ICE was coming back", a.Conn().CloseCode(), a.Conn().Err())
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("cut → ICE disconnected on the server %v (both transports %v; last STUN request sent %v before the cut); first disconnected → restore %v; restore → ICE connected again %v (grace %v)",
		ms(first.Sub(cutAt)), ms(last.Sub(cutAt)), ms(cutAt.Sub(lastSTUN)), ms(restoredAt.Sub(first)), ms(back.Sub(restoredAt)), grace)
	waitPackets(t, atB, 25, "a's audio at b after the outage")
	waitPackets(t, atA, 25, "b's audio at a after the outage")

	// Past the grace period of the first disconnect (with a margin for the
	// timer) a would be gone if the timer had not been stopped.
	time.Sleep(time.Until(first.Add(grace + 3*time.Second)))
	select {
	case <-a.Conn().Done():
		t.Fatalf("a's socket closed with %d (%v) although its ICE came back", a.Conn().CloseCode(), a.Conn().Err())
	default:
	}
	r := e.rooms.Room("ice")
	if r == nil || r.Peer("a") == nil {
		t.Fatal("a is gone from the room although its ICE came back")
	}
	nctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if d, err := b.Conn().WaitNotification(nctx, "peerClosed", func(json.RawMessage) bool { return true }); err == nil {
		t.Fatalf("b heard peerClosed %s", d)
	}
	if _, _, closed := waitIceStates(t, ctx, a, aTransports, 2, 10*time.Second, "connected", "completed"); closed {
		t.Fatalf("a's socket closed (%d, %v)", a.Conn().CloseCode(), a.Conn().Err())
	}
	waitPackets(t, atB, 25, "a's audio at b past the grace")
	waitPackets(t, atA, 25, "b's audio at a past the grace")
}
