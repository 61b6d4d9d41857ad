// Package client is a Go client for the room server's signaling protocol: the
// protoo protocol of the mediasoup demo, spoken over one WebSocket per peer
// (see PROTOCOL.md in the shared docs). Integration tests, bots and the load
// generator use it to talk to the server; WebRTC media is layered on top of it
// elsewhere.
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
// # Server requests and notifications
//
// The server sends the requests newConsumer and newDataConsumer. Each one is
// handled on its own goroutine by DialOptions.OnRequest, whose return value
// becomes the response (a nil OnRequest accepts every request with {}).
// Notifications are passed, in arrival order, to DialOptions.OnNotification on
// a single goroutine, which may itself call Request.
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
package client
