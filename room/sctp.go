package room

import "github.com/jiyeyuran/mediasoup-go/v2"

// NumSctpStreams is the numStreams of a client's sctpCapabilities: the SCTP
// streams it opens (OS) and accepts (MIS). mediasoup-client up to 3.20 sends
// it; mediasoup 3.26 (its built-in SCTP stack announces 65535 each way and
// negotiates) no longer takes it, so the server only echoes it back to old
// clients in SctpParameters.
type NumSctpStreams struct {
	OS  uint16 `json:"OS"`
	MIS uint16 `json:"MIS"`
}

// SctpCapabilities is a client's sctpCapabilities (mediasoup-client ≤ 3.20).
type SctpCapabilities struct {
	NumStreams NumSctpStreams `json:"numStreams"`
}

// SctpParameters is what clients are sent as a transport's sctpParameters.
// mediasoup 3.26 changed the shape from {port, OS, MIS, maxMessageSize} to
// {port, maxSendMessageSize, maxReceiveMessageSize, …}; mediasoup-client
// 3.7.17 (the demo app's) reads only the old fields (maxMessageSize is both its
// data producers' limit and the SDP's max-message-size), 3.24.1 reads the new
// ones and falls back to maxMessageSize. Both sets are sent so that either
// client sees what it expects. From the client's side, maxMessageSize is what
// the server accepts: the transport's maxReceiveMessageSize.
type SctpParameters struct {
	Port           uint16 `json:"port"`
	OS             uint16 `json:"OS"`
	MIS            uint16 `json:"MIS"`
	MaxMessageSize uint32 `json:"maxMessageSize"`
	// What the server's data consumers send at most (the client receives).
	MaxSendMessageSize uint32 `json:"maxSendMessageSize"`
	// What the server's data producers accept at most (the client sends).
	MaxReceiveMessageSize uint32 `json:"maxReceiveMessageSize"`
}

// clientSctpParameters translates the worker's SCTP parameters for clients;
// streams is what the client declared (or the room's default).
func clientSctpParameters(p *mediasoup.SctpParameters, streams NumSctpStreams) *SctpParameters {
	if p == nil {
		return nil
	}
	return &SctpParameters{
		Port: p.Port, OS: streams.OS, MIS: streams.MIS,
		MaxMessageSize:     p.MaxReceiveMessageSize,
		MaxSendMessageSize: p.MaxSendMessageSize, MaxReceiveMessageSize: p.MaxReceiveMessageSize,
	}
}

// sctpOptions are the SCTP settings of the room's transports.
func (o *Options) sctpOptions() mediasoup.SctpOptions {
	return mediasoup.SctpOptions{MaxSendMessageSize: o.MaxSctpMessageSize, MaxReceiveMessageSize: o.MaxSctpMessageSize}
}

// sctpStreams is what a client declared, else the room's default.
func (o *Options) sctpStreams(c *SctpCapabilities) NumSctpStreams {
	if c != nil && c.NumStreams.OS > 0 && c.NumStreams.MIS > 0 {
		return c.NumStreams
	}
	return NumSctpStreams{OS: o.NumSctpStreams, MIS: o.NumSctpStreams}
}
