package worker_test

// Faults of mediasoup-go, each shown on the version we build with (v2.6.0)
// against the real worker. A fault still present keeps a workaround in our
// code, named in its test; a test of a fixed fault is the proof that its
// workaround could go. When one of the "still present" tests fails, the fault
// was fixed upstream: remove the workaround, and turn the test around.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/room"
)

func upstreamRouter(t *testing.T, w *mediasoup.Worker) *mediasoup.Router {
	t.Helper()
	router, err := w.CreateRouter(&mediasoup.RouterOptions{
		MediaCodecs: []*mediasoup.RtpCodecCapability{
			{Kind: mediasoup.MediaKindAudio, MimeType: "audio/opus", ClockRate: 48000, Channels: 2},
		},
	})
	if err != nil {
		t.Fatalf("CreateRouter: %v", err)
	}
	return router
}

func plainTransport(t *testing.T, router *mediasoup.Router, opts *mediasoup.PlainTransportOptions) *mediasoup.Transport {
	t.Helper()
	if opts == nil {
		opts = &mediasoup.PlainTransportOptions{}
	}
	opts.ListenInfo = mediasoup.TransportListenInfo{Protocol: mediasoup.TransportProtocolUDP, Ip: "127.0.0.1"}
	tr, err := router.CreatePlainTransport(opts)
	if err != nil {
		t.Fatalf("CreatePlainTransport: %v", err)
	}
	return tr
}

func opusProducer(t *testing.T, tr *mediasoup.Transport, ssrc uint32) *mediasoup.Producer {
	t.Helper()
	p, err := tr.Produce(&mediasoup.ProducerOptions{
		Kind: mediasoup.MediaKindAudio,
		RtpParameters: &mediasoup.RtpParameters{
			Codecs: []*mediasoup.RtpCodecParameters{
				{MimeType: "audio/opus", PayloadType: 111, ClockRate: 48000, Channels: 2},
			},
			Encodings: []*mediasoup.RtpEncodingParameters{{Ssrc: ssrc}},
		},
	})
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	return p
}

// waitPending waits until the worker's channel has n requests in flight.
func waitPending(t *testing.T, w *mediasoup.Worker, n int) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for w.ChannelPendingRequests() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight, want %d", w.ChannelPendingRequests(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// blocks reports whether f is still running after d (it is then left
// running: the goroutine leaks, which is the fault being shown).
func blocks(f func(), d time.Duration) bool {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
		return false
	case <-time.After(d):
		return true
	}
}

// Still present in v2.6.0: Transport.ConsumeContext, when the producer closed
// between the worker's answer and its own check, closes the new consumer and
// returns "original Producer closed" WITHOUT unlocking the transport
// (transport.go:947-951). Every later call that takes the transport's lock
// (Closed, Consume, Close) then blocks forever. Workaround kept: room's
// producer locks (room/state.go, consuming and closingProducers) never let a
// producer of the room close while one of its consumers is being created.
// (reproduceConsumeLock says how.)
func TestUpstreamConsumeLeavesTransportLockedWhenProducerCloses(t *testing.T) {
	w := startMediasoupWorker(t, workerBinFromEnv(t))
	router := upstreamRouter(t, w)
	sender := plainTransport(t, router, nil)
	reproduceConsumeLock(t, w, "Consume", "original Producer closed", "Then room's producer locks can go",
		func(i int) consumeRace {
			producer := opusProducer(t, sender, uint32(1000+i))
			receiver := plainTransport(t, router, nil)
			return consumeRace{recv: receiver, close: producer.Close, consume: func() (func(), error) {
				c, err := receiver.ConsumeContext(context.Background(), &mediasoup.ConsumerOptions{
					ProducerId: producer.Id(), RtpCapabilities: router.RtpCapabilities(),
				})
				if err != nil {
					return nil, err
				}
				return func() { _ = c.Close() }, nil
			}}
		})
}

