#!/usr/bin/env bash
# The load test sweep of BENCHMARKS.md: starts bin/mediasoup-server on
# loopback (2 workers), runs cmd/loadtest in signaling mode for one room of
# P = 2, 8, 16, 32, 64 peers and for 10 rooms × 8 peers, REPS times each,
# first with the default limits, then with cmd/loadtest/no-rate-limit.yaml,
# then in mode floor (no server: the same operations straight through
# mediasoup-go in-process, 2 workers), and keeps every report as JSON in
# OUTDIR (default a new temp folder).
# A summary table is printed at the end (needs jq).
#
#   cmd/loadtest/sweep.sh [OUTDIR]
#   env: REPS=3 DURATION=5s PEERS="2 8 16 32 64" PORT=4711 RTC_PORT=47110 SERVER=bin/mediasoup-server
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${1:-$(mktemp -d /tmp/loadtest-sweep.XXXXXX)}
REPS=${REPS:-3}
DURATION=${DURATION:-5s}
PEERS=${PEERS:-"2 8 16 32 64"}
. cmd/loadtest/lib.sh

run() { # $1: config name, $2: rooms, $3: peers, $4: rep
	local f="$OUT/$1-r$2-p$3-$4.json" target
	echo "== $1: $2 rooms × $3 peers, run $4 (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	if [ "$1" = floor ]; then
		target=(-mode floor -worker-bin "$WORKER_BIN" -workers 2)
	else
		target=(-url "ws://127.0.0.1:$PORT" -server-pid "$server_pid")
	fi
	"$OUT/loadtest" "${target[@]}" -rooms "$2" -peers "$3" -duration "$DURATION" \
		-timeout 120s -json -quiet >"$f" || echo "   (exit $?: see $f)" >&2
}

for cfg in default no-rate-limit floor; do
	case $cfg in
	default) start_server "$cfg" ;;
	no-rate-limit) start_server "$cfg" -config cmd/loadtest/no-rate-limit.yaml ;;
	esac
	for rep in $(seq "$REPS"); do
		for p in $PEERS; do run "$cfg" 1 "$p" "$rep"; done
		run "$cfg" 10 8 "$rep"
	done
	stop_server
done

summarize $'file\tjoin_p50\tjoin_p99\tjoin_max\tmesh_ms\tafter_produce_ms\tconsumers/s\tsrv_cpu_ms/cons\twrk_cpu_ms/cons\tloop_ok/s\tloop_429/s\tloop_p50\tloop_p99\tsrv_us/req\twrk_us/req\tteardown_ms\tsrv_rss_MB\twrk_rss_MB\tload' \
	'[$f, .joinLatency.p50Ms, .joinLatency.p99Ms, .joinLatency.maxMs,
			.fullMeshMs, .meshAfterLastProduceMs, .consumersPerSecond, .serverCpuPerConsumerMs, .workerCpuPerConsumerMs,
			(.loop.okPerSec // 0), ((.loop.rateLimited // 0) / (.loop.durationS // 1) | floor), (.loop.rtt.p50Ms // 0), (.loop.rtt.p99Ms // 0),
			(.loop.serverCpuPerRequestUs // 0), (.loop.workerCpuPerRequestUs // 0),
			.teardown.ms, ([.processes[]? | select(.name == "server") | .peakRssMB] | max // 0),
			([.processes[]? | select(.name | startswith("worker")) | .peakRssMB] | max // 0), .host.loadavgBefore]'
