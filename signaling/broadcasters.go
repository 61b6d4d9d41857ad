package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/mediasoup-server/mediasoup-server/room"
	"go.uber.org/zap"
)

// maxBroadcasterBody bounds a broadcaster request body (413 beyond).
const maxBroadcasterBody = 1 << 20

// mountBroadcasters adds the broadcaster HTTP API of PROTOCOL.md §7: the
// demo's routes, answering JSON, or the protocol's error code as the HTTP
// status with a one-line plain-text reason. Only peers created here are
// reachable through it: a WebSocket peer's id answers 404 (and 409 on create).
func mountBroadcasters(mux *http.ServeMux, opts Options) {
	b := &broadcasters{rooms: opts.Rooms, log: opts.Logger}
	const one = "/rooms/{roomId}/broadcasters/{broadcasterId}"
	const tr = one + "/transports/{transportId}"
	mux.HandleFunc("GET /rooms/{roomId}", b.routerCaps)
	mux.HandleFunc("POST /rooms/{roomId}/broadcasters", b.create)
	mux.HandleFunc("DELETE "+one, b.on(b.deleteBroadcaster))
	mux.HandleFunc("POST "+one+"/transports", b.on(handleBroadcasterTransport))
	mux.HandleFunc("POST "+tr+"/connect", b.on(handleBroadcasterConnect, "transportId"))
	mux.HandleFunc("POST "+tr+"/producers", b.on(handleProduce, "transportId"))
	mux.HandleFunc("POST "+tr+"/produce/data", b.on(handleProduceData, "transportId"))
	mux.HandleFunc("POST "+tr+"/consume", b.on(consumeOf("producerId", (*room.Peer).Consume), "transportId", "producerId"))
	mux.HandleFunc("POST "+tr+"/consume/data", b.on(consumeOf("dataProducerId", (*room.Peer).ConsumeData), "transportId"))
}

type broadcasters struct {
	rooms *room.Manager
	log   *zap.Logger
}

// routerCaps answers the room's router RTP capabilities; 404 when there is
// no room. It never creates one (an empty room would hold a router).
func (b *broadcasters) routerCaps(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("roomId")
	if rm := b.rooms.Room(id); rm != nil {
		answer(w, rm.Router().RtpCapabilities(), nil, nil)
		return
	}
	answer(w, nil, nil, Errorf(404, "room %q not found", id))
}

// create admits and joins a broadcaster: body {id, displayName, device,
// rtpCapabilities?, sctpCapabilities?}; device.flag is always "broadcaster".
func (b *broadcasters) create(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomId")
	var req struct {
		ID          string       `json:"id"`
		DisplayName *string      `json:"displayName"`
		Device      *room.Device `json:"device"`
	}
	body, err := readBody(w, r)
	if err == nil {
		err = decode(body, &req)
	}
	switch {
	case err != nil:
	case !validID(roomID):
		err = Errorf(400, "roomId: 1-%d printable characters, no spaces", maxQueryIDLen)
	case req.ID == "":
		err = Errorf(400, "id: required")
	case !validID(req.ID):
		err = Errorf(400, "id: 1-%d printable characters, no spaces", maxQueryIDLen)
	case req.DisplayName == nil:
		err = Errorf(400, "displayName: required")
	}
	if err != nil {
		answer(w, nil, nil, err)
		return
	}
	var dev room.Device
	if req.Device != nil {
		dev = *req.Device
	}
	dev.Flag = "broadcaster"
	data, err := withFields(body, map[string]any{"device": dev})
	var p *room.Peer
	if err == nil {
		p, err = b.admit(r.Context(), roomID, req.ID)
	}
	if err != nil {
		answer(w, nil, nil, err)
		return
	}
	res, after, err := handleJoin(r.Context(), p, data)
	if err != nil {
		p.Close()
	} else {
		b.log.Info("broadcaster joined", zap.String("room", roomID), zap.String("peer", req.ID))
	}
	answer(w, res, after, err)
}

// admit adds a broadcaster peer unless the id is taken in the room (409):
// a broadcaster must never replace (kick) anyone.
func (b *broadcasters) admit(ctx context.Context, roomID, id string) (*room.Peer, error) {
	return b.rooms.ConnectNew(ctx, roomID, id, &room.BroadcasterConn{})
}

func (b *broadcasters) deleteBroadcaster(_ context.Context, p *room.Peer, _ json.RawMessage) (any, room.After, error) {
	p.Close()
	b.log.Info("broadcaster deleted", zap.String("room", p.Room().ID()), zap.String("peer", p.ID()))
	return nil, nil, nil
}

// on serves h on the broadcaster of the path. fields are copied over the
// request body's, from the path wildcard of that name or else the query.
func (b *broadcasters) on(h handler, fields ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := b.broadcaster(r)
		var body json.RawMessage
		if err == nil {
			body, err = readBody(w, r)
		}
		if err == nil && len(fields) > 0 {
			set := map[string]any{}
			for _, f := range fields {
				if v := r.PathValue(f); v != "" {
					set[f] = v
				} else if q := r.URL.Query(); q.Has(f) {
					set[f] = q.Get(f)
				}
			}
			body, err = withFields(body, set)
		}
		if err != nil {
			answer(w, nil, nil, err)
			return
		}
		res, after, err := h(r.Context(), p, body)
		answer(w, res, after, err)
	}
}

