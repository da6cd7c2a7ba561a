#!/usr/bin/env bash
# Handshake floods (PERF.md "Handshake floods"): the latency of keep-alive requests on
# established connections before and during a flood of full handshakes (`tern-loadgen flood`:
# canned ClientHellos, each connection reset once tern's first flight arrives), with handshake
# admission at its default bound and unbounded (--max-handshakes 0); and the CPU one full
# handshake costs tern at one worker, which the default bound is sized from.
#
#   bench-env/flood.sh [RUNS]        # default 3 runs of each; ~3 minutes
#
# tern runs one worker pinned to CPU 0; the nginx backend, the latency probe and the flood
# share CPU 1. Needs release builds (cargo build --release -p tern -p tern-loadgen), nginx and
# openssl. Every process it starts is stopped on exit. Environment: TERN_BIN, LOADGEN_BIN,
# FLOOD_PORT (24643; the backend takes +1, metrics +2), FLOOD_CONNS (2000 handshakes in
# flight), BOUNDS ("default 0": the --max-handshakes values compared), FLOOD_HELLO_EVERY ("0 250": ms between hello bursts, 0 = none), PROBE_RATE (500 requests/s over 50 connections), PROBE_SECS (8), and the nice
# values TERN_NICE, PROBE_NICE (0) and FLOOD_NICE (10): the flood yields CPU 1 to the probe, so
# the probe measures tern rather than its own core. On a machine busy with other work, nice
# alone does not help where the kernel groups processes by session (autogroup, the default on
# most distributions: nice then orders only the processes of one session). AUTOGROUP_NICE=-10
# (as root) runs the whole measurement in a session of its own at that autogroup nice, so the
# other sessions' work mostly waits while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n ${AUTOGROUP_NICE:-} && -z ${FLOOD_SESSION:-} ]]; then
	# shellcheck disable=SC2016 # expanded by the inner bash
	exec setsid --wait env FLOOD_SESSION=1 bash -c \
		'echo "$AUTOGROUP_NICE" >/proc/self/autogroup && exec "$0" "$@"' "$0" "$@"
fi

RUNS=${1:-3}
TERN=${TERN_BIN:-target/release/tern}
LG=${LOADGEN_BIN:-target/release/tern-loadgen}
PORT=${FLOOD_PORT:-24643}
BPORT=$((PORT + 1))
MPORT=$((PORT + 2))
FLOOD_CONNS=${FLOOD_CONNS:-2000}
# Floods: 0 = each ClientHello sent at once; P = hellos held to the next multiple of P ms, so
# that they arrive in bursts (connections opened first, hellos sent together).
FLOOD_HELLO_EVERY=${FLOOD_HELLO_EVERY:-0 250}
# --max-handshakes values compared: default = tern's own default, 0 = unbounded.
BOUNDS=${BOUNDS:-default 0}
PROBE_RATE=${PROBE_RATE:-500}
PROBE_SECS=${PROBE_SECS:-8}
TERN_NICE=${TERN_NICE:-0}
PROBE_NICE=${PROBE_NICE:-0}
FLOOD_NICE=${FLOOD_NICE:-10}
[[ -x $TERN && -x $LG ]] || {
	echo "flood.sh: build first: cargo build --release -p tern -p tern-loadgen" >&2
	exit 2
}

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

wait_port() {
	for _ in $(seq 100); do
		[[ -n "$(ss -Htln "sport = :$1")" ]] && return 0
		sleep 0.1
	done
	echo "flood.sh: nothing listens on :$1" >&2
	exit 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 16000; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    client_body_temp_path $tmp/nginx/b; proxy_temp_path $tmp/nginx/p;
    fastcgi_temp_path $tmp/nginx/f; uwsgi_temp_path $tmp/nginx/u; scgi_temp_path $tmp/nginx/s;
    server {
        listen 127.0.0.1:$BPORT backlog=4096;
        location = / { default_type text/plain; return 200 "tern bench-env backend: a small response of about one hundred bytes, ok.\n"; }
    }
}
EOF
taskset -c 1 nginx -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log" &
pids+=($!)
wait_port "$BPORT"

