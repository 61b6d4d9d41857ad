package worker_test

import (
	"context"
	"slices"
	"testing"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/worker"
)

// ListenInfos give each address its own announced address and protocols;
// ExposeInternalIP offers the bound IP as well.
func TestListenInfosShapeTheCandidates(t *testing.T) {
	p := newPool(t, 1, func(o *worker.Options) {
		o.ListenInfos = []worker.ListenInfo{
			{Protocol: "udp", IP: "127.0.0.1", AnnouncedAddress: "203.0.113.7", ExposeInternalIP: true},
			{Protocol: "tcp", IP: "127.0.0.1", AnnouncedAddress: "media.example.com"},
		}
	})
	r, err := p.CreateRouter(context.Background(), opusRouter)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tr, err := r.CreateWebRtcTransport(&mediasoup.WebRtcTransportOptions{
		WebRtcServer: r.WebRtcServer, EnableUdp: ptr(true), EnableTcp: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var got []string
	for _, c := range tr.Data().WebRtcTransportData.IceCandidates {
		got = append(got, string(c.Protocol)+" "+c.Address)
	}
	slices.Sort(got)
	want := []string{"tcp media.example.com", "udp 127.0.0.1", "udp 203.0.113.7"}
	if !slices.Equal(got, want) {
		t.Fatalf("candidates %v, want %v", got, want)
	}
}

func ptr[T any](v T) *T { return &v }