// broadcaster finds the path's broadcaster: 404 for an unknown room or
// peer, and for a peer that is not a broadcaster (WebSocket peers are out
// of this API's reach).
func (b *broadcasters) broadcaster(r *http.Request) (*room.Peer, error) {
	roomID, id := r.PathValue("roomId"), r.PathValue("broadcasterId")
	rm := b.rooms.Room(roomID)
	if rm == nil {
		return nil, Errorf(404, "room %q not found", roomID)
	}
	if p := rm.Peer(id); p != nil && p.IsBroadcaster() {
		return p, nil
	}
	return nil, Errorf(404, "broadcaster %q not found in room %q", id, roomID)
}

// readBody reads the request body, at most maxBroadcasterBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) (json.RawMessage, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBroadcasterBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, Errorf(http.StatusRequestEntityTooLarge, "body: larger than %d bytes", maxBroadcasterBody)
	case err != nil:
		return nil, Errorf(400, "body: %v", err)
	}
	return body, nil
}

// withFields returns the JSON object body (empty: {}) with set's fields
// written over its own.
func withFields(body json.RawMessage, set map[string]any) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := decode(body, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	for k, v := range set {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		m[k] = raw
	}
	return json.Marshal(m)
}

// answer writes result as JSON ({} for nil), then runs after; or err as
// its protocol code with a one-line plain-text reason.
func answer(w http.ResponseWriter, result any, after room.After, err error) {
	if err != nil {
		code, reason := ProtocolError(err)
		if code < 400 || code > 599 {
			code = http.StatusInternalServerError
		}
		httpError(w, code, reason)
		return
	}
	if result == nil {
		result = struct{}{}
	}
	writeJSON(w, http.StatusOK, result)
	if after != nil {
		after()
	}
}

// handleBroadcasterTransport creates a transport: {type:"plain", comedia?
// (default true), rtcpMux? (default false), sctpCapabilities?} or
// {type:"webrtc", sctpCapabilities?}. The plain defaults are the mediasoup
// demo's (its broadcasters/ffmpeg.sh and gstreamer.sh rely on them).
func handleBroadcasterTransport(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		Type             string                 `json:"type"`
		Comedia          *bool                  `json:"comedia"`
		RtcpMux          *bool                  `json:"rtcpMux"`
		SctpCapabilities *room.SctpCapabilities `json:"sctpCapabilities"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	switch req.Type {
	case "plain":
		comedia := req.Comedia == nil || *req.Comedia
		rtcpMux := req.RtcpMux != nil && *req.RtcpMux
		info, err := p.CreatePlainTransport(ctx, room.PlainTransportRequest{
			Comedia: comedia, RtcpMux: rtcpMux,
			EnableSctp: req.SctpCapabilities != nil, SctpCapabilities: req.SctpCapabilities,
		})
		return info, nil, err
	case "webrtc":
		info, err := p.CreateWebRtcTransport(ctx, room.TransportRequest{SctpCapabilities: req.SctpCapabilities})
		return info, nil, err
	}
	return nil, nil, Errorf(400, "type: %q is not plain or webrtc", req.Type)
}

// handleBroadcasterConnect connects a WebRTC transport ({dtlsParameters})
// or a plain one ({ip, port, rtcpPort?}).
func handleBroadcasterConnect(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
	var req struct {
		TransportID    string  `json:"transportId"`
		DtlsParameters any     `json:"dtlsParameters"`
		IP             *string `json:"ip"`
		Port           *uint16 `json:"port"`
		RtcpPort       uint16  `json:"rtcpPort"`
	}
	if err := decode(data, &req); err != nil {
		return nil, nil, err
	}
	switch {
	case req.DtlsParameters != nil:
		return handleConnectWebRtcTransport(ctx, p, data)
	case req.IP == nil:
		return nil, nil, Errorf(400, "dtlsParameters (webrtc) or ip and port (plain): required")
	case net.ParseIP(*req.IP) == nil:
		return nil, nil, Errorf(400, "ip: %q is not an IP address", *req.IP)
	case req.Port == nil || *req.Port == 0:
		return nil, nil, Errorf(400, "port: required, 1-65535")
	}
	return nil, nil, p.ConnectPlainTransport(ctx, req.TransportID, *req.IP, *req.Port, req.RtcpPort)
}

// consumeOf consumes (by the id in field) on the request's transport.
func consumeOf[T any](field string, consume func(*room.Peer, context.Context, string, string) (T, error)) handler {
	return func(ctx context.Context, p *room.Peer, data json.RawMessage) (any, room.After, error) {
		tid, err := idField(data, "transportId")
		if err != nil {
			return nil, nil, err
		}
		id, err := idField(data, field)
		if err != nil {
			return nil, nil, err
		}
		info, err := consume(p, ctx, tid, id)
		return info, nil, err
	}
}
