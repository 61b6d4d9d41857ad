package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// TestWorkerDTLSHandshakeAndSRTP drives a real ICE + DTLS handshake and real
// SRTP against a WebRtcTransport of the mediasoup-worker binary we build.
//
// mediasoup-go's own protocol tests only talk to the worker over its channel;
// they never complete a DTLS handshake. A worker built against an incompatible
// OpenSSL once crashed (SIGSEGV in libssl) on the very first DTLS ClientHello
// while all of those tests passed. Here pion plays the browser: if the worker
// cannot handshake, cannot decrypt SRTP, or dies on the way, this test fails.
func TestWorkerDTLSHandshakeAndSRTP(t *testing.T) {
	bin := workerBinFromEnv(t)
	w := startMediasoupWorker(t, bin)

	router, err := w.CreateRouter(&mediasoup.RouterOptions{
		MediaCodecs: []*mediasoup.RtpCodecCapability{
			// Same PT as pion's MediaEngine, so that what the consumer below
			// sends back is recognised by pion without any remapping.
			{Kind: mediasoup.MediaKindAudio, MimeType: "audio/opus", ClockRate: 48000, Channels: 2,
				PreferredPayloadType: pionOpusPT},
			{Kind: mediasoup.MediaKindVideo, MimeType: "video/VP8", ClockRate: 90000},
		},
	})
	if err != nil {
		t.Fatalf("CreateRouter: %v", err)
	}
	t.Cleanup(func() { _ = router.Close() })

	// A plain per-transport UDP port on loopback: no WebRtcServer needed.
	transport, err := router.CreateWebRtcTransport(&mediasoup.WebRtcTransportOptions{
		ListenInfos: []mediasoup.TransportListenInfo{
			{Protocol: mediasoup.TransportProtocolUDP, Ip: "127.0.0.1"},
		},
	})
	if err != nil {
		t.Fatalf("CreateWebRtcTransport: %v", err)
	}
	t.Cleanup(func() { _ = transport.Close() })

	peer := newPionPeer(t)

	// 1. ICE + DTLS. The worker's libssl parses pion's ClientHello here.
	start := time.Now()
	peer.connect(t, w, transport)
	pollUntil(t, w, handshakeTimeout, "WebRtcTransport ICE connected and DTLS connected", func() (bool, string) {
		stats, err := transport.GetStats()
		if err != nil {
			return false, "GetStats: " + err.Error()
		}
		s := stats.WebRtcTransportStat
		iceOK := s.IceState == mediasoup.IceStateConnected || s.IceState == mediasoup.IceStateCompleted
		return iceOK && s.DtlsState == mediasoup.DtlsStateConnected,
			fmt.Sprintf("iceState=%q dtlsState=%q", s.IceState, s.DtlsState)
	})
	t.Logf("ICE+DTLS connected in %v", time.Since(start).Round(time.Millisecond))

	// 2. SRTP pion -> worker. The producer routes by SSRC and must declare the
	// payload type pion really puts on the wire; no MID or header extensions.
	params := peer.sender.GetParameters()
	ssrc := uint32(params.Encodings[0].SSRC)
	producer, err := transport.Produce(&mediasoup.ProducerOptions{
		Kind: mediasoup.MediaKindAudio,
		RtpParameters: &mediasoup.RtpParameters{
			Codecs: []*mediasoup.RtpCodecParameters{{
				MimeType:    "audio/opus",
				PayloadType: pionOpusPT,
				ClockRate:   48000,
				Channels:    2,
			}},
			Encodings: []*mediasoup.RtpEncodingParameters{{Ssrc: ssrc}},
		},
	})
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	t.Cleanup(func() { _ = producer.Close() })

	// The reverse direction (worker encrypts, pion decrypts) on the same
	// transport: consume our own producer. Capabilities without header
	// extensions keep transport-cc off, hence no BWE probation packets
	// (SSRC 1234) that pion's ORTC read loop would block on.
	consumer, err := transport.Consume(&mediasoup.ConsumerOptions{
		ProducerId:      producer.Id(),
		RtpCapabilities: &mediasoup.RtpCapabilities{Codecs: router.RtpCapabilities().Codecs},
	})
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	t.Cleanup(func() { _ = consumer.Close() })
	consumerSSRC := consumer.RtpParameters().Encodings[0].Ssrc
	track := peer.receive(t, consumerSSRC)

	peer.startSending(t, params)
	start = time.Now()
	peer.sendOpus(t, 50)
	pollUntil(t, w, srtpTimeout, "producer to receive (i.e. decrypt) SRTP from pion", func() (bool, string) {
		stats, err := producer.GetStats()
		if err != nil {
			return false, "GetStats: " + err.Error()
		}
		for _, s := range stats {
			if s.Ssrc == ssrc && s.PacketCount > 0 && s.ByteCount > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("producer stats: %s", describeProducerStats(stats))
	})
	t.Logf("worker decrypted SRTP from pion within %v", time.Since(start).Round(time.Millisecond))

	// 3. SRTP worker -> pion: the consumer forwards our packets back, under
	// its own SSRC, encrypted by the worker.
	pkt := readOneRTP(t, track, srtpTimeout)
	if pkt.SSRC != consumerSSRC || pkt.PayloadType != pionOpusPT || !bytes.Equal(pkt.Payload, opusSilenceFrame) {
		t.Fatalf("pion received RTP ssrc=%d pt=%d payload=%x, want ssrc=%d pt=%d payload=%x",
			pkt.SSRC, pkt.PayloadType, pkt.Payload, consumerSSRC, pionOpusPT, opusSilenceFrame)
	}

	// 4. The worker must have survived all of it.
	assertWorkerAlive(t, w)
}

const (
	// pionOpusPT is the payload type pion's MediaEngine gives Opus. pion
	// puts this PT on the wire regardless of RTPSendParameters, so the
	// producer's rtpParameters must declare this very PT.
	pionOpusPT = 111

	handshakeTimeout  = 5 * time.Second
	srtpTimeout       = 5 * time.Second
	pionCloseTimeout  = 5 * time.Second
	statePollInterval = 20 * time.Millisecond
)

// opusSilenceFrame is a valid Opus packet: the TOC byte of a 20 ms CELT frame
// followed by silence. The worker only looks at the headers and the TOC byte.
var opusSilenceFrame = []byte{0xf8, 0xff, 0xfe}

// workerBinFromEnv returns $MEDIASOUP_WORKER_BIN, failing (never skipping) when it
// is not an executable file: a missing worker must not look like a green run.
func workerBinFromEnv(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("MEDIASOUP_WORKER_BIN")
	if bin == "" {
		t.Fatalf("MEDIASOUP_WORKER_BIN is not set: run `make worker` or use `make test`")
	}
	info, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("MEDIASOUP_WORKER_BIN=%q is not usable (%v): run `make worker` or use `make test`", bin, err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("MEDIASOUP_WORKER_BIN=%q is not an executable file (mode %v): run `make worker` or use `make test`", bin, info.Mode())
	}
	return bin
}

// startMediasoupWorker spawns the worker. Everything the worker and mediasoup-go log
// (including the worker's stderr, which mediasoup-go logs at info level) is
// captured and printed only if the test fails, e.g. after a crash.
func startMediasoupWorker(t *testing.T, bin string) *mediasoup.Worker {
	t.Helper()
	logs := &testutil.LockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// mediasoup-go gives a new worker one second to report that it runs,
	// which a loaded machine (-race, parallel builds) can miss. It then
	// returns ErrWorkerStartTimeout but leaves the process running, without
	// telling us its pid: tag each attempt through its environment, so that
	// an abandoned attempt can be found and killed.
	var w *mediasoup.Worker
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		tag := fmt.Sprintf("MEDIASOUP_HANDSHAKE_TEST=%d-%d-%d", os.Getpid(), time.Now().UnixNano(), attempt)
		w, err = mediasoup.NewWorker(bin, func(s *mediasoup.WorkerSettings) {
			s.LogLevel = mediasoup.WorkerLogLevelDebug
			s.LogTags = []mediasoup.WorkerLogTag{mediasoup.WorkerLogTagIce, mediasoup.WorkerLogTagDtls, mediasoup.WorkerLogTagSrtp}
			s.Logger = logger
			s.Env = []string{tag}
		})
		if !errors.Is(err, mediasoup.ErrWorkerStartTimeout) {
			break
		}
		killTaggedProcesses(tag)
		t.Logf("worker start attempt %d timed out, retrying", attempt)
	}
	if err != nil {
		t.Fatalf("start worker %q: %v\nworker log:\n%s", bin, err, logs.String())
	}
	t.Cleanup(func() {
		terminateMediasoupWorker(t, w)
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	return w
}

// killTaggedProcesses kills the processes whose environment holds tag (unique to one
// start attempt).
func killTaggedProcesses(tag string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, environ := range procs {
		data, err := os.ReadFile(environ)
		if err != nil || !slices.Contains(strings.Split(string(data), "\x00"), tag) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(environ))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// terminateMediasoupWorker closes the worker (mediasoup-go kills the process if
// it lingers a second) and waits until the process has exited. Worker.Close
// raced with the process waiter in mediasoup-go v2.4.1 (-race reported it);
// every test of this package calls it under -race since v2.6.0.
func terminateMediasoupWorker(t *testing.T, w *mediasoup.Worker) {
	t.Helper()
	w.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !w.SubprocessClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !w.SubprocessClosed() {
		t.Errorf("worker process %d did not exit", w.Pid())
	}
}

// pollUntil polls cond until it holds, the deadline passes, or the worker dies.
// cond returns a description of the current state for the failure message.
func pollUntil(t *testing.T, w *mediasoup.Worker, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if w.Closed() {
			t.Fatalf("worker died while waiting for %s: %v", what, w.Err())
		}
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (%s)", timeout, what, state)
		}
		time.Sleep(statePollInterval)
	}
}

// workerAliveContext returns a context that ends after timeout or as soon as the
// worker dies, whichever comes first, so that a crash fails fast.
func workerAliveContext(w *mediasoup.Worker, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	go func() {
		ticker := time.NewTicker(statePollInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				if w.Closed() {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}

// assertWorkerAlive checks that the worker process still exists and answers
// requests: a worker that crashed in libssl fails here even if nothing else
// noticed.
func assertWorkerAlive(t *testing.T, w *mediasoup.Worker) {
	t.Helper()
	if w.Closed() {
		t.Fatalf("worker is closed: %v", w.Err())
	}
	if err := syscall.Kill(w.Pid(), 0); err != nil {
		t.Fatalf("worker process %d is gone: %v", w.Pid(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := w.DumpContext(ctx); err != nil {
		t.Fatalf("worker does not answer Dump: %v", err)
	}
}

// pionPeer is a browser stand-in built on pion's ORTC API (no SDP).
type pionPeer struct {
	api      *webrtc.API
	gatherer *webrtc.ICEGatherer
	ice      *webrtc.ICETransport
	dtls     *webrtc.DTLSTransport
	track    *webrtc.TrackLocalStaticSample
	sender   *webrtc.RTPSender

	receivers []*webrtc.RTPReceiver
	drained   chan struct{} // closed when the RTCP drain goroutine has ended
}

func newPionPeer(t *testing.T) *pionPeer {
	t.Helper()

	// Only Opus, at a known payload type (see pionOpusPT). No
	// interceptors: we want the bare ICE/DTLS/SRTP path.
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: pionOpusPT,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatalf("register Opus: %v", err)
	}

	var se webrtc.SettingEngine
	// The worker listens on 127.0.0.1 only: pion must offer loopback host
	// candidates (it skips them by default) over UDP/IPv4, and nothing else.
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	// No mDNS: nothing to resolve, and no multicast socket to open.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)

	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))

	p := &pionPeer{api: api}
	var err error
	if p.gatherer, err = api.NewICEGatherer(webrtc.ICEGatherOptions{}); err != nil {
		t.Fatalf("NewICEGatherer: %v", err)
	}
	p.ice = api.NewICETransport(p.gatherer)
	if p.dtls, err = api.NewDTLSTransport(p.ice, nil); err != nil {
		t.Fatalf("NewDTLSTransport: %v", err)
	}
	p.track, err = webrtc.NewTrackLocalStaticSample(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pion")
	if err != nil {
		t.Fatalf("NewTrackLocalStaticSample: %v", err)
	}
	if p.sender, err = api.NewRTPSender(p.track, p.dtls); err != nil {
		t.Fatalf("NewRTPSender: %v", err)
	}

	t.Cleanup(func() { p.close(t) })
	return p
}

// close stops everything pion runs, in reverse order of construction, and
// bounded in time so that a stuck pion fails the test instead of hanging it.
func (p *pionPeer) close(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.sender.Stop() // also ends the RTCP drain goroutine
		if p.drained != nil {
			<-p.drained
		}
		for _, r := range p.receivers {
			_ = r.Stop()
		}
		_ = p.dtls.Stop()
		_ = p.ice.Stop()
		_ = p.gatherer.Close()
	}()
	select {
	case <-done:
	case <-time.After(pionCloseTimeout):
		t.Errorf("pion did not shut down within %v. Most likely the worker sent RTCP addressed "+
			"to an SSRC pion has no stream for: that blocks pion's ORTC SRTCP read loop, "+
			"and DTLSTransport.Stop with it, forever", pionCloseTimeout)
	}
}

// connect runs ICE and DTLS against the mediasoup WebRtcTransport and returns
// once pion considers both connected.
func (p *pionPeer) connect(t *testing.T, w *mediasoup.Worker, transport *mediasoup.Transport) {
	t.Helper()
	remote := transport.Data().WebRtcTransportData

	p.gather(t)

	// mediasoup reports DTLS role "auto", and so would pion: two "auto"s wait
	// for each other forever. Make pion the DTLS client explicitly: tell the
	// worker we are the client here, and tell pion the worker is the server
	// below. mediasoup compares fingerprints case-sensitively against its
	// upper-case rendering, while pion produces lower-case: upper-case them.
	local, err := p.dtls.GetLocalParameters()
	if err != nil {
		t.Fatalf("pion DTLS GetLocalParameters: %v", err)
	}
	fingerprints := make([]mediasoup.DtlsFingerprint, 0, len(local.Fingerprints))
	for _, fp := range local.Fingerprints {
		fingerprints = append(fingerprints, mediasoup.DtlsFingerprint{
			Algorithm: fp.Algorithm,
			Value:     strings.ToUpper(fp.Value),
		})
	}
	if err := transport.Connect(&mediasoup.TransportConnectOptions{
		DtlsParameters: &mediasoup.DtlsParameters{
			Role:         mediasoup.DtlsRoleClient,
			Fingerprints: fingerprints,
		},
	}); err != nil {
		t.Fatalf("WebRtcTransport.Connect: %v", err)
	}

	// mediasoup is ICE-lite (always controlled), so pion must be controlling,
	// with the worker's host candidates as remote candidates.
	candidates := make([]webrtc.ICECandidate, 0, len(remote.IceCandidates))
	for _, c := range remote.IceCandidates {
		if c.Protocol != mediasoup.TransportProtocolUDP {
			continue
		}
		candidates = append(candidates, webrtc.ICECandidate{
			Foundation: c.Foundation,
			Priority:   c.Priority,
			Address:    c.Address,
			Protocol:   webrtc.ICEProtocolUDP,
			Port:       c.Port,
			Typ:        webrtc.ICECandidateTypeHost,
			Component:  1,
		})
	}
	if err := p.ice.SetRemoteCandidates(candidates); err != nil {
		t.Fatalf("pion SetRemoteCandidates: %v", err)
	}

	ctx, cancel := workerAliveContext(w, handshakeTimeout)
	defer cancel()
	// fail reports a handshake error, blaming the worker if it died meanwhile
	// (as a worker crashing in libssl on the ClientHello does).
	fail := func(what string, err error) {
		t.Helper()
		if w.Closed() {
			t.Fatalf("%s: worker died: %v", what, w.Err())
		}
		t.Fatalf("%s: %v", what, err)
	}

	controlling := webrtc.ICERoleControlling
	if err := p.ice.StartContext(ctx, nil, webrtc.ICEParameters{
		UsernameFragment: remote.IceParameters.UsernameFragment,
		Password:         remote.IceParameters.Password,
		ICELite:          true,
	}, &controlling); err != nil {
		fail(fmt.Sprintf("pion ICE start (remote candidates %+v)", candidates), err)
	}

	// Only the hash pion can verify; a mismatch fails the handshake.
	var serverFingerprints []webrtc.DTLSFingerprint
	for _, fp := range remote.DtlsParameters.Fingerprints {
		if fp.Algorithm == "sha-256" {
			serverFingerprints = append(serverFingerprints, webrtc.DTLSFingerprint{Algorithm: fp.Algorithm, Value: fp.Value})
		}
	}
	if len(serverFingerprints) == 0 {
		t.Fatalf("worker offers no sha-256 DTLS fingerprint: %+v", remote.DtlsParameters.Fingerprints)
	}
	if err := p.dtls.StartContext(ctx, webrtc.DTLSParameters{
		Role:         webrtc.DTLSRoleServer,
		Fingerprints: serverFingerprints,
	}); err != nil {
		fail("pion DTLS handshake with the worker", err)
	}

	// pion's ORTC API never accepts streams it was not told about: the first
	// SRTP/SRTCP packet for an unknown SSRC blocks its read loop forever (and
	// DTLSTransport.Stop with it). The worker's RTCP compound packets carry an
	// XR (receiver reference time) whose sender SSRC is 0, from the first
	// RTCP tick (~500 ms after DTLS) once the producer has received media:
	// give SSRC 0 a stream of its own to land in.
	p.receive(t, 0)
}

// gather collects pion's local candidates, bounded in time.
func (p *pionPeer) gather(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	var once sync.Once
	p.gatherer.OnLocalCandidate(func(c *webrtc.ICECandidate) {
		if c == nil { // end of gathering
			once.Do(func() { close(done) })
		}
	})
	if err := p.gatherer.Gather(); err != nil {
		t.Fatalf("pion ICE gather: %v", err)
	}
	select {
	case <-done:
	case <-time.After(handshakeTimeout):
		t.Fatalf("pion ICE gathering did not finish within %v", handshakeTimeout)
	}
}

// startSending binds the track and drains incoming RTCP (receiver reports and
// the like from the worker) so that nothing in pion's read path stalls.
func (p *pionPeer) startSending(t *testing.T, params webrtc.RTPSendParameters) {
	t.Helper()
	if err := p.sender.Send(params); err != nil {
		t.Fatalf("pion RTPSender.Send: %v", err)
	}
	p.drained = make(chan struct{})
	go func() {
		defer close(p.drained)
		buf := make([]byte, 1500)
		for {
			if _, _, err := p.sender.Read(buf); err != nil {
				return // sender stopped (see close)
			}
		}
	}()
}

// sendOpus sends n 20 ms Opus frames, paced a little faster than real time.
func (p *pionPeer) sendOpus(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := p.track.WriteSample(media.Sample{Data: opusSilenceFrame, Duration: 20 * time.Millisecond}); err != nil {
			t.Fatalf("pion WriteSample #%d: %v", i, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive starts a pion RTPReceiver for the worker's stream with the given
// SSRC, which opens SRTP and SRTCP read streams for that SSRC.
func (p *pionPeer) receive(t *testing.T, ssrc uint32) *webrtc.TrackRemote {
	t.Helper()
	receiver, err := p.api.NewRTPReceiver(webrtc.RTPCodecTypeAudio, p.dtls)
	if err != nil {
		t.Fatalf("NewRTPReceiver: %v", err)
	}
	p.receivers = append(p.receivers, receiver)
	if err := receiver.Receive(webrtc.RTPReceiveParameters{
		Encodings: []webrtc.RTPDecodingParameters{{
			RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: webrtc.SSRC(ssrc), PayloadType: pionOpusPT},
		}},
	}); err != nil {
		t.Fatalf("RTPReceiver.Receive: %v", err)
	}
	return receiver.Track()
}

// readOneRTP reads one RTP packet from track, bounded by timeout.
func readOneRTP(t *testing.T, track *webrtc.TrackRemote, timeout time.Duration) *rtp.Packet {
	t.Helper()
	if err := track.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	pkt, _, err := track.ReadRTP()
	if err != nil {
		t.Fatalf("pion received no SRTP from the worker's consumer within %v: %v", timeout, err)
	}
	return pkt
}

func describeProducerStats(stats []*mediasoup.ProducerStat) string {
	if len(stats) == 0 {
		return "none"
	}
	var parts []string
	for _, s := range stats {
		parts = append(parts, fmt.Sprintf("{ssrc=%d packets=%d bytes=%d}", s.Ssrc, s.PacketCount, s.ByteCount))
	}
	return strings.Join(parts, " ")
}
