#!/usr/bin/env bash
# bench-env/profile.sh: where tern's CPU goes, per workload. Two readings:
#
#   1. user vs kernel: tern (release, one worker on CPU 0) under tern-loadgen load for a few
#      seconds; utime and stime of its process from /proc/<pid>/stat before and after. What
#      the kernel does for tern (TCP, io_uring) is the part no change in tern's own code makes
#      cheaper.
#   2. instructions: the same load, shorter, with tern under `valgrind --tool=callgrind`
#      (perf counters are not available here; callgrind counts instructions reproducibly).
#      The top functions by self cost are printed with their share of tern's user-space work.
#
#   bench-env/profile.sh [--no-callgrind] [--no-split] [--serial] [--seconds N]
#                        [--runs MODE:WORKLOAD,..]
#
# --runs picks the callgrind runs (default tcp:hs,tcp:keepalive,tcp:bulk-down,http:keepalive);
# workloads are hs, keepalive and bulk-down. TERN_BIN=/path/tern profiles another binary, so
# two builds can be compared instruction for instruction; do that with --serial (one
# connection at a time): how many requests one wake-up of tern serves changes its
# instructions per request, and a busier machine batches more. TERN_FLAGS adds flags to tern's
# command line (e.g. TERN_FLAGS="--uring-recv single"), as for run.sh.
#
# Needs what bench-env/run.sh installs (nginx as the backend, openssl, valgrind) and release
# builds of tern and tern-loadgen (`cargo build --release --workspace`). Uses ports 24443 and
# 24080 on 127.0.0.1, like run.sh. Output: a table on stdout, callgrind files in
# bench-env/results/profile-<timestamp>/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TERN=${TERN_BIN:-$ROOT/target/release/tern}
LOADGEN=${LOADGEN_BIN:-$ROOT/target/release/tern-loadgen}
SECONDS_RUN=5 CALLGRIND=1 SPLIT=1 SERIAL=0 RUNS=tcp:hs,tcp:keepalive,tcp:bulk-down,http:keepalive
while (($#)); do
	case $1 in
	--no-callgrind) CALLGRIND=0 ;;
	--no-split) SPLIT=0 ;;
	--runs) RUNS=${2:?} && shift ;;
	--seconds) SECONDS_RUN=${2:?} && shift ;;
	--serial) SERIAL=1 ;;
	*) echo "profile.sh: unknown argument $1" >&2 && exit 2 ;;
	esac
	shift
done
for c in nginx openssl taskset curl; do command -v $c >/dev/null || { echo "profile.sh: $c is needed" >&2; exit 2; }; done
((CALLGRIND)) && { command -v valgrind >/dev/null || { echo "profile.sh: valgrind is needed (or --no-callgrind)" >&2; exit 2; }; }
[[ -x $TERN && -x $LOADGEN ]] || { echo "profile.sh: build first: cargo build --release --workspace" >&2; exit 2; }

OUT=$ROOT/bench-env/results/profile-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/www" "$OUT/tmp"
PIDS=()
# tern too (a failed step exits through here with tern, perhaps under valgrind, still up).
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[[ -z ${TERN_PID:-} ]] || kill -KILL "$TERN_PID" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
head -c 1048576 /dev/zero | tr '\0' a >"$OUT/www/1m"
cat >"$OUT/backend.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/tmp/nginx.pid; error_log $OUT/backend-error.log warn;
events { worker_connections 4096; }
http { access_log off; sendfile off; output_buffers 2 256k; keepalive_requests 10000000;
  client_body_temp_path $OUT/tmp/body; proxy_temp_path $OUT/tmp/proxy; fastcgi_temp_path $OUT/tmp/f;
  uwsgi_temp_path $OUT/tmp/u; scgi_temp_path $OUT/tmp/s;
  server { listen 127.0.0.1:24080; root $OUT/www;
    location = / { return 200 "tern bench-env backend: a small response of about one hundred bytes, ok.\n"; }
    location = /1m { } } }
EOF
taskset -c 1 nginx -c "$OUT/backend.conf" -e "$OUT/backend-error.log" &
PIDS+=($!)

wait_port() { for _ in $(seq 300); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }
wait_port 24080 || { echo "backend did not start" >&2; exit 1; }

# tern's own process: utime stime (ticks) from /proc/PID/stat.
ticks() { awk '{ sub(/.*\) /, ""); print $12, $13 }' "/proc/$1/stat"; }

# start_tern MODE TICKETS [WRAPPER...]: sets TERN_PID.
start_tern() {
	local mode=$1 tickets=$2
	shift 2
	taskset -c 0 "$@" "$TERN" --listen 127.0.0.1:24443 --cert "$OUT/cert.pem" --key "$OUT/key.pem" \
		--backend 127.0.0.1:24080 --mode "$mode" --workers 1 --cores 0 --tickets "$tickets" \
		--idle-timeout 600s -q ${TERN_FLAGS:-} 2>>"$OUT/tern.log" &
	TERN_PID=$!
	wait_port 24443 || { echo "tern did not start (see $OUT/tern.log)" >&2; exit 1; }
}
# Under valgrind a worker blocked in io_uring_enter can keep the signal from being handled
# (valgrind runs one thread at a time), so a stop that takes over 30 s ends with SIGKILL;
# the measured counts were dumped before it.
stop_tern() {
	kill -TERM "$TERN_PID"
	for _ in $(seq 300); do kill -0 "$TERN_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$TERN_PID" 2>/dev/null || true
	wait "$TERN_PID" 2>/dev/null || true
}

