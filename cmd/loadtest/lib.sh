# Shared by the load sweeps (sweep.sh, spread.sh): builds cmd/loadtest into
# $OUT and starts and stops bin/mediasoup-server on loopback with 2 workers.
# Sourced, not run. Expects OUT set; PORT, RTC_PORT, SERVER and
# MEDIASOUP_WORKER_BIN may be set.

PORT=${PORT:-4711}
RTC_PORT=${RTC_PORT:-47110}
SERVER=${SERVER:-bin/mediasoup-server}
WORKER_BIN=${MEDIASOUP_WORKER_BIN:-$PWD/bin/mediasoup-worker}
mkdir -p "$OUT"
go build -o "$OUT/loadtest" ./cmd/loadtest

server_pid=
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=
	fi
}
trap stop_server EXIT

start_server() { # $1: name (for the log file), $2...: extra server flags
	local name=$1
	shift
	"$SERVER" -listen "127.0.0.1:$PORT" -workers 2 -rtc-port "$RTC_PORT" -listen-ip 127.0.0.1 \
		-worker-bin "$WORKER_BIN" -log-level warn "$@" >"$OUT/server-$name.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "server did not start; see $OUT/server-$name.log" >&2
	exit 1
}

summarize() { # $1: the header (tab-separated), $2: a jq filter giving one row (an array) of a report
	echo "reports in $OUT" >&2
	command -v jq >/dev/null || return 0
	{
		printf '%s\n' "$1"
		for f in "$OUT"/*.json; do
			jq -r --arg f "$(basename "$f" .json)" "$2 | @tsv" "$f"
		done
	} | column -t -s $'\t'
}
