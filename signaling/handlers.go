package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling/protoo"
)

// handler serves one client method for one peer. after, when not nil, runs
// once the response has been queued (join and produce announce consumers
// only after answering).
type handler func(ctx context.Context, p *room.Peer, data json.RawMessage) (result any, after room.After, err error)

// handlers is the dispatch table: method name → typed handler.
var handlers = map[string]handler{
	"getRouterRtpCapabilities": func(_ context.Context, p *room.Peer, _ json.RawMessage) (any, room.After, error) {
		return p.RouterRtpCapabilities(), nil, nil
	},
	"join":                       handleJoin,
	"createWebRtcTransport":      handleCreateWebRtcTransport,
	"connectWebRtcTransport":     handleConnectWebRtcTransport,
	"restartIce":                 handleRestartIce,
	"produce":                    handleProduce,
	"closeProducer":              producerOp("close"),
	"pauseProducer":              producerOp("pause"),
	"resumeProducer":             producerOp("resume"),
	"pauseConsumer":              consumerOp("pause"),
	"resumeConsumer":             consumerOp("resume"),
	"requestConsumerKeyFrame":    consumerOp("requestKeyFrame"),
	"setConsumerPreferredLayers": handleSetConsumerPreferredLayers,
	"setConsumerPriority":        handleSetConsumerPriority,
	"produceData":                handleProduceData,
	"changeDisplayName":          handleChangeDisplayName,
	"getTransportStats":          statsOf("transportId", (*room.Peer).TransportStats),
	"getProducerStats":           statsOf("producerId", (*room.Peer).ProducerStats),
	"getConsumerStats":           statsOf("consumerId", (*room.Peer).ConsumerStats),
	"getDataProducerStats":       statsOf("dataProducerId", (*room.Peer).DataProducerStats),
	"getDataConsumerStats":       statsOf("dataConsumerId", (*room.Peer).DataConsumerStats),
	// leaveRoom is served by the session itself (it replaces the peer).
}

// Field limits for strings a client sends.
const (
	maxIDLen          = 128
	maxDisplayNameLen = 256
	maxLabelLen       = 1024
)

// decode unmarshals data into v; a wrong type becomes 400 naming the field.
func decode(data json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Errorf(400, "%s: must be %s, not %s", te.Field, jsonKind(te.Type.String()), te.Value)
		}
		return Errorf(400, "malformed data: %v", err)
	}
	return nil
}

func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number in range"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	default:
		return "an object"
	}
}

// requireID checks a required id field.
func requireID(field, v string) error {
	if v == "" {
		return Errorf(400, "%s: required", field)
	}
	if len(v) > maxIDLen {
		return Errorf(400, "%s: longer than %d bytes", field, maxIDLen)
	}
	return nil
}

func checkText(field, v string, max int) error {
	if len(v) > max {
		return Errorf(400, "%s: longer than %d bytes", field, max)
	}
	if !utf8.ValidString(v) {
		return Errorf(400, "%s: not valid UTF-8", field)
	}
	return nil
}

