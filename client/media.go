package client

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// AudioOptions configures ProduceAudio.
type AudioOptions struct {
	// Silent marks every packet's audio level (ssrc-audio-level header
	// extension) as silence. By default packets claim a loud voice
	// (−10 dBov, voice activity set), so the room's audio level observer
	// reports the peer as active speaker.
	Silent bool
}

// VideoOptions configures ProduceVideo.
type VideoOptions struct {
	// Simulcast sends three encodings (rids r0, r1, r2: about 30, 85 and
	// 240 kbit/s at 15 fps, announced as 320x180, 640x360 and 1280x720
	// keyframes) instead of one (about 145 kbit/s, 640x360).
	Simulcast bool
	// FrameRate in frames per second (default 15).
	FrameRate int
}

// Synthetic media. The generators send RTP that mediasoup forwards like real
// media, but the payloads are not decodable:
//
//   - audio: an Opus TOC byte (CELT fullband 20 ms) followed by a synthetic
//     record, one packet every 20 ms, with the ssrc-audio-level and mid header
//     extensions;
//   - video: VP8 RTP payload descriptors (picture id, TL0PICIDX, TID 0) around
//     frames whose first bytes are a real VP8 frame tag, with the key frame
//     start code and dimensions on key frames (mediasoup forwards a video
//     consumer only from a key frame on); a key frame is sent on start, every
//     2 s, and whenever mediasoup asks (PLI or FIR on that encoding).
//
// Every packet's payload carries a synthetic record (see SyntheticPayload)
// followed by filler, with a CRC, so a receiver can tell which packet it got,
// when it was sent, and whether it arrived byte for byte.
const (
	recordLen     = 28 // magic, layer, flags, packet, packets, frame, sent at, CRC
	recordMagic   = "msfu"
	audioTOC      = 0xfc
	audioSize     = 80 // payload bytes per audio packet
	vp8DescLen    = 6
	maxChunk      = 1100 // frame bytes per video packet at most
	keyFrameEvery = 2 * time.Second
	loudLevel     = 10  // −dBov
	silentLevel   = 127 // −dBov
)

// videoLayers are the encodings of a simulcast video producer, low to high.
var videoLayers = []struct {
	rid           string
	width, height int
	frameBytes    int
}{
	{"r0", 320, 180, 250},
	{"r1", 640, 360, 700},
	{"r2", 1280, 720, 2000},
}

// SyntheticPayload describes the record inside a payload sent by this
// package's generators.
type SyntheticPayload struct {
	Kind     string    // "audio" or "video"
	Layer    int       // the simulcast encoding (0 = lowest); 0 without simulcast
	KeyFrame bool      // a video key frame
	Frame    uint64    // audio packet or video frame number of the encoding
	Packet   int       // index of the packet in its video frame
	Packets  int       // packets of the video frame
	SentAt   time.Time // when the generator wrote it
}

// ParseSyntheticPayload decodes an RTP payload sent by ProduceAudio
// (kind "audio") or ProduceVideo ("video") as received by a consumer, and
// checks that it is intact: a CRC-32 in the record covers every byte of the
// payload (for video, except the VP8 picture id and TL0PICIDX, which
// mediasoup rewrites when it switches simulcast layers).
func ParseSyntheticPayload(kind string, payload []byte) (SyntheticPayload, error) {
	info := SyntheticPayload{Kind: kind}
	off := 0
	switch kind {
	case "audio":
		if len(payload) < 1 || payload[0] != audioTOC {
			return info, errors.New("not a synthetic audio payload")
		}
		off = 1
	case "video":
		if len(payload) < vp8DescLen || payload[0]&0x80 == 0 || payload[1] != 0xe0 {
			return info, errors.New("not a synthetic VP8 payload descriptor")
		}
		off = vp8DescLen
		if payload[0]&0x10 != 0 { // start of a frame
			if len(payload) < off+3 {
				return info, errors.New("short VP8 frame")
			}
			if payload[off]&0x01 == 0 {
				if len(payload) < off+10 || payload[off+3] != 0x9d || payload[off+4] != 0x01 || payload[off+5] != 0x2a {
					return info, errors.New("VP8 key frame without start code")
				}
				info.KeyFrame = true
				off += 10
			} else {
				off += 3
			}
		}
	default:
		return info, fmt.Errorf("unknown kind %q", kind)
	}
	rec := payload[off:]
	if len(rec) < recordLen || string(rec[:4]) != recordMagic {
		return info, errors.New("no synthetic record")
	}
	if got, want := binary.BigEndian.Uint32(rec[24:28]), payloadCRC(kind, payload, off); got != want {
		return info, fmt.Errorf("payload damaged (CRC %08x, want %08x)", want, got)
	}
	key := rec[5]&1 != 0
	info.Layer = int(rec[4])
	info.Packet, info.Packets = int(rec[6]), int(rec[7])
	info.Frame = binary.BigEndian.Uint64(rec[8:16])
	info.SentAt = time.Unix(0, int64(binary.BigEndian.Uint64(rec[16:24])))
	if kind == "video" && info.Packet == 0 && key != info.KeyFrame {
		return info, errors.New("key frame flag does not match the frame")
	}
	info.KeyFrame = key
	return info, nil
}

