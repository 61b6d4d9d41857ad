#!/usr/bin/env bash
# The spreading sweep of BENCHMARKS.md §5: the largest full-mesh and
# one-to-many rooms this machine holds with one worker per room
# (room.maxWorkers: 1) and spread over the pool's 2 workers (room.maxWorkers:
# 0, the default budget of 400 consumers per router).
#
# Starts bin/mediasoup-server on loopback (2 workers, request limit raised,
# 3000 peers per room) once per configuration and runs cmd/loadtest against it:
#   - media mode (real WebRTC peers), -hold (no requests while the media
#     flows for DURATION): a full mesh of P peers for P in MESH, and one
#     producing peer with V viewers for V in VIEWERS;
#   - signaling mode (no media, no loop): the same shapes at SIG_MESH and
#     SIG_VIEWERS, for the setup cost.
# Every report is kept as JSON in OUTDIR (default a new temp folder); a
# summary table is printed at the end (needs jq). A room "holds" when every
# consumer received RTP and the loss over the run is under 1 %.
#
#   cmd/loadtest/spread.sh [OUTDIR]
#   env: REPS=2 DURATION=5s MESH="16 20 24 28 32" VIEWERS="200 400 600 800 1000 1200"
#        SIG_MESH="64 96" SIG_VIEWERS="1000 2000" PORT=4711 RTC_PORT=47110 SERVER=bin/mediasoup-server
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${1:-$(mktemp -d /tmp/loadtest-spread.XXXXXX)}
REPS=${REPS:-2}
DURATION=${DURATION:-5s}
MESH=${MESH:-"16 20 24 28 32"}
VIEWERS=${VIEWERS:-"200 400 600 800 1000 1200"}
SIG_MESH=${SIG_MESH:-"64 96"}
SIG_VIEWERS=${SIG_VIEWERS:-"1000 2000"}
. cmd/loadtest/lib.sh

write_config() { # $1: one | spread
	cat >"$OUT/$1.yaml" <<YAML
signaling:
  requestsPerSecond: 1000000
  requestBurst: 1000
room:
  maxPeers: 3000
  maxWorkers: $([ "$1" = one ] && echo 1 || echo 0)
YAML
}

run() { # $1: config, $2: mode, $3: mesh | o2m, $4: peers, $5: rep
	local producers=0 phase=(-duration 0) f="$OUT/$1-$2-$3-p$4-$5.json"
	[ "$3" = o2m ] && producers=1
	[ "$2" = media ] && phase=(-hold -duration "$DURATION")
	echo "== $1 $2 $3: $4 peers, run $5 (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	"$OUT/loadtest" -url "ws://127.0.0.1:$PORT" -server-pid "$server_pid" -mode "$2" -peers "$4" \
		-producers "$producers" "${phase[@]}" -timeout 120s -json -quiet >"$f" 2>>"$OUT/loadtest.log" ||
		echo "   (exit $?: see $f)" >&2
}

for cfg in one spread; do
	write_config "$cfg"
	start_server "$cfg" -config "$OUT/$cfg.yaml"
	for rep in $(seq "$REPS"); do
		for p in $MESH; do run "$cfg" media mesh "$p" "$rep"; done
		for v in $VIEWERS; do run "$cfg" media o2m $((v + 1)) "$rep"; done
		for p in $SIG_MESH; do run "$cfg" signaling mesh "$p" "$rep"; done
		for v in $SIG_VIEWERS; do run "$cfg" signaling o2m $((v + 1)) "$rep"; done
	done
	stop_server
done

summarize $'file\tpeers\tconsumers\tgot\trouters\tsetup_ms\tmedia_ms\tloss%\tworst%\tworker0%\tworker1%\tserver%\tloadtest%\tload' \
	'[$f, .peersPerRoom, .expectedConsumers, .consumers, .routersAtMesh,
			.fullMeshMs, (.media.meshMs // "-"), (.media.lossPct // "-"), (.media.worstConsumerLossPct // "-"),
			([.processes[] | select(.name == "worker 0") | .phaseCpuPercent.loop // .phaseCpuPercent.setup][0] // "-"),
			([.processes[] | select(.name == "worker 1") | .phaseCpuPercent.loop // .phaseCpuPercent.setup][0] // "-"),
			([.processes[] | select(.name == "server") | .phaseCpuPercent.loop // .phaseCpuPercent.setup][0] // "-"),
			([.processes[] | select(.name == "loadtest") | .phaseCpuPercent.loop // .phaseCpuPercent.setup][0] // "-"),
			(.host.loadavgBefore | split(" ")[0])]'
