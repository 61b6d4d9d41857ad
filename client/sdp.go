package client

// SDP plumbing between mediasoup's parameters and pion's PeerConnection.
//
// mediasoup speaks ORTC-style JSON (iceParameters, dtlsParameters,
// rtpParameters, ...); a webrtc.PeerConnection speaks SDP. Like
// mediasoup-client's Unified Plan handlers, this file builds the remote side's
// SDP from mediasoup's parameters, and reads the local SDP that pion creates
// back into mediasoup's parameters:
//
//   - sending transport: pion makes the offer (one sendonly m-section per
//     producer, an m=application section for data channels); the answer is
//     built here from the offer's m-sections and the transport's ICE, DTLS and
//     SCTP parameters, keeping only the codecs and header extensions the
//     router supports.
//   - receiving transport: the offer is built here, one sendonly m-section per
//     consumer (its mid, codecs, header extensions, SSRC and CNAME come from the
//     consumer's rtpParameters) plus an m=application section; pion answers.
//
// mediasoup is ICE-lite and takes the DTLS role it is told in
// connectWebRtcTransport; the SDP written here always says a=ice-lite and a
// setup attribute consistent with what the client tells mediasoup.

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// mediasoup's JSON shapes, as far as this package needs them.

type rtpCapabilities struct {
	Codecs           []rtpCodecCapability    `json:"codecs"`
	HeaderExtensions []rtpHeaderExtensionCap `json:"headerExtensions"`
}

type rtpCodecCapability struct {
	Kind                 string         `json:"kind"`
	MimeType             string         `json:"mimeType"`
	PreferredPayloadType uint8          `json:"preferredPayloadType"`
	ClockRate            uint32         `json:"clockRate"`
	Channels             uint8          `json:"channels,omitempty"`
	Parameters           map[string]any `json:"parameters,omitempty"`
	RtcpFeedback         []rtcpFeedback `json:"rtcpFeedback,omitempty"`
}

type rtcpFeedback struct {
	Type      string `json:"type"`
	Parameter string `json:"parameter,omitempty"`
}

type rtpHeaderExtensionCap struct {
	Kind             string `json:"kind"`
	URI              string `json:"uri"`
	PreferredID      int    `json:"preferredId"`
	PreferredEncrypt bool   `json:"preferredEncrypt,omitempty"`
	Direction        string `json:"direction,omitempty"`
}

type rtpParameters struct {
	Mid              string                         `json:"mid,omitempty"`
	Codecs           []rtpCodecParameters           `json:"codecs"`
	HeaderExtensions []rtpHeaderExtensionParameters `json:"headerExtensions"`
	Encodings        []rtpEncodingParameters        `json:"encodings"`
	Rtcp             rtcpParameters                 `json:"rtcp"`
	Msid             string                         `json:"msid,omitempty"`
}

type rtpCodecParameters struct {
	MimeType     string         `json:"mimeType"`
	PayloadType  uint8          `json:"payloadType"`
	ClockRate    uint32         `json:"clockRate"`
	Channels     uint8          `json:"channels,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	RtcpFeedback []rtcpFeedback `json:"rtcpFeedback,omitempty"`
}

type rtpHeaderExtensionParameters struct {
	URI     string `json:"uri"`
	ID      int    `json:"id"`
	Encrypt bool   `json:"encrypt,omitempty"`
}

type rtpEncodingParameters struct {
	Ssrc            uint32   `json:"ssrc,omitempty"`
	Rid             string   `json:"rid,omitempty"`
	Rtx             *rtxSsrc `json:"rtx,omitempty"`
	Dtx             bool     `json:"dtx,omitempty"`
	ScalabilityMode string   `json:"scalabilityMode,omitempty"`
	MaxBitrate      uint32   `json:"maxBitrate,omitempty"`
}

type rtxSsrc struct {
	Ssrc uint32 `json:"ssrc"`
}

type rtcpParameters struct {
	Cname       string `json:"cname,omitempty"`
	ReducedSize bool   `json:"reducedSize"`
}

type iceParameters struct {
	UsernameFragment string `json:"usernameFragment"`
	Password         string `json:"password"`
	IceLite          bool   `json:"iceLite,omitempty"`
}

type iceCandidate struct {
	Foundation string `json:"foundation"`
	Priority   uint32 `json:"priority"`
	Address    string `json:"address"`
	IP         string `json:"ip"` // older mediasoup versions
	Protocol   string `json:"protocol"`
	Port       int    `json:"port"`
	Type       string `json:"type"`
	TCPType    string `json:"tcpType,omitempty"`
}

type dtlsParameters struct {
	Role         string            `json:"role,omitempty"`
	Fingerprints []dtlsFingerprint `json:"fingerprints"`
}

type dtlsFingerprint struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"value"`
}

