package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Payload types of the codecs this package registers in pion. On the sending
// side they are what goes on the wire (and what produce declares); on the
// receiving side pion adopts the router's payload types from the offer.
const (
	opusPT = 111
	vp8PT  = 96
)

// newAPI builds the pion API for one PeerConnection: Opus and VP8 only, the
// header extensions this package uses, pion's default interceptors (NACK,
// RTCP reports, transport-cc feedback, stats) plus transport-cc sequence
// numbers on sent packets, and ICE over UDP/IPv4 with loopback candidates and
// no mDNS.
func newAPI(configure func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: opusPT,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}},
		},
		PayloadType: vp8PT,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{extMid, webrtc.RTPCodecTypeAudio},
		{extMid, webrtc.RTPCodecTypeVideo},
		{extAudioLevel, webrtc.RTPCodecTypeAudio},
	} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.kind); err != nil {
			return nil, err
		}
	}
	ir := &interceptor.Registry{}
	// NACK (nack, nack pli feedback), sender/receiver reports, the simulcast
	// header extensions (mid, rid, repaired-rid), stats, transport-cc feedback.
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		return nil, err
	}

	var se webrtc.SettingEngine
	// pion logs at error level what is normal here (mediasoup's bandwidth
	// probation packets on SSRC 1234, for which no track exists): quiet
	// unless PION_LOG_* asks for more.
	logs := logging.NewDefaultLoggerFactory()
	if logs.DefaultLogLevel == logging.LogLevelError {
		logs.DefaultLogLevel = logging.LogLevelDisabled
	}
	se.LoggerFactory = logs
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient)
	if configure != nil {
		configure(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// transport is one mediasoup WebRtcTransport and the PeerConnection that
// talks to it. Negotiations are serialized by mu.
type transport struct {
	p    *Peer
	send bool // sending (pion offers) or receiving (mediasoup offers)
	pc   *webrtc.PeerConnection

	mu         sync.Mutex
	rt         *remoteTransport
	connected  bool // connectWebRtcTransport done
	negotiated bool // at least one offer/answer done
	version    int  // of the SDP written for mediasoup's side

	// sending side
	hasData      bool   // the offer has an m=application section
	nextStreamID uint16 // SCTP stream id of the next data producer

	// receiving side
	sections []*recvSection
}

func newTransport(p *Peer, api *webrtc.API, rt *remoteTransport, send bool) (*transport, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return nil, err
	}
	return &transport{p: p, send: send, pc: pc, rt: rt}, nil
}

func (t *transport) id() string { return t.rt.id }

func (t *transport) name() string {
	if t.send {
		return "send transport"
	}
	return "recv transport"
}

// connect tells mediasoup the client's DTLS parameters, read from the local
// description about to be applied: before pion starts ICE and DTLS, so that
// mediasoup knows its role when the first DTLS packet arrives.
func (t *transport) connect(ctx context.Context, local *sdp.SessionDescription) error {
	if t.connected {
		return nil
	}
	d, err := localDtls(local)
	if err != nil {
		return err
	}
	if err := t.p.conn.Request(ctx, "connectWebRtcTransport", map[string]any{
		"transportId": t.id(), "dtlsParameters": d,
	}, nil); err != nil {
		return err
	}
	t.connected = true
	return nil
}

// negotiateSend runs one offer/answer on the sending transport: pion offers,
// the answer is mediasoup's (built from its parameters). t.mu held. It
// returns the parsed offer.
func (t *transport) negotiateSend(ctx context.Context, iceRestart bool) ([]offeredSection, error) {
	var opts *webrtc.OfferOptions
	if iceRestart {
		opts = &webrtc.OfferOptions{ICERestart: true}
	}
	offer, err := t.pc.CreateOffer(opts)
	if err != nil {
		return nil, fmt.Errorf("create offer: %w", err)
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(offer.SDP); err != nil {
		return nil, fmt.Errorf("parse local offer: %w", err)
	}
	if err := t.connect(ctx, &parsed); err != nil {
		return nil, err
	}
	if err := t.pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("set local offer: %w", err)
	}
	sections := parseSections(&parsed)
	t.version++
	answer := sendAnswer(sections, t.rt, t.p.routerCaps, t.version)
	if err := t.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return nil, fmt.Errorf("set remote answer: %w\n%s", err, answer)
	}
	t.negotiated = true
	return sections, nil
}

// negotiateRecv runs one offer/answer on the receiving transport: the offer
// is mediasoup's (built from t.sections), pion answers. t.mu held.
func (t *transport) negotiateRecv(ctx context.Context) error {
	t.version++
	offer := recvOffer(t.sections, t.rt, t.version)
	if err := t.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fmt.Errorf("set remote offer: %w\n%s", err, offer)
	}
	answer, err := t.pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(answer.SDP); err != nil {
		return fmt.Errorf("parse local answer: %w", err)
	}
	if err := t.connect(ctx, &parsed); err != nil {
		return err
	}
	if err := t.pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set local answer: %w", err)
	}
	t.negotiated = true
	return nil
}

// restartIce asks mediasoup for new ICE parameters and restarts ICE on the
// PeerConnection with them (an ICE-restart offer on the sending side, a new
// offer with the new credentials on the receiving side).
func (t *transport) restartIce(ctx context.Context) error {
	var ice iceParameters
	if err := t.p.conn.Request(ctx, "restartIce", map[string]string{"transportId": t.id()}, &ice); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := *t.rt
	rt.ice = ice
	t.rt = &rt
	if !t.negotiated {
		return nil // the first negotiation uses the new parameters
	}
	if t.send {
		_, err := t.negotiateSend(ctx, true)
		return err
	}
	return t.negotiateRecv(ctx)
}

func (t *transport) close() {
	_ = t.pc.GracefulClose()
}
