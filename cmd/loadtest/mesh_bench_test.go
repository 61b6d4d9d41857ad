package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/signaling"
)

// BenchmarkFullMesh runs the load test in-process, server included (one
// real worker), for one room of P peers without the closed loop: one
// iteration is a whole run (setup to full mesh, then teardown). It exists
// to profile the server under the mesh load:
//
//	go test -run XXX -bench FullMesh/P=32 -benchtime 5x -cpuprofile cpu.out ./cmd/loadtest/
//	go tool pprof -top -focus 'mediasoup-server/(room|signaling)|mediasoup-go' cpu.out
//
// The profile holds the load generator too (package client, main).
func BenchmarkFullMesh(b *testing.B) {
	for _, p := range []int{8, 32} {
		b.Run(fmt.Sprintf("P=%d", p), func(b *testing.B) {
			url := newServer(b)
			var mesh, cons float64
			b.ReportAllocs()
			for b.Loop() {
				rep, err := Run(context.Background(), Config{URL: url, Rooms: 1, Peers: p, Mode: "signaling",
					Timeout: 60 * time.Second, RequestTimeout: 30 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				if !rep.FullMesh || !rep.Teardown.Complete {
					b.Fatalf("full mesh %v, teardown %+v, errors %v", rep.FullMesh, rep.Teardown, rep.Errors)
				}
				mesh += rep.FullMeshMs
				cons += float64(rep.ExpectedConsumers)
			}
			b.ReportMetric(mesh/float64(b.N), "ms/mesh")
			b.ReportMetric(1000*cons/mesh, "consumers/s")
		})
	}
}

// BenchmarkClosedLoop runs the closed-loop phase in-process against a server
// without the request rate limit: P peers send getTransportStats back to
// back for 300 ms per iteration (after a setup of its own). To profile the
// server's request path:
//
//	go test -run XXX -bench ClosedLoop -benchtime 10x -cpuprofile cpu.out ./cmd/loadtest/
//	go tool pprof -top -focus 'signaling\.\(\*Conn\)' cpu.out
func BenchmarkClosedLoop(b *testing.B) {
	url := newServer(b, func(l *signaling.Limits) { l.RequestRate = -1; l.RequestBurst = 1000 })
	var ok, secs float64
	for b.Loop() {
		rep, err := Run(context.Background(), Config{URL: url, Rooms: 1, Peers: 16, Mode: "signaling",
			Duration: 300 * time.Millisecond, Timeout: 60 * time.Second, RequestTimeout: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Loop == nil || rep.Loop.Failed > 0 || rep.Loop.RateLimited > 0 {
			b.Fatalf("loop: %+v, errors %v", rep.Loop, rep.Errors)
		}
		ok += float64(rep.Loop.OK)
		secs += rep.Loop.DurationS
	}
	b.ReportMetric(ok/secs, "requests/s")
}