# Workloads as bench-env/run.sh runs them.
declare -A ARGS=(
	[hs]="--reqs-per-conn 1 --conns 32"
	[keepalive]="--conns 16"
	[bulk-down]="--conns 4 --path /1m"
)
if ((SERIAL)); then
	ARGS=([hs]="--reqs-per-conn 1 --conns 1" [keepalive]="--conns 1" [bulk-down]="--conns 1 --path /1m")
fi
declare -A TICKETS=([hs]=off [keepalive]=on [bulk-down]=on)
WORKLOADS=(hs keepalive bulk-down)

load() { # SECONDS ARGS...
	local s=$1
	shift
	# shellcheck disable=SC2068
	taskset -c 1 "$LOADGEN" run --target 127.0.0.1:24443 --cpus 1 --warmup "${WARMUP:-0.5}" --duration "$s" $@ 2>>"$OUT/loadgen.log" ||
		{ echo "profile.sh: tern-loadgen failed (see $OUT/loadgen.log)" >&2; return 1; }
}

if ((SPLIT)); then
echo "| mode | workload | rate | tern CPU | user | kernel |"
echo "|---|---|---|---|---|---|"
for mode in tcp http; do
	for wl in "${WORKLOADS[@]}"; do
		start_tern "$mode" "${TICKETS[$wl]}"
		load 0.5 ${ARGS[$wl]} >/dev/null
		read -r u0 s0 < <(ticks "$TERN_PID")
		t0=$(date +%s.%N)
		json=$(load "$SECONDS_RUN" ${ARGS[$wl]})
		read -r u1 s1 < <(ticks "$TERN_PID")
		t1=$(date +%s.%N)
		stop_tern
		python3 - "$mode" "$wl" "$u0" "$s0" "$u1" "$s1" "$t0" "$t1" "$json" <<'PY'
import json, os, sys
mode, wl = sys.argv[1:3]
u0, s0, u1, s1 = map(int, sys.argv[3:7])
t0, t1 = map(float, sys.argv[7:9])
r = json.loads(sys.argv[9])
hz = os.sysconf("SC_CLK_TCK")
u, s = (u1 - u0) / hz, (s1 - s0) / hz
rate = r.get("hps") if wl == "hs" else (r.get("mib_in_s") if wl == "bulk-down" else r.get("rps"))
unit = {"hs": "handshakes/s", "keepalive": "req/s", "bulk-down": "MiB/s"}[wl]
print(f"| {mode} | {wl} | {rate:,.0f} {unit} | {(u + s) / (t1 - t0):.2f} | {100 * u / (u + s):.0f} % | {100 * s / (u + s):.0f} % |")
PY
	done
done
fi

((CALLGRIND)) || exit 0
echo
# Only the steady state is counted: tern runs under callgrind, takes a warm-up load (start-up
# and aws-lc's jitterentropy seeding, ~0.4 G instructions, happen then), and the counters are
# zeroed (`callgrind_control -z`) before the measured load and dumped (`-d`) right after it,
# so the figure per request is the load's alone, whatever start-up cost. (Earlier versions
# subtracted a separate start-up run, whose own variation swamped short runs.)
# valgrind's CPU hides some instruction sets (aws-lc then takes its portable "_alt" X25519 and
# AVX instead of SHA-NI SHA-256), so crypto counts here are above what runs natively.
command -v callgrind_control >/dev/null || { echo "profile.sh: callgrind_control (valgrind) is needed" >&2; exit 2; }
cg_total() { callgrind_annotate --auto=no "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
for run in ${RUNS//,/ }; do
	mode=${run%%:*} wl=${run#*:}
	f=$OUT/callgrind.$mode.$wl
	start_tern "$mode" "${TICKETS[$wl]}" valgrind --tool=callgrind --callgrind-out-file="$f" --dump-instr=no
	load 1 ${ARGS[$wl]} >/dev/null
	timeout 60 callgrind_control -z "$TERN_PID" >/dev/null
	json=$(WARMUP=0 load "$SECONDS_RUN" ${ARGS[$wl]})
	timeout 60 callgrind_control -d "$TERN_PID" >/dev/null
	stop_tern
	# The dump holds what happened between -z and -d; the file at exit (stop) is left aside.
	f=$f.1
	echo "### $mode / $wl"
	python3 - "$wl" "$(cg_total "$f")" "$json" <<'PY'
import json, sys
wl, total, r = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if wl == "bulk-down":
    n, what = r["bytes_in"] / 2**20, "MiB"
elif wl == "hs":
    n, what = r["handshakes"], "handshake"
else:
    n, what = r["requests"], "request"
print(f"{total:,} user-space instructions for {n:,.0f} x {what}: {total / max(n, 1):,.0f} per {what}")
print("top functions by self cost, % of those:")
PY
	# A dump taken while threads run lists the frames every thread sits below (clone,
	# start_thread, ...) with the whole count as if it were their own: at 100 %, left out.
	callgrind_annotate --threshold=100 --auto=no "$f" 2>/dev/null | grep -E '^ *[0-9,]+ \(' |
		grep -v -e jitterentropy -e 'PROGRAM TOTALS' -e '(100.0%)' | head -n 20 |
		sed -E 's# \[[^]]*\]$##; s#/[^ ]*/(registry/src/[^/]*|rustc/[0-9a-f]*|aws-lc)/##' || true
	echo
done
echo "callgrind files: $OUT"
