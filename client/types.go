package client

import "encoding/json"

// Device describes the client software, as mediasoup-client reports it
// (join's device field, newPeer's device).
type Device struct {
	Flag    string `json:"flag"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// JoinRequest is the data of the join request.
type JoinRequest struct {
	DisplayName      string          `json:"displayName"`
	Device           Device          `json:"device"`
	RtpCapabilities  json.RawMessage `json:"rtpCapabilities,omitempty"`
	SctpCapabilities json.RawMessage `json:"sctpCapabilities,omitempty"`
}

// JoinResponse is the data of the join response: the other joined peers.
type JoinResponse struct {
	Peers []PeerInfo `json:"peers"`
}

// PeerInfo describes a peer, in the join response and in the newPeer
// notification.
type PeerInfo struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	Device      Device `json:"device"`
}

// PeerClosed is the data of the peerClosed notification.
type PeerClosed struct {
	PeerID string `json:"peerId"`
}

// CreateWebRtcTransportRequest is the data of the createWebRtcTransport request.
type CreateWebRtcTransportRequest struct {
	ForceTcp         bool            `json:"forceTcp,omitempty"`
	Producing        bool            `json:"producing"`
	Consuming        bool            `json:"consuming"`
	SctpCapabilities json.RawMessage `json:"sctpCapabilities,omitempty"`
	AppData          json.RawMessage `json:"appData,omitempty"`
}

// TransportInfo is the data of the createWebRtcTransport response.
type TransportInfo struct {
	ID             string          `json:"id"`
	IceParameters  json.RawMessage `json:"iceParameters"`
	IceCandidates  json.RawMessage `json:"iceCandidates"`
	DtlsParameters json.RawMessage `json:"dtlsParameters"`
	SctpParameters json.RawMessage `json:"sctpParameters,omitempty"`
}

// ProduceRequest is the data of the produce request.
type ProduceRequest struct {
	TransportID   string          `json:"transportId"`
	Kind          string          `json:"kind"`
	RtpParameters json.RawMessage `json:"rtpParameters"`
	AppData       json.RawMessage `json:"appData,omitempty"`
}

// IDResponse is the data of the produce and produceData responses.
type IDResponse struct {
	ID string `json:"id"`
}

// NewConsumer is the data of the server's newConsumer request.
type NewConsumer struct {
	PeerID         string          `json:"peerId"`
	ProducerID     string          `json:"producerId"`
	ID             string          `json:"id"`
	Kind           string          `json:"kind"`
	RtpParameters  json.RawMessage `json:"rtpParameters"`
	Type           string          `json:"type"`
	AppData        json.RawMessage `json:"appData"`
	ProducerPaused bool            `json:"producerPaused"`
}

// NewDataConsumer is the data of the server's newDataConsumer request.
type NewDataConsumer struct {
	PeerID               string          `json:"peerId"`
	DataProducerID       string          `json:"dataProducerId"`
	ID                   string          `json:"id"`
	SctpStreamParameters json.RawMessage `json:"sctpStreamParameters"`
	Label                string          `json:"label"`
	Protocol             string          `json:"protocol"`
	AppData              json.RawMessage `json:"appData"`
}
