package room

import mediasoup "github.com/jiyeyuran/mediasoup-go/v2"

// CloneRtpCapabilities deep-copies c. mediasoup-go's CanConsume and Consume
// normalise the capabilities they are given in place, so every consume works
// on its own copy (a shared one is a data race). Nil entries are dropped.
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