type sctpParameters struct {
	Port           int `json:"port"`
	OS             int `json:"OS"`
	MIS            int `json:"MIS"`
	MaxMessageSize int `json:"maxMessageSize"`
}

type sctpStreamParameters struct {
	StreamID          uint16  `json:"streamId"`
	Ordered           *bool   `json:"ordered,omitempty"`
	MaxPacketLifeTime *uint16 `json:"maxPacketLifeTime,omitempty"`
	MaxRetransmits    *uint16 `json:"maxRetransmits,omitempty"`
}

// remoteTransport is what mediasoup told about one of its WebRtcTransports.
type remoteTransport struct {
	id         string
	ice        iceParameters
	candidates []iceCandidate
	dtls       dtlsParameters
	sctp       *sctpParameters
}

func parseTransportInfo(ti TransportInfo) (*remoteTransport, error) {
	rt := &remoteTransport{id: ti.ID}
	if err := json.Unmarshal(ti.IceParameters, &rt.ice); err != nil {
		return nil, fmt.Errorf("iceParameters: %w", err)
	}
	if err := json.Unmarshal(ti.IceCandidates, &rt.candidates); err != nil {
		return nil, fmt.Errorf("iceCandidates: %w", err)
	}
	if err := json.Unmarshal(ti.DtlsParameters, &rt.dtls); err != nil {
		return nil, fmt.Errorf("dtlsParameters: %w", err)
	}
	if len(ti.SctpParameters) > 0 && string(ti.SctpParameters) != "null" {
		rt.sctp = new(sctpParameters)
		if err := json.Unmarshal(ti.SctpParameters, rt.sctp); err != nil {
			return nil, fmt.Errorf("sctpParameters: %w", err)
		}
	}
	if rt.id == "" || rt.ice.UsernameFragment == "" || rt.ice.Password == "" {
		return nil, fmt.Errorf("transport without id or ICE credentials")
	}
	if rt.fingerprint() == nil {
		return nil, fmt.Errorf("transport without a DTLS fingerprint")
	}
	if len(usableCandidates(rt.candidates)) == 0 {
		return nil, fmt.Errorf("transport without a UDP/IPv4 ICE candidate (this client does not do ICE over TCP)")
	}
	return rt, nil
}

// fingerprint picks the transport's sha-256 fingerprint (else its first one):
// an SDP carries one, and pion refuses conflicting ones.
func (rt *remoteTransport) fingerprint() *dtlsFingerprint {
	for i, f := range rt.dtls.Fingerprints {
		if strings.EqualFold(f.Algorithm, "sha-256") {
			return &rt.dtls.Fingerprints[i]
		}
	}
	if len(rt.dtls.Fingerprints) > 0 {
		return &rt.dtls.Fingerprints[0]
	}
	return nil
}

// Header extension URIs this package negotiates.
const (
	extMid        = "urn:ietf:params:rtp-hdrext:sdes:mid"
	extRid        = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
	extRepairRid  = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
	extAudioLevel = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	extTWCC       = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
)

// localRtpCapabilities is what this client can receive, in the router's
// terms (its payload types and extension ids): Opus and VP8 without RTX, the
// feedback pion supports, and the mid, audio level and transport-cc header
// extensions. It is sent in join.
func localRtpCapabilities(router *rtpCapabilities) *rtpCapabilities {
	caps := &rtpCapabilities{Codecs: []rtpCodecCapability{}, HeaderExtensions: []rtpHeaderExtensionCap{}}
	for _, c := range router.Codecs {
		mt := strings.ToLower(c.MimeType)
		if mt != "audio/opus" && mt != "video/vp8" {
			continue
		}
		c.RtcpFeedback = supportedFeedback(c.Kind, c.RtcpFeedback)
		caps.Codecs = append(caps.Codecs, c)
	}
	for _, h := range router.HeaderExtensions {
		switch h.URI {
		case extMid, extTWCC:
		case extAudioLevel:
			if h.Kind != "audio" {
				continue
			}
		default:
			continue
		}
		caps.HeaderExtensions = append(caps.HeaderExtensions, h)
	}
	return caps
}

