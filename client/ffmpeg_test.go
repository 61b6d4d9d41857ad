package client_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"

	mediasoup "github.com/jiyeyuran/mediasoup-go/v2"
	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
)

// httpJSON does one request to the broadcaster HTTP API and decodes a 200
// answer into out.
func (e *mediaEnv) httpJSON(method, path string, body, out any) {
	e.t.Helper()
	if code, text := testutil.API(e.t, method, e.url+path, body, out); code != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, path, code, text)
	}
}

// TestFfmpegBroadcaster broadcasts with Debian's ffmpeg the way the mediasoup
// demo's broadcasters/ffmpeg.sh does (same HTTP requests, same payload types,
// SSRCs and encoder settings, RTP and RTCP on separate ports), with a generated
// test pattern and tone instead of a media file; a Go client in the room
// receives both the audio and the video.
func TestFfmpegBroadcaster(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: `make deps` (or `make test`) installs Debian's ffmpeg")
	}
	e := newMediaEnv(t)
	viewer := e.join("R", "viewer", client.JoinOptions{Consume: true})

	const (
		audioSSRC, audioPT = 1111, 100
		videoSSRC, videoPT = 2222, 101
		base               = "/rooms/R/broadcasters/ffmpeg"
	)
	var caps mediasoup.RtpCapabilities
	e.httpJSON("GET", "/rooms/R", nil, &caps)
	e.httpJSON("POST", "/rooms/R/broadcasters", map[string]any{
		"id": "ffmpeg", "displayName": "Broadcaster", "device": map[string]any{"name": "FFmpeg"},
	}, nil)
	t.Cleanup(func() { e.httpJSON("DELETE", base, nil, nil) })

	type plain struct {
		ID       string `json:"id"`
		IP       string `json:"ip"`
		Port     int    `json:"port"`
		RtcpPort int    `json:"rtcpPort"`
	}
	transport := func() plain {
		var tr plain
		e.httpJSON("POST", base+"/transports", map[string]any{"type": "plain", "comedia": true, "rtcpMux": false}, &tr)
		if tr.ID == "" || tr.Port == 0 || tr.RtcpPort == 0 || tr.RtcpPort == tr.Port {
			t.Fatalf("plain transport with rtcpMux false: %+v", tr)
		}
		return tr
	}
	audioTr, videoTr := transport(), transport()

	var audio, video struct {
		ID string `json:"id"`
	}
	e.httpJSON("POST", base+"/transports/"+audioTr.ID+"/producers", map[string]any{
		"kind": "audio",
		"rtpParameters": map[string]any{
			"codecs": []map[string]any{{"mimeType": "audio/opus", "payloadType": audioPT, "clockRate": 48000,
				"channels": 2, "parameters": map[string]any{"sprop-stereo": 1}}},
			"encodings": []map[string]any{{"ssrc": audioSSRC}},
		},
	}, &audio)
	e.httpJSON("POST", base+"/transports/"+videoTr.ID+"/producers", map[string]any{
		"kind": "video",
		"rtpParameters": map[string]any{
			"codecs":    []map[string]any{{"mimeType": "video/vp8", "payloadType": videoPT, "clockRate": 90000}},
			"encodings": []map[string]any{{"ssrc": videoSSRC}},
		},
	}, &video)

	// ffmpeg.sh's command, with lavfi sources instead of -stream_loop -1 -i FILE.
	ctx, cancel := context.WithCancel(context.Background())
	out := &testutil.LockedBuffer{} // ffmpeg's output (-v warning), for a failure message
	cmd := exec.CommandContext(ctx, ffmpeg,
		"-re", "-v", "warning", "-nostdin",
		"-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "1:a:0", "-acodec", "libopus", "-ab", "128k", "-ac", "2", "-ar", "48000",
		"-map", "0:v:0", "-pix_fmt", "yuv420p", "-c:v", "libvpx", "-b:v", "1000k", "-deadline", "realtime", "-cpu-used", "4",
		"-f", "tee",
		fmt.Sprintf("[select=a:f=rtp:ssrc=%d:payload_type=%d]rtp://%s:%d?rtcpport=%d|[select=v:f=rtp:ssrc=%d:payload_type=%d]rtp://%s:%d?rtcpport=%d",
			audioSSRC, audioPT, audioTr.IP, audioTr.Port, audioTr.RtcpPort,
			videoSSRC, videoPT, videoTr.IP, videoTr.Port, videoTr.RtcpPort))
	cmd.Stdout, cmd.Stderr = out, out
	testutil.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("ffmpeg output:\n%s", out.String())
		}
	})

	a, v := waitConsumer(t, viewer, audio.ID), waitConsumer(t, viewer, video.ID)
	if a.Kind() != "audio" || v.Kind() != "video" {
		t.Fatalf("consumer kinds %q, %q", a.Kind(), v.Kind())
	}
	deadline := time.Now().Add(settle)
	for a.Stats().Packets < 100 || v.Stats().Packets < 100 {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("ffmpeg exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the viewer received %d audio and %d video packets", a.Stats().Packets, v.Stats().Packets)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the viewer received %d audio and %d video packets", a.Stats().Packets, v.Stats().Packets)

	// ffmpeg's RTCP went to the RTCP ports answered: the worker learnt the
	// RTCP tuple of each transport from it (comedia).
	bc := e.rooms.Room("R").Peer("ffmpeg")
	for _, tr := range []plain{audioTr, videoTr} {
		waitFor(t, settle, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			st, err := bc.TransportStats(ctx, tr.ID)
			if err != nil {
				return false
			}
			list, _ := st.([]any)
			if len(list) != 1 {
				t.Fatalf("transport stats: %#v", st)
			}
			stats, ok := list[0].(*mediasoup.TransportStat)
			if !ok || stats.PlainTransportStat == nil {
				t.Fatalf("transport stats of type %T", list[0])
			}
			rt := stats.PlainTransportStat.RtcpTuple
			return rt != nil && int(rt.LocalPort) == tr.RtcpPort
		}, "transport %s: no RTCP from ffmpeg on port %d", tr.ID, tr.RtcpPort)
	}
}