// Still present in v2.6.0, the same fault on the data side:
// Transport.ConsumeDataContext, when the data producer closed between the
// worker's answer and its own check, closes the new data consumer and
// returns "original DataProducer closed" WITHOUT unlocking the transport
// (transport.go:1161-1165). Workaround: room's producer locks cover data
// consumes and data producer closes too (Room.consuming).
func TestUpstreamConsumeDataLeavesTransportLockedWhenDataProducerCloses(t *testing.T) {
	w := startMediasoupWorker(t, workerBinFromEnv(t))
	router := upstreamRouter(t, w)
	sender, err := router.CreateDirectTransport(nil)
	if err != nil {
		t.Fatal(err)
	}
	reproduceConsumeLock(t, w, "ConsumeData", "original DataProducer closed", "Then data consumes need no producer lock",
		func(i int) consumeRace {
			dp, err := sender.ProduceData(&mediasoup.DataProducerOptions{Label: fmt.Sprintf("chat %d", i)})
			if err != nil {
				t.Fatalf("ProduceData: %v", err)
			}
			receiver, err := router.CreateDirectTransport(nil)
			if err != nil {
				t.Fatal(err)
			}
			return consumeRace{recv: receiver, close: dp.Close, consume: func() (func(), error) {
				dc, err := receiver.ConsumeDataContext(context.Background(), &mediasoup.DataConsumerOptions{DataProducerId: dp.Id()})
				if err != nil {
					return nil, err
				}
				return func() { _ = dc.Close() }, nil
			}}
		})
}

// consumeRace is one attempt of reproduceConsumeLock: consume (which
// returns how to close what it made) on recv, racing close.
type consumeRace struct {
	recv    *mediasoup.Transport
	consume func() (func(), error)
	close   func() error
}

// reproduceConsumeLock makes the window wide: the worker is stopped
// (SIGSTOP) while the consume request and then the producer's close
// request are queued, so that both answers arrive together when it
// resumes. It tries up to 40 times (next makes each attempt) and passes
// once the consume returned wantErr with its transport left locked; it
// fails if the transport is not locked (fixed upstream: ifFixed says what
// can go) or the window was never hit.
func reproduceConsumeLock(t *testing.T, w *mediasoup.Worker, what, wantErr, ifFixed string, next func(i int) consumeRace) {
	const attempts = 40
	for i := 1; i <= attempts; i++ {
		rc := next(i)
		type result struct {
			cleanup func()
			err     error
		}
		consumed := make(chan result, 1)
		if err := syscall.Kill(w.Pid(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		go func() {
			cleanup, err := rc.consume()
			consumed <- result{cleanup, err}
		}()
		waitPending(t, w, 1)
		closed := make(chan error, 1)
		go func() { closed <- rc.close() }()
		waitPending(t, w, 2)
		if err := syscall.Kill(w.Pid(), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		res := <-consumed
		if err := <-closed; err != nil {
			t.Fatalf("closing the producer: %v", err)
		}
		if res.err == nil {
			res.cleanup()
			_ = rc.recv.Close()
			continue
		}
		if res.err.Error() != wantErr {
			t.Fatalf("%s: %v", what, res.err)
		}
		if !blocks(func() { rc.recv.Closed() }, time.Second) {
			t.Fatalf("attempt %d: %s returned %q and the transport is not locked: fixed upstream? %s", i, what, res.err, ifFixed)
		}
		t.Logf("reproduced on attempt %d: %s returned %q, the transport stays locked", i, what, res.err)
		// Closing the worker would block on that lock too (its routers close
		// their transports): kill it, and wait until mediasoup-go marked it
		// closed (its teardown goroutine stays blocked).
		_ = syscall.Kill(w.Pid(), syscall.SIGKILL)
		for !w.Closed() {
			time.Sleep(10 * time.Millisecond)
		}
		return
	}
	t.Fatalf("the producer never closed inside %s's window in %d attempts", what, attempts)
}

// Still present in v2.6.0: when Channel.Request's own 5 s timeout fires, the
// request never returns: its deferred cleanup calls timer.Stop, which reports
// false for the timer that just fired, and then waits on the drained
// timer.C forever (internal/channel/channel.go:244-268). Workaround kept:
// every request of ours carries a context that ends first
// (room.WorkerRequestTimeout, 4 s), which takes the path that does return.
func TestUpstreamRequestNeverReturnsWhenItsOwnTimeoutFires(t *testing.T) {
	w := startMediasoupWorker(t, workerBinFromEnv(t))
	if err := syscall.Kill(w.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(w.Pid(), syscall.SIGCONT) }()

	// With our deadline: returns when the deadline passes.
	ctx, cancel := context.WithTimeout(context.Background(), room.WorkerRequestTimeout)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { _, err := w.GetResourceUsageContext(ctx); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("with a %v deadline: %v", room.WorkerRequestTimeout, err)
		}
		t.Logf("with a %v deadline: returned after %v: %v", room.WorkerRequestTimeout, time.Since(start).Round(time.Millisecond), err)
	case <-time.After(room.WorkerRequestTimeout + settle):
		t.Fatalf("with a %v deadline: no answer after %v", room.WorkerRequestTimeout, time.Since(start))
	}

	// Without: mediasoup-go's own timeout (5 s) fires, and the call hangs.
	if !blocks(func() { _, _ = w.GetResourceUsageContext(context.Background()) }, 8*time.Second) {
		t.Fatal("a request without deadline returned after mediasoup-go's own timeout: fixed upstream? " +
			"Then room.WorkerRequestTimeout need no longer stay under 5 s")
	}
	t.Log("reproduced: a request without deadline still blocks 8 s after it was sent to a stopped worker")
}

// Fixed in v2.6.0: Channel.Close walked the pending-request map without its
// lock while requests that gave up deleted their entries; a worker dying with
// requests in flight could abort the whole process ("concurrent map iteration
// and map write", which recover cannot catch). Here workers die, repeatedly,
// under a stream of requests from many goroutines; every request must return.
// This is what lets the server and its tests stop worrying about the order of
// a worker's death and the requests still in flight to it (room.Manager.Wait
// before closing the pool stays, for an orderly shutdown, not for safety).
func TestUpstreamWorkerDeathWithRequestsInFlight(t *testing.T) {
	bin := workerBinFromEnv(t)
	for round := 1; round <= 10; round++ {
		w := startMediasoupWorker(t, bin)
		ctx, cancel := context.WithTimeout(context.Background(), room.WorkerRequestTimeout)
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if _, err := w.GetResourceUsageContext(ctx); err != nil {
						return
					}
				}
			}()
		}
		waitPending(t, w, 8)
		_ = syscall.Kill(w.Pid(), syscall.SIGKILL)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(settle):
			t.Fatalf("round %d: requests to a killed worker did not return", round)
		}
		cancel()
		if !w.Died() {
			t.Errorf("round %d: Died() = false after SIGKILL", round)
		}
	}
}