// supportedFeedback keeps the RTCP feedback this client's receiving side
// handles: transport-cc, and for video NACK, PLI and FIR.
func supportedFeedback(kind string, in []rtcpFeedback) []rtcpFeedback {
	out := []rtcpFeedback{}
	for _, fb := range in {
		switch {
		case fb.Type == "transport-cc",
			kind == "video" && fb.Type == "nack" && (fb.Parameter == "" || fb.Parameter == "pli"),
			kind == "video" && fb.Type == "ccm" && fb.Parameter == "fir":
			out = append(out, fb)
		}
	}
	return out
}

// sdpWriter accumulates SDP lines.
type sdpWriter struct{ b strings.Builder }

func (w *sdpWriter) line(format string, args ...any) {
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteString("\r\n")
}

func (w *sdpWriter) String() string { return w.b.String() }

// session writes the session part shared by both directions.
func (w *sdpWriter) session(version int, rt *remoteTransport, mids []string) {
	w.line("v=0")
	w.line("o=mediasoup-client 1000000 %d IN IP4 0.0.0.0", version)
	w.line("s=-")
	w.line("t=0 0")
	w.line("a=ice-lite")
	fp := rt.fingerprint()
	w.line("a=fingerprint:%s %s", strings.ToLower(fp.Algorithm), strings.ToUpper(fp.Value))
	w.line("a=msid-semantic: WMS *")
	if len(mids) > 0 {
		w.line("a=group:BUNDLE %s", strings.Join(mids, " "))
	}
}

// transportAttrs writes the ICE, DTLS and candidate lines of one m-section.
func (w *sdpWriter) transportAttrs(rt *remoteTransport, setup string) {
	w.line("a=ice-ufrag:%s", rt.ice.UsernameFragment)
	w.line("a=ice-pwd:%s", rt.ice.Password)
	w.line("a=setup:%s", setup)
	for _, c := range usableCandidates(rt.candidates) {
		addr := c.Address
		if addr == "" {
			addr = c.IP
		}
		typ := c.Type
		if typ == "" {
			typ = "host"
		}
		w.line("a=candidate:%s 1 %s %d %s %d typ %s", c.Foundation, strings.ToLower(c.Protocol), c.Priority, addr, c.Port, typ)
	}
	w.line("a=end-of-candidates")
}

// usableCandidates keeps mediasoup's UDP IPv4 candidates: the client's ICE
// agent gathers UDP over IPv4 only.
func usableCandidates(in []iceCandidate) []iceCandidate {
	var out []iceCandidate
	for _, c := range in {
		addr := c.Address
		if addr == "" {
			addr = c.IP
		}
		if strings.EqualFold(c.Protocol, "udp") && !strings.Contains(addr, ":") {
			out = append(out, c)
		}
	}
	return out
}

func (w *sdpWriter) codecs(codecs []rtpCodecParameters) {
	for _, c := range codecs {
		name := c.MimeType[strings.IndexByte(c.MimeType, '/')+1:]
		if c.Channels > 1 {
			w.line("a=rtpmap:%d %s/%d/%d", c.PayloadType, name, c.ClockRate, c.Channels)
		} else {
			w.line("a=rtpmap:%d %s/%d", c.PayloadType, name, c.ClockRate)
		}
		if f := formatFmtp(c.Parameters); f != "" {
			w.line("a=fmtp:%d %s", c.PayloadType, f)
		}
		for _, fb := range c.RtcpFeedback {
			if fb.Parameter != "" {
				w.line("a=rtcp-fb:%d %s %s", c.PayloadType, fb.Type, fb.Parameter)
			} else {
				w.line("a=rtcp-fb:%d %s", c.PayloadType, fb.Type)
			}
		}
	}
}