# One JSON field of the load generator's output line: json_field EXPR < line.
json_field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1"; }
lg() { nice -n "$PROBE_NICE" taskset -c 1 "$LG" run --target "127.0.0.1:$PORT" --cpus 1 "$@" 2>>"$tmp/lg.log"; }
metric() { curl -fsS "http://127.0.0.1:$MPORT/metrics" | awk -v n="$1" '$1 ~ "^"n"[{]" {s += $2} END {print s + 0}'; }

TPID=
start_tern() {
	nice -n "$TERN_NICE" taskset -c 0 "$TERN" --listen "127.0.0.1:$PORT" --cert "$tmp/cert.pem" --key "$tmp/key.pem" \
		--backend "127.0.0.1:$BPORT" --workers 1 --cores 0 --tickets off --idle-timeout 600s \
		--metrics "127.0.0.1:$MPORT" --sandbox off -q "$@" &
	TPID=$!
	pids+=("$TPID")
	wait_port "$PORT"
}
stop_tern() {
	kill -TERM "$TPID"
	wait "$TPID" 2>/dev/null || true
}

echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load: $(uptime | sed 's/.*load average/load average/'); nice: tern $TERN_NICE, probe $PROBE_NICE, flood $FLOOD_NICE; $(cat /proc/self/autogroup 2>/dev/null || echo 'no autogroup')"

echo "== cost of one full handshake (+ one request and a backend connect) at one worker"
start_tern
for group in x25519 x25519mlkem768; do
	line=$(lg --reqs-per-conn 1 --conns 32 --warmup 1 --duration 5 --group "$group" --watch-pid "$TPID")
	hps=$(json_field 'round(d["hps_per_cpu_s"])' <<<"$line")
	echo "$group: $hps handshakes per CPU-second of tern = $(python3 -c "print(round(1e6 / $hps))") µs each; other CPU $(json_field 'round(d["other_busy"], 2)' <<<"$line")"
done
stop_tern

# The probe's 50 keep-alive connections open at its start; it measures after `warmup`.
probe() {
	local line
	line=$(lg --conns 50 --rate "$PROBE_RATE" --warmup "$1" --duration "$PROBE_SECS")
	json_field '"p50 %d µs  p99 %d µs  p99.9 %d µs  max %d µs  errors %d" % (d["lat_us"]["p50"], d["lat_us"]["p99"], d["lat_us"]["p999"], d["lat_us"]["max"], d["errors"])' <<<"$line"
}

echo "== keep-alive latency at $PROBE_RATE requests/s on 50 connections; flood: $FLOOD_CONNS full handshakes in flight"
for every in $FLOOD_HELLO_EVERY; do
	for mh in $BOUNDS; do
		for run in $(seq "$RUNS"); do
			if [[ $mh == default ]]; then start_tern; else start_tern --max-handshakes "$mh"; fi
			before=$(probe 1)
			# During: the probe's connections are up (and idle) before the flood starts 1 s in;
			# it measures from 3 s on, while the flood runs (until PROBE_SECS + 3 s).
			probe 3 >"$tmp/during.txt" &
			ppid=$!
			sleep 1
			nice -n "$FLOOD_NICE" taskset -c 1 "$LG" flood --target "127.0.0.1:$PORT" --cpus 1 \
				--conns "$FLOOD_CONNS" --hello-every-ms "$every" --warmup 2 --duration "$PROBE_SECS" \
				--timeout 30 --watch-pid "$TPID" >"$tmp/flood.json" 2>>"$tmp/lg.log" &
			fpid=$!
			wait "$ppid"
			during=$(cat "$tmp/during.txt")
			wait "$fpid" || true
			flood=$(json_field '"%d server flights/s (tern busy %.2f of its core, flood client %.2f), %d errors" % (d["flights_s"], d["server_busy"], d["client_cpu_s"] / d["secs"], d["errors"])' <"$tmp/flood.json")
			tag="hellos every ${every} ms, --max-handshakes $mh, run $run"
			echo "$tag: before: $before"
			echo "$tag: during: $during"
			echo "$tag: flood $flood; in flight at most $(metric tern_tls_handshakes_in_flight_max), queued $(metric tern_tls_handshakes_queued_total)"
			stop_tern
		done
	done
done
echo "== load after: $(uptime | sed 's/.*load average/load average/')"