// payloadCRC is the CRC-32 of a synthetic payload whose record starts at
// off, without its CRC field and (video) the bytes the SFU may rewrite.
func payloadCRC(kind string, payload []byte, off int) uint32 {
	crc := crc32.NewIEEE()
	if kind == "video" {
		crc.Write(payload[:2])
		crc.Write(payload[5 : off+24])
	} else {
		crc.Write(payload[:off+24])
	}
	crc.Write(payload[off+recordLen:])
	return crc.Sum32()
}

// putRecord writes a synthetic record and its filler into b.
func putRecord(b []byte, layer int, key bool, idx, count int, frame uint64, now time.Time) {
	copy(b, recordMagic)
	b[4] = byte(layer)
	b[5] = 0
	if key {
		b[5] = 1
	}
	b[6], b[7] = byte(idx), byte(count)
	binary.BigEndian.PutUint64(b[8:16], frame)
	binary.BigEndian.PutUint64(b[16:24], uint64(now.UnixNano()))
	for i := range b[recordLen:] {
		b[recordLen+i] = byte(frame*31 + uint64(i))
	}
}

// sealRecord stores the CRC of a payload whose record starts at off.
func sealRecord(kind string, payload []byte, off int) {
	binary.BigEndian.PutUint32(payload[off+24:off+28], payloadCRC(kind, payload, off))
}

// synthTrack is a webrtc.TrackLocal written to directly by a generator: at
// Bind it learns the SSRC, payload type and header extension ids pion
// negotiated.
type synthTrack struct {
	kind              webrtc.RTPCodecType
	mimeType          string
	id, streamID, rid string

	mu   sync.Mutex
	w    webrtc.TrackLocalWriter
	ssrc uint32
	pt   uint8
	exts map[string]uint8 // uri → id
	mid  string
}

func (t *synthTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, t.mimeType) {
			continue
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		t.w, t.ssrc, t.pt = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(c.PayloadType)
		t.exts = map[string]uint8{}
		for _, h := range ctx.HeaderExtensions() {
			t.exts[h.URI] = uint8(h.ID)
		}
		return c, nil
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (t *synthTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.w = nil
	t.mu.Unlock()
	return nil
}

func (t *synthTrack) ID() string                { return t.id }
func (t *synthTrack) RID() string               { return t.rid }
func (t *synthTrack) StreamID() string          { return t.streamID }
func (t *synthTrack) Kind() webrtc.RTPCodecType { return t.kind }

// write sends one packet; level < 0 leaves out the audio level extension.
// It reports whether the packet went out.
func (t *synthTrack) write(h *rtp.Header, payload []byte, level int) bool {
	t.mu.Lock()
	w, ssrc, pt, exts, mid := t.w, t.ssrc, t.pt, t.exts, t.mid
	t.mu.Unlock()
	if w == nil {
		return false
	}
	h.Version, h.SSRC, h.PayloadType = 2, ssrc, pt
	if id := exts[extMid]; id != 0 && mid != "" {
		_ = h.SetExtension(id, []byte(mid))
	}
	if id := exts[extRid]; id != 0 && t.rid != "" {
		_ = h.SetExtension(id, []byte(t.rid))
	}
	if id := exts[extAudioLevel]; id != 0 && level >= 0 {
		_ = h.SetExtension(id, []byte{0x80 | byte(level)})
	}
	n, err := w.WriteRTP(h, payload)
	return err == nil && n > 0
}

// stream is the generator state of one encoding.
type stream struct {
	track      *synthTrack
	layer      int
	seq        uint16
	tsBase     uint32
	frame      uint64
	pictureID  uint16
	tl0        uint8
	width      int
	height     int
	frameBytes int
	lastKey    time.Time
	wantKey    atomic.Bool
}

// ProducerStats counts what a producer sent.
type ProducerStats struct {
	Packets          uint64 // RTP packets sent
	Bytes            uint64 // RTP payload bytes sent
	KeyFrames        uint64 // video key frames sent
	KeyFrameRequests uint64 // PLI and FIR received
}

// ProducerScore is one entry of the producerScore notification: the
// worker's score (0–10) of one of the producer's encodings.
type ProducerScore struct {
	EncodingIdx int    `json:"encodingIdx"`
	SSRC        uint32 `json:"ssrc"`
	Rid         string `json:"rid,omitempty"`
	Score       int    `json:"score"`
}

// Producer is a synthetic audio or video source sent on the peer's sending
// transport and announced with produce.
type Producer struct {
	id      string
	kind    string
	p       *Peer
	sender  *webrtc.RTPSender
	streams []*stream
	silent  bool
	fps     int

	paused   atomic.Bool
	live     atomic.Bool // produce answered: the generator may send
	stopOnce sync.Once
	stopCh   chan struct{}
	genDone  chan struct{}

	packets, bytes, keyFrames, keyRequests atomic.Uint64

	mu     sync.Mutex
	score  []ProducerScore
	closed bool
}

// ID returns the producer id.
func (pr *Producer) ID() string { return pr.id }

// Kind returns "audio" or "video".
func (pr *Producer) Kind() string { return pr.kind }

// Paused tells whether the producer is paused (by Pause).
func (pr *Producer) Paused() bool { return pr.paused.Load() }

// Stats returns what the producer sent so far.
func (pr *Producer) Stats() ProducerStats {
	return ProducerStats{Packets: pr.packets.Load(), Bytes: pr.bytes.Load(),
		KeyFrames: pr.keyFrames.Load(), KeyFrameRequests: pr.keyRequests.Load()}
}

// Score returns the last producerScore the server sent for the producer.
func (pr *Producer) Score() []ProducerScore {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]ProducerScore(nil), pr.score...)
}