func handleJoin(_ context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		DisplayName      *string                    `json:"displayName"`
		Device           *room.Device               `json:"device"`
		RtpCapabilities  *mediasoup.RtpCapabilities `json:"rtpCapabilities"`
		SctpCapabilities *room.SctpCapabilities     `json:"sctpCapabilities"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	if req.DisplayName == nil {
		return nil, nil, Errorf(400, "displayName: required")
	}
	if err := checkText("displayName", *req.DisplayName, maxDisplayNameLen); err != nil {
		return nil, nil, err
	}
	var dev room.Device
	if req.Device != nil {
		dev = *req.Device
		for f, v := range map[string]string{"device.flag": dev.Flag, "device.name": dev.Name, "device.version": dev.Version} {
			if err := checkText(f, v, maxDisplayNameLen); err != nil {
				return nil, nil, err
			}
		}
	}
	if c := req.RtpCapabilities; c != nil {
		for i, codec := range c.Codecs {
			if codec == nil || codec.MimeType == "" {
				return nil, nil, Errorf(400, "rtpCapabilities.codecs[%d].mimeType: required", i)
			}
		}
	}
	peers, after, err := p.Join(room.JoinRequest{
		DisplayName: *req.DisplayName, Device: dev,
		RtpCapabilities: req.RtpCapabilities, SctpCapabilities: req.SctpCapabilities,
	})
	if err != nil {
		return nil, nil, err
	}
	// {"peers":[...]} from each peer's JSON encoded once when it joined: in
	// a room filling up, every joiner's answer lists everyone before it.
	b := append(make([]byte, 0, 16+len(peers)*128), `{"peers":[`...)
	for i, info := range peers {
		j, err := info.JSON()
		if err != nil {
			return nil, nil, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, j...)
	}
	return protoo.Trusted(append(b, "]}"...)), after, nil
}

func handleCreateWebRtcTransport(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		ForceTcp         bool                   `json:"forceTcp"`
		Producing        bool                   `json:"producing"`
		Consuming        bool                   `json:"consuming"`
		SctpCapabilities *room.SctpCapabilities `json:"sctpCapabilities"`
		AppData          mediasoup.H            `json:"appData"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	info, err := p.CreateWebRtcTransport(ctx, room.TransportRequest{
		ForceTcp: req.ForceTcp, Producing: req.Producing, Consuming: req.Consuming,
		SctpCapabilities: req.SctpCapabilities, AppData: req.AppData,
	})
	return info, nil, err
}

func handleConnectWebRtcTransport(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		TransportID    string                    `json:"transportId"`
		DtlsParameters *mediasoup.DtlsParameters `json:"dtlsParameters"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	if err := requireID("transportId", req.TransportID); err != nil {
		return nil, nil, err
	}
	d := req.DtlsParameters
	if d == nil {
		return nil, nil, Errorf(400, "dtlsParameters: required")
	}
	if len(d.Fingerprints) == 0 {
		return nil, nil, Errorf(400, "dtlsParameters.fingerprints: at least one is required")
	}
	switch d.Role {
	case "", mediasoup.DtlsRoleAuto, mediasoup.DtlsRoleClient, mediasoup.DtlsRoleServer:
	default:
		return nil, nil, Errorf(400, "dtlsParameters.role: %q is not auto, client or server", d.Role)
	}
	for i, f := range d.Fingerprints {
		if f.Algorithm == "" || f.Value == "" {
			return nil, nil, Errorf(400, "dtlsParameters.fingerprints[%d]: algorithm and value are required", i)
		}
	}
	return nil, nil, p.ConnectWebRtcTransport(ctx, req.TransportID, d)
}

func handleRestartIce(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	id, err := idField(data, "transportId")
	if err != nil {
		return nil, nil, err
	}
	ice, err := p.RestartIce(ctx, id)
	return ice, nil, err
}

func handleProduce(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		TransportID   string                   `json:"transportId"`
		Kind          string                   `json:"kind"`
		RtpParameters *mediasoup.RtpParameters `json:"rtpParameters"`
		AppData       mediasoup.H              `json:"appData"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	if err := requireID("transportId", req.TransportID); err != nil {
		return nil, nil, err
	}
	if req.Kind != "audio" && req.Kind != "video" {
		return nil, nil, Errorf(400, "kind: %q is not audio or video", req.Kind)
	}
	rp := req.RtpParameters
	if rp == nil {
		return nil, nil, Errorf(400, "rtpParameters: required")
	}
	if len(rp.Codecs) == 0 {
		return nil, nil, Errorf(400, "rtpParameters.codecs: at least one is required")
	}
	for i, c := range rp.Codecs {
		if c == nil || c.MimeType == "" {
			return nil, nil, Errorf(400, "rtpParameters.codecs[%d].mimeType: required", i)
		}
	}
	id, after, err := p.Produce(ctx, room.ProduceRequest{
		TransportID: req.TransportID, Kind: mediasoup.MediaKind(req.Kind), RtpParameters: rp, AppData: req.AppData,
	})
	if err != nil {
		return nil, nil, err
	}
	return map[string]string{"id": id}, after, nil
}

func handleProduceData(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		TransportID          string                          `json:"transportId"`
		SctpStreamParameters *mediasoup.SctpStreamParameters `json:"sctpStreamParameters"`
		Label                string                          `json:"label"`
		Protocol             string                          `json:"protocol"`
		AppData              mediasoup.H                     `json:"appData"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	if err := requireID("transportId", req.TransportID); err != nil {
		return nil, nil, err
	}
	if err := checkText("label", req.Label, maxLabelLen); err != nil {
		return nil, nil, err
	}
	if err := checkText("protocol", req.Protocol, maxLabelLen); err != nil {
		return nil, nil, err
	}
	id, after, err := p.ProduceData(ctx, room.ProduceDataRequest{
		TransportID: req.TransportID, SctpStreamParameters: req.SctpStreamParameters,
		Label: req.Label, Protocol: req.Protocol, AppData: req.AppData,
	})
	if err != nil {
		return nil, nil, err
	}
	return map[string]string{"id": id}, after, nil
}

func producerOp(op string) handler {
	return func(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
		id, err := idField(data, "producerId")
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, p.ProducerOp(ctx, op, id)
	}
}

func consumerOp(op string) handler {
	return func(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
		id, err := idField(data, "consumerId")
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, p.ConsumerOp(ctx, op, id)
	}
}

func handleSetConsumerPreferredLayers(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		ConsumerID    string `json:"consumerId"`
		SpatialLayer  *uint8 `json:"spatialLayer"`
		TemporalLayer *uint8 `json:"temporalLayer"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	if err := requireID("consumerId", req.ConsumerID); err != nil {
		return nil, nil, err
	}
	if req.SpatialLayer == nil {
		return nil, nil, Errorf(400, "spatialLayer: required")
	}
	return nil, nil, p.SetConsumerPreferredLayers(ctx, req.ConsumerID,
		mediasoup.ConsumerLayers{SpatialLayer: *req.SpatialLayer, TemporalLayer: req.TemporalLayer})
}

func handleSetConsumerPriority(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		ConsumerID string `json:"consumerId"`
		Priority   *int   `json:"priority"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	if err := requireID("consumerId", req.ConsumerID); err != nil {
		return nil, nil, err
	}
	if req.Priority == nil || *req.Priority < 1 || *req.Priority > 255 {
		return nil, nil, Errorf(400, "priority: required, 1-255")
	}
	return nil, nil, p.SetConsumerPriority(ctx, req.ConsumerID, uint8(*req.Priority))
}

func handleChangeDisplayName(_ context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		DisplayName *string `json:"displayName"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	if req.DisplayName == nil {
		return nil, nil, Errorf(400, "displayName: required")
	}
	if err := checkText("displayName", *req.DisplayName, maxDisplayNameLen); err != nil {
		return nil, nil, err
	}
	return nil, nil, p.ChangeDisplayName(*req.DisplayName)
}

func statsOf(field string, get func(*room.Peer, context.Context, string) (any, error)) handler {
	return func(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
		id, err := idField(data, field)
		if err != nil {
			return nil, nil, err
		}
		s, err := get(p, ctx, id)
		return s, nil, err
	}
}

// idField reads the one required id field of a request.
func idField(data json.RawMessage, field string) (string, error) {
	raw, ok, scanned := protoo.Field(data, field)
	if !scanned {
		var m map[string]json.RawMessage
		if err := decode(data, &m); err != nil {
			return "", err
		}
		raw, ok = m[field]
	}
	if !ok || string(raw) == "null" {
		return "", Errorf(400, "%s: required", field)
	}
	id, ok := plainString(raw)
	if !ok {
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", Errorf(400, "%s: must be a string", field)
		}
	}
	return id, requireID(field, id)
}

// plainString is the string a JSON string literal with nothing to decode
// in it (no escape, valid UTF-8: what every id a client sends looks like)
// stands for, without json.Unmarshal's allocations; false for anything
// else, which json.Unmarshal then decodes (or refuses).
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, b := range body {
		if b == '\\' || b == '"' || b < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(body) {
		return "", false
	}
	return string(body), true
}