func payloadTypes(codecs []rtpCodecParameters) string {
	pts := make([]string, len(codecs))
	for i, c := range codecs {
		pts[i] = strconv.Itoa(int(c.PayloadType))
	}
	return strings.Join(pts, " ")
}

// formatFmtp writes codec parameters as an fmtp value, keys sorted.
func formatFmtp(params map[string]any) string {
	if len(params) == 0 {
		return ""
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		switch v := params[k].(type) {
		case float64:
			if v == math.Trunc(v) {
				parts = append(parts, fmt.Sprintf("%s=%d", k, int64(v)))
			} else {
				parts = append(parts, fmt.Sprintf("%s=%v", k, v))
			}
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, ";")
}

// parseFmtp reads an fmtp value into codec parameters, numbers as numbers
// (as mediasoup-client does), except profile-level-id which is a hex string.
func parseFmtp(s string) map[string]any {
	params := map[string]any{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && k != "profile-level-id" {
			params[k] = float64(n)
		} else {
			params[k] = v
		}
	}
	return params
}

// offeredSection is one m-section of pion's local offer, parsed.
type offeredSection struct {
	kind      string // audio, video, application
	mid       string
	port      int
	direction string
	codecs    []rtpCodecParameters
	exts      []rtpHeaderExtensionParameters
	rids      []string // simulcast send rids, in offer order
}

func parseSections(desc *sdp.SessionDescription) []offeredSection {
	out := make([]offeredSection, 0, len(desc.MediaDescriptions))
	for _, m := range desc.MediaDescriptions {
		s := offeredSection{kind: m.MediaName.Media, port: m.MediaName.Port.Value, direction: "sendrecv"}
		byPT := map[uint8]*rtpCodecParameters{}
		var order []uint8
		for _, f := range m.MediaName.Formats {
			if pt, err := strconv.ParseUint(f, 10, 8); err == nil {
				order = append(order, uint8(pt))
			}
		}
		for _, a := range m.Attributes {
			switch a.Key {
			case "mid":
				s.mid = a.Value
			case "sendonly", "recvonly", "sendrecv", "inactive":
				s.direction = a.Key
			case "rtpmap":
				pt, rest, ok := strings.Cut(a.Value, " ")
				n, err := strconv.ParseUint(pt, 10, 8)
				if !ok || err != nil {
					continue
				}
				parts := strings.Split(rest, "/")
				c := &rtpCodecParameters{PayloadType: uint8(n)}
				if len(parts) >= 2 {
					clock, _ := strconv.ParseUint(parts[1], 10, 32)
					c.ClockRate = uint32(clock)
				}
				if len(parts) >= 3 {
					ch, _ := strconv.ParseUint(parts[2], 10, 8)
					c.Channels = uint8(ch)
				}
				c.MimeType = s.kind + "/" + parts[0]
				byPT[c.PayloadType] = c
			case "fmtp":
				pt, rest, _ := strings.Cut(a.Value, " ")
				if n, err := strconv.ParseUint(pt, 10, 8); err == nil && byPT[uint8(n)] != nil {
					byPT[uint8(n)].Parameters = parseFmtp(rest)
				}
			case "rtcp-fb":
				fields := strings.Fields(a.Value)
				if len(fields) < 2 {
					continue
				}
				if n, err := strconv.ParseUint(fields[0], 10, 8); err == nil && byPT[uint8(n)] != nil {
					fb := rtcpFeedback{Type: fields[1]}
					if len(fields) > 2 {
						fb.Parameter = fields[2]
					}
					byPT[uint8(n)].RtcpFeedback = append(byPT[uint8(n)].RtcpFeedback, fb)
				}
			case "extmap":
				id, uri, ok := strings.Cut(a.Value, " ")
				id, _, _ = strings.Cut(id, "/")
				n, err := strconv.Atoi(id)
				if !ok || err != nil {
					continue
				}
				uri, _, _ = strings.Cut(uri, " ")
				s.exts = append(s.exts, rtpHeaderExtensionParameters{URI: uri, ID: n})
			case "rid":
				f := strings.Fields(a.Value)
				if len(f) >= 2 && f[1] == "send" {
					s.rids = append(s.rids, f[0])
				}
			}
		}
		for _, pt := range order {
			if c := byPT[pt]; c != nil {
				s.codecs = append(s.codecs, *c)
			}
		}
		out = append(out, s)
	}
	return out
}

// matchRouterCodec finds the router's codec for an offered one.
func matchRouterCodec(router *rtpCapabilities, c rtpCodecParameters) *rtpCodecCapability {
	for i, rc := range router.Codecs {
		if !strings.EqualFold(rc.MimeType, c.MimeType) || rc.ClockRate != c.ClockRate {
			continue
		}
		if strings.HasPrefix(strings.ToLower(rc.MimeType), "audio/") && max(rc.Channels, 1) != max(c.Channels, 1) {
			continue
		}
		return &router.Codecs[i]
	}
	return nil
}

// answerCodecs keeps the offered media codecs the router supports (Opus, VP8:
// what this package sends), with the feedback both sides support.
func answerCodecs(router *rtpCapabilities, offered []rtpCodecParameters) []rtpCodecParameters {
	var out []rtpCodecParameters
	for _, c := range offered {
		mt := strings.ToLower(c.MimeType)
		if mt != "audio/opus" && mt != "video/vp8" {
			continue
		}
		rc := matchRouterCodec(router, c)
		if rc == nil {
			continue
		}
		var fbs []rtcpFeedback
		for _, fb := range c.RtcpFeedback {
			for _, rfb := range rc.RtcpFeedback {
				if fb == rfb {
					fbs = append(fbs, fb)
					break
				}
			}
		}
		c.RtcpFeedback = fbs
		out = append(out, c)
	}
	return out
}

// answerExtensions keeps the offered header extensions the router receives.
func answerExtensions(router *rtpCapabilities, kind string, offered []rtpHeaderExtensionParameters) []rtpHeaderExtensionParameters {
	var out []rtpHeaderExtensionParameters
	for _, e := range offered {
		for _, h := range router.HeaderExtensions {
			if h.Kind == kind && h.URI == e.URI && (h.Direction == "" || h.Direction == "sendrecv" || h.Direction == "recvonly") {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// sendAnswer builds mediasoup's answer to pion's offer on the sending
// transport. mediasoup is the DTLS server (a=setup:passive): the client
// connects the transport with role "client".
func sendAnswer(offer []offeredSection, rt *remoteTransport, router *rtpCapabilities, version int) string {
	var w sdpWriter
	var mids []string
	for _, s := range offer {
		if s.port != 0 {
			mids = append(mids, s.mid)
		}
	}
	w.session(version, rt, mids)
	for _, s := range offer {
		if s.kind == "application" {
			w.line("m=application %d UDP/DTLS/SCTP webrtc-datachannel", portOf(s))
			w.line("c=IN IP4 127.0.0.1")
			w.line("a=mid:%s", s.mid)
			w.transportAttrs(rt, "passive")
			if rt.sctp != nil {
				w.line("a=sctp-port:%d", rt.sctp.Port)
				w.line("a=max-message-size:%d", rt.sctp.MaxMessageSize)
			}
			continue
		}
		codecs := answerCodecs(router, s.codecs)
		if len(codecs) == 0 || s.port == 0 {
			// Rejected (nothing the router can receive, or closed).
			pts := "0"
			if len(s.codecs) > 0 {
				pts = payloadTypes(s.codecs[:1])
			}
			w.line("m=%s 0 UDP/TLS/RTP/SAVPF %s", s.kind, pts)
			w.line("c=IN IP4 0.0.0.0")
			w.line("a=mid:%s", s.mid)
			w.line("a=inactive")
			continue
		}
		w.line("m=%s 7 UDP/TLS/RTP/SAVPF %s", s.kind, payloadTypes(codecs))
		w.line("c=IN IP4 127.0.0.1")
		w.line("a=mid:%s", s.mid)
		switch s.direction {
		case "sendonly", "sendrecv":
			w.line("a=recvonly")
		default:
			w.line("a=inactive")
		}
		w.transportAttrs(rt, "passive")
		w.line("a=rtcp-mux")
		w.line("a=rtcp-rsize")
		w.codecs(codecs)
		for _, e := range answerExtensions(router, s.kind, s.exts) {
			w.line("a=extmap:%d %s", e.ID, e.URI)
		}
		if len(s.rids) > 1 {
			for _, rid := range s.rids {
				w.line("a=rid:%s recv", rid)
			}
			w.line("a=simulcast:recv %s", strings.Join(s.rids, ";"))
		}
	}
	return w.String()
}

func portOf(s offeredSection) int {
	if s.port == 0 {
		return 0
	}
	return 7
}

// recvSection is one m-section of the receiving transport's offer.
type recvSection struct {
	mid      string
	kind     string // audio, video, application
	params   *rtpParameters
	streamID string
	trackID  string
	closed   bool
}

// recvOffer builds mediasoup's offer on the receiving transport. mediasoup
// offers a=setup:actpass; pion answers active, and the client connects the
// transport with the role its answer says.
func recvOffer(sections []*recvSection, rt *remoteTransport, version int) string {
	var w sdpWriter
	mids := make([]string, len(sections))
	for i, s := range sections {
		mids[i] = s.mid
	}
	w.session(version, rt, mids)
	for _, s := range sections {
		if s.kind == "application" {
			w.line("m=application 7 UDP/DTLS/SCTP webrtc-datachannel")
			w.line("c=IN IP4 127.0.0.1")
			w.line("a=mid:%s", s.mid)
			w.transportAttrs(rt, "actpass")
			if rt.sctp != nil {
				w.line("a=sctp-port:%d", rt.sctp.Port)
				w.line("a=max-message-size:%d", rt.sctp.MaxMessageSize)
			}
			continue
		}
		p := s.params
		w.line("m=%s 7 UDP/TLS/RTP/SAVPF %s", s.kind, payloadTypes(p.Codecs))
		w.line("c=IN IP4 127.0.0.1")
		w.line("a=mid:%s", s.mid)
		w.transportAttrs(rt, "actpass")
		w.line("a=rtcp-mux")
		w.line("a=rtcp-rsize")
		w.codecs(p.Codecs)
		for _, e := range p.HeaderExtensions {
			w.line("a=extmap:%d %s", e.ID, e.URI)
		}
		if s.closed {
			w.line("a=inactive")
			continue
		}
		w.line("a=sendonly")
		w.line("a=msid:%s %s", s.streamID, s.trackID)
		if len(p.Encodings) > 0 && p.Encodings[0].Ssrc != 0 {
			e := p.Encodings[0]
			if e.Rtx != nil && e.Rtx.Ssrc != 0 {
				w.line("a=ssrc-group:FID %d %d", e.Ssrc, e.Rtx.Ssrc)
			}
			w.line("a=ssrc:%d cname:%s", e.Ssrc, p.Rtcp.Cname)
			w.line("a=ssrc:%d msid:%s %s", e.Ssrc, s.streamID, s.trackID)
			if e.Rtx != nil && e.Rtx.Ssrc != 0 {
				w.line("a=ssrc:%d cname:%s", e.Rtx.Ssrc, p.Rtcp.Cname)
				w.line("a=ssrc:%d msid:%s %s", e.Rtx.Ssrc, s.streamID, s.trackID)
			}
		}
	}
	return w.String()
}

// localDtls reads the fingerprint and DTLS role from a local description:
// a=setup:active is the DTLS client, passive the server. An offer's actpass
// resolves to the role the answer (built here) leaves to the client: client.
func localDtls(desc *sdp.SessionDescription) (dtlsParameters, error) {
	var d dtlsParameters
	fp, ok := desc.Attribute("fingerprint")
	role := ""
	for _, m := range desc.MediaDescriptions {
		if !ok {
			fp, ok = m.Attribute("fingerprint")
		}
		if role == "" {
			if setup, has := m.Attribute("setup"); has {
				role = setup
			}
		}
	}
	alg, value, found := strings.Cut(fp, " ")
	if !ok || !found {
		return d, fmt.Errorf("local description without a fingerprint")
	}
	switch role {
	case "active", "actpass":
		d.Role = "client"
	case "passive":
		d.Role = "server"
	default:
		return d, fmt.Errorf("local description with setup %q", role)
	}
	// mediasoup compares fingerprints case-sensitively, in upper case.
	d.Fingerprints = []dtlsFingerprint{{Algorithm: strings.ToLower(alg), Value: strings.ToUpper(value)}}
	return d, nil
}
