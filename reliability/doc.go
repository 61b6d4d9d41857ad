// Package reliability is the server's reliability suite: bounded scenarios
// against a real in-process server (real mediasoup workers, the real
// WebSocket edge on loopback, real clients) that inject faults and load and
// measure what they cost. It holds tests only; see RELIABILITY.md at the
// repository root for how to run them and the figures they report.
//
//	go test -race ./reliability/                 # the quick versions (make test)
//	go test ./reliability/ -args -full           # the full versions (make reliability)
package reliability