func (pr *Producer) setScore(raw json.RawMessage) {
	var s []ProducerScore
	if json.Unmarshal(raw, &s) == nil {
		pr.mu.Lock()
		pr.score = s
		pr.mu.Unlock()
	}
}

// Pause stops sending and pauses the producer on the server (pauseProducer):
// its consumers get consumerPaused.
func (pr *Producer) Pause(ctx context.Context) error {
	pr.paused.Store(true)
	return pr.p.conn.Request(ctx, "pauseProducer", map[string]string{"producerId": pr.id}, nil)
}

// Resume resumes the producer on the server (resumeProducer) and sending,
// starting with a key frame.
func (pr *Producer) Resume(ctx context.Context) error {
	if err := pr.p.conn.Request(ctx, "resumeProducer", map[string]string{"producerId": pr.id}, nil); err != nil {
		return err
	}
	for _, s := range pr.streams {
		s.wantKey.Store(true)
	}
	pr.paused.Store(false)
	return nil
}

// Close stops sending, closes the producer on the server (closeProducer; its
// consumers get consumerClosed) and removes its track from the sending
// transport.
func (pr *Producer) Close(ctx context.Context) error {
	pr.mu.Lock()
	if pr.closed {
		pr.mu.Unlock()
		return nil
	}
	pr.closed = true
	pr.mu.Unlock()
	pr.stop()
	err := pr.p.conn.Request(ctx, "closeProducer", map[string]string{"producerId": pr.id}, nil)
	pr.p.mu.Lock()
	delete(pr.p.producers, pr.id)
	pr.p.mu.Unlock()
	if rerr := pr.removeTrack(ctx); err == nil && !pr.p.isClosed() {
		err = rerr
	}
	return err
}

// removeTrack removes the producer's track from the sending transport: its
// m-section becomes inactive.
func (pr *Producer) removeTrack(ctx context.Context) error {
	t := pr.p.send
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.pc.RemoveTrack(pr.sender); err != nil {
		return err
	}
	_, err := t.negotiateSend(ctx, false)
	return err
}

// stop ends the generator and waits for it.
func (pr *Producer) stop() {
	pr.stopOnce.Do(func() { close(pr.stopCh) })
	<-pr.genDone
}

// ProduceAudio sends a synthetic Opus track (see AudioOptions) on the
// sending transport and announces it with produce.
func (p *Peer) ProduceAudio(ctx context.Context, opts AudioOptions) (*Producer, error) {
	track := &synthTrack{kind: webrtc.RTPCodecTypeAudio, mimeType: webrtc.MimeTypeOpus, id: "audio-" + randomID(), streamID: p.cname}
	pr := &Producer{kind: "audio", silent: opts.Silent, streams: []*stream{newStream(track, 0, 0, 0, audioSize)}}
	return p.produce(ctx, pr)
}

// ProduceVideo sends a synthetic VP8 track (see VideoOptions) on the sending
// transport and announces it with produce.
func (p *Peer) ProduceVideo(ctx context.Context, opts VideoOptions) (*Producer, error) {
	fps := opts.FrameRate
	if fps <= 0 {
		fps = 15
	}
	id := "video-" + randomID()
	pr := &Producer{kind: "video", fps: fps}
	if opts.Simulcast {
		for i, l := range videoLayers {
			track := &synthTrack{kind: webrtc.RTPCodecTypeVideo, mimeType: webrtc.MimeTypeVP8, id: id, streamID: p.cname, rid: l.rid}
			pr.streams = append(pr.streams, newStream(track, i, l.width, l.height, l.frameBytes))
		}
	} else {
		track := &synthTrack{kind: webrtc.RTPCodecTypeVideo, mimeType: webrtc.MimeTypeVP8, id: id, streamID: p.cname}
		pr.streams = []*stream{newStream(track, 0, 640, 360, 1200)}
	}
	return p.produce(ctx, pr)
}

