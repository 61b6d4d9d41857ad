// Package client is a Go client for the room server's signaling protocol: the
// protoo protocol of the mediasoup demo, spoken over one WebSocket per peer
// (see PROTOCOL.md in the shared docs). Integration tests, bots and the load
// generator use it to talk to the server. Conn is the signaling connection;
// Peer (Join) adds real WebRTC media on top of it, see "Media" below.
//
// # Connecting
//
// Dial opens the WebSocket ws(s)://HOST:PORT/?roomId=ROOM&peerId=PEER,
// offering the subprotocol "protoo":
//
//	conn, err := client.Dial(ctx, "ws://127.0.0.1:4443", "room1", "alice", &client.DialOptions{
//		OnRequest: func(method string, data json.RawMessage) (any, error) {
//			switch method {
//			case "newConsumer":
//				var nc client.NewConsumer
//				if err := json.Unmarshal(data, &nc); err != nil {
//					return nil, &client.ResponseError{Code: 400, Reason: err.Error()}
//				}
//				// ... set up the consumer ...
//				return nil, nil // answered ok with {}
//			}
//			return nil, nil
//		},
//		OnNotification: func(method string, data json.RawMessage) {
//			log.Printf("notification %s %s", method, data)
//		},
//	})
//	if err != nil {
//		var he *client.HandshakeError
//		if errors.As(err, &he) { // the server refused with a plain HTTP answer
//			log.Fatalf("refused: %d %s", he.Status, he.Body)
//		}
//		log.Fatal(err)
//	}
//	defer conn.Close()
//
// If the server answers the upgrade with an HTTP error (403 without the protoo
// subprotocol, 400 without roomId/peerId, ...), Dial returns a *HandshakeError
// holding the status code and the one-line reason.
//
// # Requests
//
// Request sends a protoo request and waits for its response, decoding the
// response data into result. An error response (ok:false) is returned as a
// *ResponseError carrying the protocol's errorCode and errorReason:
//
//	var caps json.RawMessage
//	err := conn.Request(ctx, "getRouterRtpCapabilities", nil, &caps)
//
//	var joined client.JoinResponse
//	err = conn.Request(ctx, "join", client.JoinRequest{
//		DisplayName:     "Alice",
//		Device:          client.Device{Flag: "bot", Name: "go-client", Version: "1"},
//		RtpCapabilities: caps,
//	}, &joined)
//	var re *client.ResponseError
//	if errors.As(err, &re) && re.Code == 409 { /* already joined */ }
//
// Requests time out after DialOptions.RequestTimeout (10 s by default) unless
// their context ends first, and fail promptly with an error wrapping ErrClosed
// when the connection goes away. Request, Notify and the other methods are safe
// for concurrent use.
//
// Go sends a request without waiting for its answer (Call.Wait gives it), so
// that the next request goes out behind it, as protoo-client allows: the
// server handles one connection's requests in the order they came.
//
// # Server requests and notifications
//
// The server sends the requests newConsumer and newDataConsumer. Each one is
// handled on its own goroutine by DialOptions.OnRequest, whose return value
// becomes the response (a nil OnRequest accepts every request with {}).
// Notifications are passed, in arrival order, to DialOptions.OnNotification on
// a single goroutine, which may itself call Request.
// DialOptions.OnMessage, when set, sees every request, response and
// notification on the reading goroutine, in arrival order, before it is
// handled: a test that checks the order of everything a peer received uses it.
//
// Every notification is also kept in a bounded backlog (the last 1024 by
// default) that WaitNotification searches, so a test can wait for a
// notification without racing against its arrival:
//
//	data, err := conn.WaitNotification(ctx, "mediasoup-version", nil)
//	data, err = conn.WaitNotification(ctx, "peerClosed", func(d json.RawMessage) bool {
//		var pc client.PeerClosed
//		return json.Unmarshal(d, &pc) == nil && pc.PeerID == "bob"
//	})
//
// # Closing
//
// Close closes the connection normally (code 1000). Done is closed when the
// connection is gone for whatever reason; then CloseCode tells the close code
// the server sent (4000 when the server closed the peer on purpose: kicked,
// room closed, shutdown) and Err tells why the connection ended.
//
// # Media
//
// Join connects and joins a room as a full WebRTC participant, for bots,
// recorders and load tests. It does what mediasoup-client does in a browser:
// getRouterRtpCapabilities, createWebRtcTransport for sending and receiving
// (with sctpCapabilities when JoinOptions.Data), join with the client's RTP
// capabilities; it accepts newConsumer and newDataConsumer by itself and
// connects each transport (connectWebRtcTransport) on first use:
//
//	p, err := client.Join(ctx, "ws://127.0.0.1:4443", "room1", "bot1", client.JoinOptions{
//		DisplayName: "Bot 1", Produce: true, Consume: true, Data: true,
//	})
//	if err != nil { ... }
//	defer p.Close()
//	p.OnConsumer(func(c *client.Consumer) {
//		c.OnRTP(func(pkt *rtp.Packet) { ... }) // or poll c.Stats()
//	})
//	p.OnDataMessage(func(from, label string, msg []byte) { ... })
//	audio, err := p.ProduceAudio(ctx, client.AudioOptions{})
//	video, err := p.ProduceVideo(ctx, client.VideoOptions{Simulcast: true})
//	chat, err := p.ProduceData(ctx, "chat", true)
//	err = chat.SendText("hello")
//	err = video.Pause(ctx) // Resume, Close; consumers: Pause, Resume, SetPreferredLayers
//	err = p.RestartIce(ctx)
//	err = p.Leave(ctx)
//
// The media is synthetic: Opus-framed audio packets every 20 ms carrying a
// loud (or, with AudioOptions.Silent, silent) ssrc-audio-level header
// extension, so the room's active speaker detection works; VP8 video with real
// payload descriptors and key frame headers, a key frame on start, every 2 s
// and on every PLI/FIR, optionally as a 3-layer simulcast (rids r0, r1, r2).
// The payloads are not decodable; each carries a record (sequence, layer,
// send time) that ParseSyntheticPayload reads back and checks byte for byte,
// e.g. to measure delivery and one-way delay.
//
// Each mediasoup transport is one pion PeerConnection driven with SDP built
// from mediasoup's parameters, as mediasoup-client's Unified Plan handlers
// do. On the sending transport pion offers (one sendonly m-section per
// producer, the simulcast encodings as rids, an m=application section for
// data channels) and the answer is built from the transport's ICE, DTLS and
// SCTP parameters and the router's codecs and header extensions; the
// producer's rtpParameters (payload type pion sends, SSRCs and rids, mid,
// header extensions, CNAME) are read back from the negotiation. On the
// receiving transport the offer is built from the consumers' rtpParameters
// (one m-section per consumer: its mid, SSRC, CNAME, codecs) and pion
// answers. mediasoup is ICE-lite; the client is the DTLS client on both
// transports (a=setup:passive in the built answer, a=setup:active in pion's
// answer) and says so in connectWebRtcTransport, with its fingerprint in upper
// case. Data channels are negotiated (no DCEP) on explicit SCTP stream ids:
// the next free one for a data producer, the data consumer's for a data
// consumer. Unlike pion's ORTC API, a PeerConnection ignores the streams it
// did not negotiate (mediasoup's bandwidth probation on SSRC 1234, RTCP XR)
// and runs pion's interceptors: NACK, RTCP reports, transport-cc.
//
// Limits: Opus and VP8 only, without RTX or FEC; ICE over UDP/IPv4 only (no
// TCP, no TURN); data producers cannot be closed alone (the protocol has no
// closeDataProducer); closed producers and consumers leave inactive
// m-sections behind, so a peer that churns through many of them renegotiates
// ever longer SDPs.
package client