// Still present in v2.6.0: a plain transport created with rtcpMux false has
// a separate RTCP socket in the worker, but mediasoup-go fills its RTCP tuple
// with the RTP tuple (router.go:579 on creation, transport.go:318 in Dump:
// parseTransportTuple(result.Tuple) where result.RtcpTuple is meant), so the
// RTCP port it reports is the RTP port. Workaround: room.CreatePlainTransport
// chooses the RTCP port itself (RtcpListenInfo) and answers that one.
func TestUpstreamPlainTransportReportsRtpPortAsRtcpPort(t *testing.T) {
	w := startMediasoupWorker(t, workerBinFromEnv(t))
	router := upstreamRouter(t, w)

	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rtcpPort := uint16(probe.LocalAddr().(*net.UDPAddr).Port)
	_ = probe.Close()
	mux := false
	tr := plainTransport(t, router, &mediasoup.PlainTransportOptions{
		RtcpMux: &mux, Comedia: true,
		RtcpListenInfo: &mediasoup.TransportListenInfo{Protocol: mediasoup.TransportProtocolUDP, Ip: "127.0.0.1", Port: rtcpPort},
	})
	d := tr.Data().PlainTransportData
	dump, err := tr.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if d.RtcpTuple == nil || d.RtcpTuple.LocalPort != d.Tuple.LocalPort ||
		dump.PlainTransportDump.RtcpTuple == nil || dump.PlainTransportDump.RtcpTuple.LocalPort != d.Tuple.LocalPort {
		t.Fatalf("RTP port %d, RTCP port asked %d; mediasoup-go reports %+v (data), %+v (dump): fixed upstream? "+
			"Then room.CreatePlainTransport can read the RTCP port from Data()",
			d.Tuple.LocalPort, rtcpPort, d.RtcpTuple, dump.PlainTransportDump.RtcpTuple)
	}
	t.Logf("reproduced: RTP port %d, RTCP socket on %d, mediasoup-go reports RTCP port %d", d.Tuple.LocalPort, rtcpPort, d.RtcpTuple.LocalPort)

	// The worker does listen on the port asked for: an RTCP receiver report
	// sent there becomes the transport's RTCP tuple (comedia).
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(rtcpPort))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 1} // RTCP RR, no report blocks
	deadline := time.Now().Add(settle)
	for {
		_, _ = c.Write(rr)
		stats, err := tr.GetStats()
		if err != nil {
			t.Fatal(err)
		}
		if rt := stats.PlainTransportStat.RtcpTuple; rt != nil {
			if rt.LocalPort != rtcpPort {
				t.Fatalf("RTCP tuple local port %d, want %d", rt.LocalPort, rtcpPort)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker never saw the RTCP packet on the RTCP port")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
