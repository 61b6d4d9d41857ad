package client

// CloseMediaForTest closes p's PeerConnections (their DTLS sends close_notify)
// while its WebSocket stays open: what a client whose media died looks like
// to the server.
func CloseMediaForTest(p *Peer) {
	for _, t := range []*transport{p.send, p.recv} {
		if t != nil && t.pc != nil {
			_ = t.pc.Close()
		}
	}
}