func newStream(track *synthTrack, layer, width, height, frameBytes int) *stream {
	var b [8]byte
	_, _ = rand.Read(b[:])
	s := &stream{track: track, layer: layer, width: width, height: height, frameBytes: frameBytes,
		seq: binary.BigEndian.Uint16(b[:2]), tsBase: binary.BigEndian.Uint32(b[2:6]),
		pictureID: binary.BigEndian.Uint16(b[6:8]) & 0x7fff}
	s.wantKey.Store(true)
	return s
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (p *Peer) produce(ctx context.Context, pr *Producer) (*Producer, error) {
	t := p.send
	if t == nil || !p.opts.Produce {
		return nil, errors.New("client: produce: the peer was joined without JoinOptions.Produce")
	}
	if p.isClosed() {
		return nil, errClosed
	}
	want := rtpCodecParameters{MimeType: pr.streams[0].track.mimeType, ClockRate: 90000}
	if pr.kind == "audio" {
		want.ClockRate, want.Channels = 48000, 2
	}
	if matchRouterCodec(p.routerCaps, want) == nil {
		return nil, fmt.Errorf("client: produce: the router has no %s codec", want.MimeType)
	}
	pr.p = p
	pr.stopCh = make(chan struct{})
	pr.genDone = make(chan struct{})

	t.mu.Lock()
	tr, err := t.pc.AddTransceiverFromTrack(pr.streams[0].track,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.mu.Unlock()
		return nil, fmt.Errorf("client: produce: %w", err)
	}
	pr.sender = tr.Sender()
	for _, s := range pr.streams[1:] {
		if err := pr.sender.AddEncoding(s.track); err != nil {
			t.mu.Unlock()
			return nil, fmt.Errorf("client: produce: %w", err)
		}
	}
	sections, err := t.negotiateSend(ctx, false)
	t.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("client: produce: %w", err)
	}
	mid := tr.Mid()
	params, err := pr.rtpParameters(p, sections, mid)
	if err != nil {
		pr.removeTrack(ctx)
		return nil, err
	}
	for _, s := range pr.streams {
		s.track.mu.Lock()
		s.track.mid = mid
		s.track.mu.Unlock()
	}
	for _, s := range pr.streams {
		p.spawn(func() { pr.readRTCP(s) })
	}
	if !p.spawn(pr.generate) {
		close(pr.genDone)
		return nil, errClosed
	}
	raw, _ := json.Marshal(params)
	var res IDResponse
	if err := p.conn.Request(ctx, "produce", ProduceRequest{TransportID: t.id(), Kind: pr.kind, RtpParameters: raw}, &res); err != nil {
		pr.stop()
		pr.removeTrack(ctx)
		return nil, err
	}
	pr.id = res.ID
	p.mu.Lock()
	p.producers[pr.id] = pr
	p.mu.Unlock()
	pr.live.Store(true)
	return pr, nil
}

// rtpParameters derives the producer's rtpParameters from the negotiated
// SDP (mid, codec with the payload type pion sends, header extensions) and
// the sender (SSRC and rid of every encoding).
func (pr *Producer) rtpParameters(p *Peer, sections []offeredSection, mid string) (*rtpParameters, error) {
	var sec *offeredSection
	for i := range sections {
		if sections[i].mid == mid {
			sec = &sections[i]
		}
	}
	if sec == nil {
		return nil, fmt.Errorf("client: produce: m-section %q not in the offer", mid)
	}
	params := &rtpParameters{Mid: mid, Rtcp: rtcpParameters{Cname: p.cname, ReducedSize: true},
		HeaderExtensions: answerExtensions(p.routerCaps, sec.kind, sec.exts)}
	want := pr.streams[0].track.mimeType
	for _, c := range answerCodecs(p.routerCaps, sec.codecs) {
		if strings.EqualFold(c.MimeType, want) {
			params.Codecs = []rtpCodecParameters{c}
			break
		}
	}
	if len(params.Codecs) == 0 {
		return nil, fmt.Errorf("client: produce: the router does not support %s", want)
	}
	encs := pr.sender.GetParameters().Encodings
	if len(encs) != len(pr.streams) {
		return nil, fmt.Errorf("client: produce: %d encodings, want %d", len(encs), len(pr.streams))
	}
	for _, e := range encs {
		enc := rtpEncodingParameters{Ssrc: uint32(e.SSRC)}
		if len(encs) > 1 {
			enc.Rid = e.RID
		}
		params.Encodings = append(params.Encodings, enc)
	}
	return params, nil
}

