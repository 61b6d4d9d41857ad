// Command loadtest puts R rooms × P peers on a running mediasoup-server and
// measures it.
//
//	loadtest [-url ws://127.0.0.1:4443] [-rooms R] [-peers P] [-producers N] [-mode signaling|media|floor]
//	         [-duration 10s] [-timeout 60s] [-server-pid PID] [-json]
//
// Every peer opens its WebSocket, gets the router's RTP capabilities,
// creates a producing and a consuming transport, connects both, joins with
// the router's capabilities, produces audio and video, and accepts every
// newConsumer; with -producers N only the first N peers of a room produce and
// the others (viewers, one receiving transport) only consume. In signaling mode there is no media: the DTLS and RTP
// parameters are synthetic but valid, which mediasoup accepts without a
// handshake. In media mode every peer is a real WebRTC client (client.Join)
// sending synthetic Opus and VP8. Then, for -duration, every peer sends
// getTransportStats back to back (a closed loop), and finally every socket
// is closed at once. Mode floor needs no server: it does the same
// operations straight through mediasoup-go in this process (-worker-bin),
// the floor any Go server on mediasoup-go pays, for comparison.
//
// Measured: join latency (dial → join answer), time to the full mesh (each
// peer holds a consumer of the 2 producers of every other peer of its room),
// round-trip time per method, closed-loop requests/s and RTT, teardown time
// (sockets closed → the server's /healthz shows no routers of ours), and the
// CPU and RSS of the server (-server-pid) and of its workers (pids from
// /healthz), read from /proc: that only works on the server's machine.
//
// A progress bar goes to stderr, the report to stdout (a table, or JSON with
// -json). The exit status is 1 when expected consumers are missing or the run
// failed, 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	var asJSON, quiet bool
	var cpuProfile string
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:4443", "the server's WebSocket URL")
	fs.IntVar(&cfg.Rooms, "rooms", 1, "number of rooms")
	fs.IntVar(&cfg.Peers, "peers", 4, "peers per room")
	fs.IntVar(&cfg.Producers, "producers", 0, "peers per room that produce audio and video (0: every peer, a full mesh; 1: one-to-many); the others only consume and start once the producers have produced")
	fs.StringVar(&cfg.Mode, "mode", "signaling", "signaling (no media, synthetic parameters), media (real WebRTC clients), or floor (no server: the same operations straight through mediasoup-go in-process, for comparison)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "closed-loop phase: every peer sends getTransportStats back to back (0 skips it)")
	fs.BoolVar(&cfg.Hold, "hold", false, "during -duration send no requests: only hold the peers and their media (measures media alone)")
	fs.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "bound of the setup phase (up to the full mesh) and of the teardown, each")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "bound of one request")
	fs.IntVar(&cfg.Concurrency, "concurrency", 0, "peers setting up at the same time (0: all at once)")
	fs.IntVar(&cfg.ServerPid, "server-pid", 0, "the server's pid, to sample its CPU and RSS (same machine only)")
	fs.StringVar(&cfg.RoomPrefix, "room-prefix", "", "room ids are PREFIX-r0, PREFIX-r1, … (default lt-<random>)")
	fs.DurationVar(&cfg.SampleInterval, "sample-interval", 250*time.Millisecond, "CPU/RSS sampling interval")
	fs.StringVar(&cfg.WorkerBin, "worker-bin", os.Getenv("MEDIASOUP_WORKER_BIN"), "mode floor: the mediasoup-worker binary (default $MEDIASOUP_WORKER_BIN)")
	fs.IntVar(&cfg.Workers, "workers", 2, "mode floor: number of workers")
	fs.IntVar(&cfg.RtcPort, "rtc-port", 0, "mode floor: worker i's WebRtcServer listens on 127.0.0.1 port N+i (0: any free port)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no progress bar")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (is the generator the limit?)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loadtest [flags]\n\nPuts -rooms × -peers peers on a running mediasoup-server and reports latencies, the full-mesh time, throughput and CPU/RSS.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadtest: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	if !quiet {
		cfg.Progress = stderr
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 2
	}
	if cfg.Mode != "floor" {
		// The generator shares the machine's cores with the server it
		// measures: it trades memory for less garbage-collection CPU. (Not
		// in mode floor, which stands for the server: default settings.)
		debug.SetGCPercent(400)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "loadtest: -cpuprofile:", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	rep, err := Run(ctx, cfg)
	if rep == nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printTable(stdout, rep)
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "loadtest:", err)
		return 1
	case rep.MissingConsumers > 0 || !rep.FullMesh:
		fmt.Fprintf(stderr, "loadtest: %d of %d expected consumers missing\n", rep.MissingConsumers, rep.ExpectedConsumers)
		return 1
	case rep.PeersFailed > 0:
		fmt.Fprintf(stderr, "loadtest: %d peers failed\n", rep.PeersFailed)
		return 1
	}
	return 0
}

