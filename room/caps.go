package room

import (
	"strings"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
)

// CloneRtpCapabilities deep-copies c. Nil entries are dropped.
func CloneRtpCapabilities(c *mediasoup.RtpCapabilities) *mediasoup.RtpCapabilities {
	if c == nil {
		return nil
	}
	out := &mediasoup.RtpCapabilities{
		Codecs:           make([]*mediasoup.RtpCodecCapability, 0, len(c.Codecs)),
		HeaderExtensions: make([]*mediasoup.RtpHeaderExtension, 0, len(c.HeaderExtensions)),
		FecMechanisms:    append([]string(nil), c.FecMechanisms...),
	}
	for _, codec := range c.Codecs {
		if codec == nil {
			continue
		}
		cc := *codec
		cc.RtcpFeedback = make([]*mediasoup.RtcpFeedback, 0, len(codec.RtcpFeedback))
		for _, fb := range codec.RtcpFeedback {
			if fb != nil {
				f := *fb
				cc.RtcpFeedback = append(cc.RtcpFeedback, &f)
			}
		}
		out.Codecs = append(out.Codecs, &cc)
	}
	for _, h := range c.HeaderExtensions {
		if h != nil {
			hh := *h
			out.HeaderExtensions = append(out.HeaderExtensions, &hh)
		}
	}
	return out
}

// ConsumingRtpCapabilities is a peer's RTP capabilities made ready to be
// shared by all its consumes: a deep copy (nothing the caller keeps is
// shared) with the defaults filled in that mediasoup-go's CanConsume and
// ConsumeContext would otherwise write into the capabilities they are
// given (a codec's kind from its MIME type, an audio codec's channels, a
// header extension's direction). Those write only what is unset, so once
// it is set they only read, and one copy serves every consume of the peer
// at once; a copy per consume was half of what a mesh allocated.
// TestConsumingRtpCapabilitiesStayUnchanged holds mediasoup-go to it.
func ConsumingRtpCapabilities(c *mediasoup.RtpCapabilities) *mediasoup.RtpCapabilities {
	out := CloneRtpCapabilities(c)
	if out == nil {
		return nil
	}
	for _, codec := range out.Codecs {
		mime := strings.ToLower(codec.MimeType)
		if codec.Kind == "" {
			if kind, _, ok := strings.Cut(mime, "/"); ok {
				codec.Kind = mediasoup.MediaKind(kind)
			}
		}
		if codec.Kind == mediasoup.MediaKindAudio && codec.Channels == 0 {
			codec.Channels = 1
		}
	}
	for _, h := range out.HeaderExtensions {
		if h.Direction == "" {
			h.Direction = mediasoup.MediaDirectionSendrecv
		}
	}
	return out
}