// readRTCP reads the RTCP of one encoding (which runs pion's interceptors)
// and turns PLI and FIR into key frames.
func (pr *Producer) readRTCP(s *stream) {
	readUntilClosed(pr.p, pr.stopCh, func() error {
		var pkts []rtcp.Packet
		var err error
		if len(pr.streams) > 1 {
			pkts, _, err = pr.sender.ReadSimulcastRTCP(s.track.rid)
		} else {
			pkts, _, err = pr.sender.ReadRTCP()
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				pr.keyRequests.Add(1)
				s.wantKey.Store(true)
			}
		}
		return err
	})
}

// generate sends the synthetic media until the producer stops.
func (pr *Producer) generate() {
	defer close(pr.genDone)
	interval := 20 * time.Millisecond
	if pr.kind == "video" {
		interval = time.Second / time.Duration(pr.fps)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-pr.stopCh:
			return
		case <-pr.p.ctx.Done():
			return
		case now := <-tick.C:
			if !pr.live.Load() || pr.paused.Load() {
				continue
			}
			elapsed := now.Sub(start)
			for _, s := range pr.streams {
				if pr.kind == "audio" {
					pr.sendAudio(s, elapsed, now)
				} else {
					pr.sendVideo(s, elapsed, now)
				}
			}
		}
	}
}

func (pr *Producer) sendAudio(s *stream, elapsed time.Duration, now time.Time) {
	payload := make([]byte, audioSize)
	payload[0] = audioTOC
	putRecord(payload[1:], 0, false, 0, 1, s.frame, now)
	sealRecord("audio", payload, 1)
	h := &rtp.Header{SequenceNumber: s.seq, Timestamp: s.tsBase + uint32(elapsed.Seconds()*48000)}
	level := loudLevel
	if pr.silent {
		level = silentLevel
	}
	if s.track.write(h, payload, level) {
		pr.packets.Add(1)
		pr.bytes.Add(uint64(len(payload)))
		s.seq++
		s.frame++
	}
}

func (pr *Producer) sendVideo(s *stream, elapsed time.Duration, now time.Time) {
	key := s.wantKey.Swap(false) || now.Sub(s.lastKey) >= keyFrameEvery
	// The VP8 frame: frame tag (+ start code and size on key frames), then
	// one synthetic record per packet.
	var head []byte
	if key {
		head = []byte{0x10, 0, 0, 0x9d, 0x01, 0x2a, 0, 0, 0, 0} // key frame, show_frame
		binary.LittleEndian.PutUint16(head[6:], uint16(s.width))
		binary.LittleEndian.PutUint16(head[8:], uint16(s.height))
	} else {
		head = []byte{0x11, 0, 0} // inter frame, show_frame
	}
	n := max(1, int(math.Ceil(float64(s.frameBytes)/maxChunk)))
	chunk := s.frameBytes / n
	ts := s.tsBase + uint32(elapsed.Seconds()*90000)
	sent := false
	for i := range n {
		body := chunk
		if i == 0 {
			body = max(chunk-len(head), recordLen)
		}
		payload := make([]byte, vp8DescLen, vp8DescLen+len(head)+body)
		payload[0] = 0x80 // X
		if i == 0 {
			payload[0] |= 0x10 // S, partition 0
		}
		payload[1] = 0xe0 // I, L, T
		payload[2] = 0x80 | byte(s.pictureID>>8)
		payload[3] = byte(s.pictureID)
		payload[4] = s.tl0
		payload[5] = 0x20 // TID 0, Y
		if i == 0 {
			payload = append(payload, head...)
		}
		off := len(payload)
		payload = payload[:off+body]
		putRecord(payload[off:], s.layer, key, i, n, s.frame, now)
		sealRecord("video", payload, off)
		h := &rtp.Header{SequenceNumber: s.seq, Timestamp: ts, Marker: i == n-1}
		if !s.track.write(h, payload, -1) {
			break
		}
		sent = true
		s.seq++
		pr.packets.Add(1)
		pr.bytes.Add(uint64(len(payload)))
	}
	if !sent {
		if key {
			s.wantKey.Store(true)
		}
		return
	}
	if key {
		s.lastKey = now
		pr.keyFrames.Add(1)
	}
	s.frame++
	s.pictureID = (s.pictureID + 1) & 0x7fff
	s.tl0++
}

// ConsumerStats counts what a consumer received.
type ConsumerStats struct {
	Packets     uint64    // RTP packets received
	Bytes       uint64    // RTP payload bytes received
	SSRC        uint32    // of the last packet
	PayloadType uint8     // of the last packet
	LastPayload []byte    // a copy of the last packet's payload
	FirstPacket time.Time // when the first packet arrived
	LastPacket  time.Time // when the last packet arrived
}