func printTable(w io.Writer, r *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cols ...any) {
		for i, c := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw, "\t")
	}
	f := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	lat := func(name string, l Latency) { line(name, l.Count, f(l.P50Ms), f(l.P95Ms), f(l.P99Ms), f(l.MaxMs)) }

	target := r.URL
	if r.Mode == "floor" {
		target = "mediasoup-go in-process (no server)"
	}
	shape := "full mesh"
	if r.ProducersPerRoom < r.PeersPerRoom {
		shape = fmt.Sprintf("%d producing, %d viewers each", r.ProducersPerRoom, r.PeersPerRoom-r.ProducersPerRoom)
	}
	fmt.Fprintf(w, "loadtest %s: %d rooms × %d peers (%s) = %d peers against %s\n", r.Mode, r.Rooms, r.PeersPerRoom, shape, r.Peers, target)
	fmt.Fprintf(w, "host: %d CPUs, load average %s before, %s after\n\n", r.Host.CPUs, r.Host.LoadBefore, r.Host.LoadAfter)

	mesh := "NOT reached"
	if r.FullMesh {
		mesh = fmt.Sprintf("%.0f ms after the first dial, %.0f ms after the last produce (%.0f consumers/s)",
			r.FullMeshMs, r.MeshAfterProduceMs, r.ConsumersPerSecond)
	}
	fmt.Fprintf(w, "peers joined %d/%d (failed %d); consumers %d/%d (missing %d)\n", r.PeersJoined, r.Peers, r.PeersFailed,
		r.Consumers, r.ExpectedConsumers, r.MissingConsumers)
	if r.Mode == "floor" {
		fmt.Fprintf(w, "full mesh: %s\n", mesh)
	} else {
		fmt.Fprintf(w, "full mesh: %s; routers at mesh: %d\n", mesh, r.RoutersAtMesh)
	}
	if m := r.Media; m != nil {
		media := "NOT every consumer got RTP"
		if m.MeshMs > 0 {
			media = fmt.Sprintf("every consumer got RTP %.0f ms after the first dial", m.MeshMs)
		}
		fmt.Fprintf(w, "media: %s (%d/%d consumers); during the loop %.0f packets/s, %.0f kbit/s received; %d packets sent\n",
			media, m.ConsumersWithMedia, r.ExpectedConsumers, m.PacketsPerSec, m.KbitPerSec, m.PacketsSent)
		fmt.Fprintf(w, "media loss over the run: %.3f %% of all packets, worst consumer %.3f %%\n", m.LossPct, m.WorstLossPct)
	}
	if r.ServerCPUPerConsumerMs > 0 || r.WorkerCPUPerConsumerMs > 0 {
		fmt.Fprintf(w, "CPU per consumer (setup phase): server %.3f ms, workers %.3f ms\n", r.ServerCPUPerConsumerMs, r.WorkerCPUPerConsumerMs)
	}
	fmt.Fprintln(w)

	line("latency (ms)", "n", "p50", "p95", "p99", "max")
	lat("join (dial → join answer)", r.Setup)
	if r.Dial.Count > 0 {
		lat("dial (WebSocket handshake)", r.Dial)
	}
	for _, m := range r.Methods {
		lat("rtt "+m.Method, m.RTT)
	}
	if r.Loop != nil {
		lat("rtt closed loop (ok)", r.Loop.RTT)
		if r.Loop.RateLimited > 0 {
			lat("rtt closed loop (429)", r.Loop.RateLimitedRTT)
		}
	}
	tw.Flush()
	for _, m := range r.Methods {
		if len(m.Errors) > 0 {
			fmt.Fprintf(w, "errors %s: %s\n", m.Method, fmtCounts(m.Errors))
		}
	}
	fmt.Fprintln(w)

	if l := r.Loop; l != nil {
		fmt.Fprintf(w, "closed loop: %d peers × %.1f s: %d requests, %.0f ok/s (%.0f req/s incl. %d rate-limited, %d failed)\n",
			l.Peers, l.DurationS, l.Requests, l.OKPerSec, l.RequestsPerSec, l.RateLimited, l.Failed)
		if l.ServerCPUPerRequestUs > 0 || l.WorkerCPUPerRequestUs > 0 {
			fmt.Fprintf(w, "CPU per closed-loop request: server %.1f µs, workers %.1f µs\n", l.ServerCPUPerRequestUs, l.WorkerCPUPerRequestUs)
		}
		fmt.Fprintln(w)
	}
	td := r.Teardown
	if td.Complete {
		fmt.Fprintf(w, "teardown: sockets closed in %.0f ms, routers gone after %.0f ms\n\n", td.CloseMs, td.Ms)
	} else {
		fmt.Fprintf(w, "teardown: sockets closed in %.0f ms, routers NOT gone after %.0f ms (%d left, %d before)\n\n",
			td.CloseMs, td.Ms, td.RoutersAfter, td.RoutersBefore)
	}

	if len(r.Processes) > 0 {
		phases := []string{"setup", "loop", "teardown"}
		cols := []any{"process", "pid"}
		for _, p := range phases {
			cols = append(cols, p+" cpu%")
		}
		cols = append(cols, "max cpu%", "peak RSS MB", "end RSS MB")
		line(cols...)
		for _, p := range r.Processes {
			row := []any{p.Name, p.Pid}
			for _, ph := range phases {
				if v, ok := p.PhaseCPUPercent[ph]; ok {
					row = append(row, f(v))
				} else {
					row = append(row, "-")
				}
			}
			row = append(row, f(p.MaxCPUPercent), f(p.PeakRSSMB), f(p.EndRSSMB))
			line(row...)
		}
		tw.Flush()
		fmt.Fprintln(w, "(cpu% is of one core: 200 = two cores busy)")
		fmt.Fprintln(w)
	}
	if len(r.Notifs) > 0 {
		fmt.Fprintf(w, "notifications received: %s\n", fmtCounts(r.Notifs))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
