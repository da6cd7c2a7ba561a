# shellcheck shell=bash
# Shared helpers of bench-env/run.sh: logging, process start/stop with cleanup, bounded waits,
# port checks, and the process-tree CPU/RSS reader. Sourced, never run.

# Every process the harness starts is recorded here and stopped (with its whole tree) on exit.
STARTED_PIDS=()
FAILURES=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
fail() {
	# A step that failed to produce a number: remembered, reported, and the exit code says so.
	FAILURES+=("$*")
	log "FAILED: $*"
}

# Descendants of a pid (children first), from /proc via ps.
descendants() {
	local kid
	for kid in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		descendants "$kid"
		echo "$kid"
	done
}

# Stop a process and all its descendants: SIGTERM, up to $2 seconds (default 5), then SIGKILL.
stop_tree() {
	local pid=$1 grace=${2:-5} all p i
	kill -0 "$pid" 2>/dev/null || return 0
	all="$(descendants "$pid") $pid"
	# shellcheck disable=SC2086
	kill -TERM $all 2>/dev/null || true
	for ((i = 0; i < grace * 10; i++)); do
		local alive=0
		for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	if ((${#STARTED_PIDS[@]})); then
		for pid in "${STARTED_PIDS[@]}"; do stop_tree "$pid" 3; done
	fi
	# Keep the results, configuration and logs; drop the run's binary copies and scratch files.
	[[ -n ${RUN_DIR:-} && -d $RUN_DIR ]] && rm -rf "${RUN_DIR:?}/bin" "${RUN_DIR:?}/tmp" "${RUN_DIR:?}/www"
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# start_bg NAME CPULIST CMD... : run CMD pinned to CPULIST in the background, output to
# $RUN_DIR/logs/NAME.log; sets BG_PID.
start_bg() {
	local name=$1 cpus=$2
	shift 2
	taskset -c "$cpus" "$@" >"$RUN_DIR/logs/$name.log" 2>&1 &
	BG_PID=$!
	STARTED_PIDS+=("$BG_PID")
}

# stop_bg PID: stop something start_bg started and forget it.
stop_bg() {
	local pid=$1 keep=() p
	stop_tree "$pid" 5
	for p in "${STARTED_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	STARTED_PIDS=("${keep[@]}")
}

port_in_use() { [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]; }

require_free_port() {
	port_in_use "$1" && die "port 127.0.0.1:$1 is already in use (set $2 to another port)"
	return 0
}

# wait_port PORT PID SECONDS: until something accepts on 127.0.0.1:PORT; fails if PID dies.
wait_port() {
	local port=$1 pid=$2 secs=${3:-10} i
	for ((i = 0; i < secs * 20; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

# wait_port_free PORT SECONDS
wait_port_free() {
	local i
	for ((i = 0; i < ${2:-10} * 20; i++)); do
		port_in_use "$1" || return 0
		sleep 0.05
	done
	return 1
}

# treestat PID -> JSON {cpu_s, rss_kb, procs} of the process tree (tern-loadgen does the reading,
# so wrk runs and loadgen runs use one formula: sum of utime+stime / CLK_TCK over the tree).
treestat() { "$LOADGEN" treestat "$1"; }

# json_get JSON KEY -> value (numbers/strings only; nested keys as a.b)
json_get() {
	"$PY" -c 'import json,sys
v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v.get(k) if isinstance(v,dict) else None
print("" if v is None else v)' "$1" "$2"
}

# json_str TEXT -> TEXT as a JSON string literal.
json_str() { "$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

# A measurement result: one JSON object per line in $RUN_DIR/raw.jsonl.
record() { printf '%s\n' "$1" >>"$RUN_DIR/raw.jsonl"; }

# Run a command with a time limit (seconds), killing it and its children on overrun.
bounded() {
	local secs=$1
	shift
	timeout --kill-after=5 "$secs" "$@"
}