// ConsumerScore is the data of the consumerScore notification.
type ConsumerScore struct {
	Score          int   `json:"score"`
	ProducerScore  int   `json:"producerScore"`
	ProducerScores []int `json:"producerScores"`
}

// Consumer receives one producer of another peer, on the peer's receiving
// transport.
type Consumer struct {
	id, producerID, peerID, kind, typ string
	p                                 *Peer
	sec                               *recvSection

	paused         atomic.Bool
	producerPaused atomic.Bool

	mu        sync.Mutex
	onRTP     func(*rtp.Packet)
	stats     ConsumerStats
	layers    [2]int // spatial, temporal; -1: none
	hasLayers bool
	score     ConsumerScore

	accepted bool // guarded by p.mu: listed by Consumers once negotiated

	closeOnce sync.Once
	done      chan struct{}
}

// ID returns the consumer id.
func (c *Consumer) ID() string { return c.id }

// ProducerID returns the id of the consumed producer.
func (c *Consumer) ProducerID() string { return c.producerID }

// PeerID returns the id of the peer that owns the producer.
func (c *Consumer) PeerID() string { return c.peerID }

// Kind returns "audio" or "video".
func (c *Consumer) Kind() string { return c.kind }

// Type returns mediasoup's consumer type: "simple", "simulcast", "svc".
func (c *Consumer) Type() string { return c.typ }

// Done is closed once the consumer is closed (consumerClosed, or the peer
// closed).
func (c *Consumer) Done() <-chan struct{} { return c.done }

// ProducerPaused tells whether the producer is paused (newConsumer's
// producerPaused, then consumerPaused / consumerResumed).
func (c *Consumer) ProducerPaused() bool { return c.producerPaused.Load() }

// Paused tells whether the consumer is paused (by Pause).
func (c *Consumer) Paused() bool { return c.paused.Load() }

// OnRTP sets the function called, in order, with every RTP packet received
// (after the consumer's stats were updated). The packet is the callee's.
func (c *Consumer) OnRTP(f func(*rtp.Packet)) {
	c.mu.Lock()
	c.onRTP = f
	c.mu.Unlock()
}

// Stats returns what the consumer received so far.
func (c *Consumer) Stats() ConsumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.LastPayload = append([]byte(nil), s.LastPayload...)
	return s
}

// Layers returns the layers of the last consumerLayersChanged (temporal −1
// when none; ok false before any, or when the consumer forwards none).
func (c *Consumer) Layers() (spatial, temporal int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.layers[0], c.layers[1], c.hasLayers
}

// Score returns the last consumerScore the server sent.
func (c *Consumer) Score() ConsumerScore {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.score
}

// Pause pauses the consumer on the server (pauseConsumer): it stops
// forwarding to this peer only.
func (c *Consumer) Pause(ctx context.Context) error {
	if err := c.p.conn.Request(ctx, "pauseConsumer", map[string]string{"consumerId": c.id}, nil); err != nil {
		return err
	}
	c.paused.Store(true)
	return nil
}

// Resume resumes the consumer on the server (resumeConsumer).
func (c *Consumer) Resume(ctx context.Context) error {
	if err := c.p.conn.Request(ctx, "resumeConsumer", map[string]string{"consumerId": c.id}, nil); err != nil {
		return err
	}
	c.paused.Store(false)
	return nil
}

// SetPreferredLayers asks the server for these simulcast/SVC layers
// (setConsumerPreferredLayers); a negative temporal layer is left out.
func (c *Consumer) SetPreferredLayers(ctx context.Context, spatial, temporal int) error {
	data := map[string]any{"consumerId": c.id, "spatialLayer": spatial}
	if temporal >= 0 {
		data["temporalLayer"] = temporal
	}
	return c.p.conn.Request(ctx, "setConsumerPreferredLayers", data, nil)
}

// RequestKeyFrame asks the server for a key frame (requestConsumerKeyFrame).
func (c *Consumer) RequestKeyFrame(ctx context.Context) error {
	return c.p.conn.Request(ctx, "requestConsumerKeyFrame", map[string]string{"consumerId": c.id}, nil)
}

func (c *Consumer) setLayers(spatial, temporal *int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if spatial == nil {
		c.hasLayers = false
		c.layers = [2]int{-1, -1}
		return
	}
	c.hasLayers = true
	c.layers = [2]int{*spatial, -1}
	if temporal != nil {
		c.layers[1] = *temporal
	}
}

func (c *Consumer) setScore(raw json.RawMessage) {
	var s ConsumerScore
	if json.Unmarshal(raw, &s) == nil {
		c.mu.Lock()
		c.score = s
		c.mu.Unlock()
	}
}

func (c *Consumer) onPacket(pkt *rtp.Packet) {
	now := time.Now()
	c.mu.Lock()
	s := &c.stats
	s.Packets++
	s.Bytes += uint64(len(pkt.Payload))
	s.SSRC, s.PayloadType = pkt.SSRC, pkt.PayloadType
	s.LastPayload = append(s.LastPayload[:0], pkt.Payload...)
	if s.FirstPacket.IsZero() {
		s.FirstPacket = now
	}
	s.LastPacket = now
	f := c.onRTP
	c.mu.Unlock()
	if f != nil {
		f(pkt)
	}
}

func (c *Consumer) markClosed() {
	c.closeOnce.Do(func() { close(c.done) })
}

// remoteClosed handles consumerClosed: the consumer's m-section goes
// inactive (its receiver stops) and the consumer is gone.
func (c *Consumer) remoteClosed() {
	p := c.p
	p.mu.Lock()
	delete(p.consumers, c.id)
	p.mu.Unlock()
	t := p.recv
	t.mu.Lock()
	c.sec.closed = true
	if !p.isClosed() {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		_ = t.negotiateRecv(ctx)
		cancel()
	}
	t.mu.Unlock()
	c.markClosed()
}

// newConsumer accepts the server's newConsumer: a sendonly m-section for it
// in the receiving transport's offer, then an answer from pion.
func (p *Peer) newConsumer(ctx context.Context, nc NewConsumer) error {
	t := p.recv
	if t == nil || !p.opts.Consume {
		return &ResponseError{Code: 409, Reason: "not consuming"}
	}
	var params rtpParameters
	if err := json.Unmarshal(nc.RtpParameters, &params); err != nil {
		return &ResponseError{Code: 400, Reason: "rtpParameters: " + err.Error()}
	}
	if params.Mid == "" || len(params.Codecs) == 0 || len(params.Encodings) == 0 || params.Encodings[0].Ssrc == 0 {
		return &ResponseError{Code: 400, Reason: "rtpParameters without mid, codecs or ssrc"}
	}
	streamID := params.Rtcp.Cname
	if streamID == "" || strings.ContainsAny(streamID, " \t\r\n") {
		streamID = "-"
	}
	c := &Consumer{id: nc.ID, producerID: nc.ProducerID, peerID: nc.PeerID, kind: nc.Kind, typ: nc.Type,
		p: p, done: make(chan struct{}), layers: [2]int{-1, -1},
		sec: &recvSection{mid: params.Mid, kind: nc.Kind, params: &params, streamID: streamID, trackID: nc.ID}}
	c.producerPaused.Store(nc.ProducerPaused)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	p.consumers[c.id] = c
	p.mu.Unlock()

	t.mu.Lock()
	if !t.negotiated && p.opts.Data && !t.hasApplication() {
		t.sections = append(t.sections, &recvSection{mid: "datachannel", kind: "application"})
	}
	t.sections = append(t.sections, c.sec)
	err := t.negotiateRecv(ctx)
	if err != nil {
		c.sec.closed = true
	}
	t.mu.Unlock()
	p.mu.Lock()
	f := p.onConsumer
	if err != nil {
		delete(p.consumers, c.id)
	} else {
		c.accepted = true
	}
	p.mu.Unlock()
	if err != nil {
		c.markClosed()
		return err
	}
	if f != nil {
		f(c)
	}
	return nil
}

func (t *transport) hasApplication() bool {
	for _, s := range t.sections {
		if s.kind == "application" {
			return true
		}
	}
	return false
}

// onTrack reads the RTP and RTCP of a track of the receiving transport
// until its receiver stops (its consumer closed, or the peer).
func (p *Peer) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	c := p.consumer(track.ID())
	p.spawn(func() {
		readUntilClosed(p, nil, func() error { _, _, err := receiver.ReadRTCP(); return err })
	})
	p.spawn(func() {
		readUntilClosed(p, nil, func() error {
			pkt, _, err := track.ReadRTP()
			if err == nil && c != nil {
				c.onPacket(pkt)
			}
			return err
		})
	})
}

// readUntilClosed calls read until it fails for good: the stream is closed,
// the peer is, stop is, or it keeps failing (packets that do not parse are
// skipped).
func readUntilClosed(p *Peer, stop <-chan struct{}, read func() error) {
	errs := 0
	for {
		err := read()
		if err == nil {
			errs = 0
			continue
		}
		select {
		case <-stop:
			return
		default:
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || p.isClosed() {
			return
		}
		if errs++; errs > 100 {
			return
		}
	}
}

// DataProducer sends messages on a data channel of the peer's sending
// transport; the server forwards them to the other peers' data consumers.
type DataProducer struct {
	id, label string
	dc        *webrtc.DataChannel
}

// ID returns the data producer id.
func (d *DataProducer) ID() string { return d.id }

// Label returns the data producer's label.
func (d *DataProducer) Label() string { return d.label }

// Send sends a binary message.
func (d *DataProducer) Send(msg []byte) error { return d.dc.Send(msg) }

// SendText sends a text message.
func (d *DataProducer) SendText(msg string) error { return d.dc.SendText(msg) }

// ProduceData opens a data channel on the sending transport (negotiated, on
// the next SCTP stream id; reliable, ordered or not) and announces it with
// produceData. It returns once the channel is open.
func (p *Peer) ProduceData(ctx context.Context, label string, ordered bool) (*DataProducer, error) {
	t := p.send
	if t == nil || !p.opts.Data {
		return nil, errors.New("client: produceData: the peer was joined without JoinOptions.Data")
	}
	if p.isClosed() {
		return nil, errClosed
	}
	yes := true
	t.mu.Lock()
	sid := t.nextStreamID
	t.nextStreamID++
	dc, err := t.pc.CreateDataChannel(label, &webrtc.DataChannelInit{Negotiated: &yes, ID: &sid, Ordered: &ordered})
	if err != nil {
		t.mu.Unlock()
		return nil, fmt.Errorf("client: produceData: %w", err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	if !t.hasData {
		if _, err := t.negotiateSend(ctx, false); err != nil {
			t.mu.Unlock()
			_ = dc.Close()
			return nil, fmt.Errorf("client: produceData: %w", err)
		}
		t.hasData = true
	}
	t.mu.Unlock()
	select {
	case <-opened:
	case <-ctx.Done():
		_ = dc.Close()
		return nil, fmt.Errorf("client: produceData: data channel not open: %w", ctx.Err())
	case <-p.done:
		return nil, errClosed
	}
	var res IDResponse
	if err := p.conn.Request(ctx, "produceData", map[string]any{
		"transportId": t.id(), "label": label, "protocol": "",
		"sctpStreamParameters": sctpStreamParameters{StreamID: sid, Ordered: &ordered},
	}, &res); err != nil {
		_ = dc.Close()
		return nil, err
	}
	return &DataProducer{id: res.ID, label: label, dc: dc}, nil
}

// DataConsumer receives the messages of another peer's data producer on a
// data channel of the peer's receiving transport (see Peer.OnDataMessage).
type DataConsumer struct {
	id, dataProducerID, peerID, label string
	dc                                *webrtc.DataChannel
}

// ID returns the data consumer id.
func (d *DataConsumer) ID() string { return d.id }

// DataProducerID returns the id of the consumed data producer.
func (d *DataConsumer) DataProducerID() string { return d.dataProducerID }

// PeerID returns the id of the peer that owns the data producer.
func (d *DataConsumer) PeerID() string { return d.peerID }

// Label returns the data producer's label.
func (d *DataConsumer) Label() string { return d.label }

// newDataConsumer accepts the server's newDataConsumer: a negotiated data
// channel on the consumer's SCTP stream id, answered once it is open.
func (p *Peer) newDataConsumer(ctx context.Context, nd NewDataConsumer) error {
	t := p.recv
	if t == nil || !p.opts.Data {
		return &ResponseError{Code: 409, Reason: "not consuming data"}
	}
	var sp sctpStreamParameters
	if err := json.Unmarshal(nd.SctpStreamParameters, &sp); err != nil {
		return &ResponseError{Code: 400, Reason: "sctpStreamParameters: " + err.Error()}
	}
	yes, ordered := true, sp.Ordered == nil || *sp.Ordered
	t.mu.Lock()
	dc, err := t.pc.CreateDataChannel(nd.Label, &webrtc.DataChannelInit{
		Negotiated: &yes, ID: &sp.StreamID, Ordered: &ordered,
		MaxRetransmits: sp.MaxRetransmits, MaxPacketLifeTime: sp.MaxPacketLifeTime,
	})
	if err != nil {
		t.mu.Unlock()
		return err
	}
	from, label := nd.PeerID, nd.Label
	dc.OnMessage(func(m webrtc.DataChannelMessage) { p.dataMessage(from, label, m.Data) })
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	if !t.hasApplication() {
		t.sections = append(t.sections, &recvSection{mid: "datachannel", kind: "application"})
		err = t.negotiateRecv(ctx)
	}
	t.mu.Unlock()
	if err != nil {
		_ = dc.Close()
		return err
	}
	select {
	case <-opened:
	case <-ctx.Done():
		_ = dc.Close()
		return fmt.Errorf("data channel not open: %w", ctx.Err())
	}
	d := &DataConsumer{id: nd.ID, dataProducerID: nd.DataProducerID, peerID: nd.PeerID, label: nd.Label, dc: dc}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	p.dataConsumers[d.id] = d
	p.mu.Unlock()
	return nil
}
