#!/usr/bin/env bash
# bench-env/run.sh: measure tern against the TLS terminators it replaces (nginx, HAProxy, hitch)
# on this machine, with one command. See bench-env/README.md.
#
#   bench-env/run.sh [--quick] [--check] [--only WORKLOAD[,..]] [--peers PEER[,..]]
#                    [--scaling N[,N..]] [--lat-rate N] [--idle-conns N] [--backend-sendfile]
#                    [--no-install] [--no-build]
#
# Environment: TERN_BIN=/path/to/tern measures that binary (tern is then not built);
# TERN_FLAGS="--flag value" adds flags to every tern and tern-http start (A/B of a setting);
# TERN_BENCH_PORT (24443) and TERN_BENCH_BACKEND_PORT (24080) move the fixed ports (the
# reencrypt workload also uses the backend port + 1).
#
# Installs what it needs (apt), builds tern, tern-loadgen and benches/tls.rs (cargo, release),
# makes test certificates, starts a backend and each terminator in turn (everything on 127.0.0.1,
# every process cleaned up on exit), and writes bench-env/results/<timestamp>/{results.md,
# results.csv,results.json,raw.jsonl,*.png}. The markdown table also goes to stdout.
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

BACKEND_SEND=write MODE=full ONLY="" PEERS_ARG="" LAT_RATE="" IDLE_ARG="" INSTALL=1 BUILD=1 CHECK=0
SCALE_LIST=""
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--quick) [[ $MODE == check ]] || MODE=quick ;;
	--check) MODE=check CHECK=1 ;;
	--only) ONLY=${2:?--only needs a workload list} && shift ;;
	--only=*) ONLY=${1#*=} ;;
	--peers) PEERS_ARG=${2:?--peers needs a list} && shift ;;
	--peers=*) PEERS_ARG=${1#*=} ;;
	--scaling) SCALE_LIST=${2:?--scaling needs a list of worker counts, e.g. 1,2,4,8} && shift ;;
	--scaling=*) SCALE_LIST=${1#*=} ;;
	--lat-rate) LAT_RATE=${2:?} && shift ;;
	--idle-conns) IDLE_ARG=${2:?} && shift ;;
	--no-install) INSTALL=0 ;;
	--no-build) BUILD=0 ;;
	--backend-sendfile) BACKEND_SEND=sendfile ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
	shift
done
if [[ -n $SCALE_LIST && ! $SCALE_LIST =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
	echo "run.sh: --scaling $SCALE_LIST: expected worker counts like 1,2,4,8" >&2
	exit 2
fi

# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/backend.sh
source "$BENCH_DIR/lib/backend.sh"
# shellcheck source=lib/peers.sh
source "$BENCH_DIR/lib/peers.sh"
# shellcheck source=lib/crypto.sh
source "$BENCH_DIR/lib/crypto.sh"
# shellcheck source=lib/workloads.sh
source "$BENCH_DIR/lib/workloads.sh"
# shellcheck source=lib/setup.sh
source "$BENCH_DIR/lib/setup.sh"

START_TIME=$(date +%s)
TLS_PORT=${TERN_BENCH_PORT:-24443}
BACKEND_PORT=${TERN_BENCH_BACKEND_PORT:-24080}

# Seconds of warm-up and of measurement per run, and idle connections held, per mode; and
# criterion's warm-up and measurement seconds and samples for the bare-crypto row.
case $MODE in
full) WARMUP=2 DURATION=10 IDLE_DEFAULT=10000 IDLE_STILL=3 CRIT_WARMUP=1 CRIT_TIME=4 CRIT_SAMPLES=50 ;;
quick) WARMUP=0.5 DURATION=1.5 IDLE_DEFAULT=2000 IDLE_STILL=2 CRIT_WARMUP=0.5 CRIT_TIME=1 CRIT_SAMPLES=20 ;;
check) WARMUP=0.2 DURATION=0.5 IDLE_DEFAULT=200 IDLE_STILL=1 CRIT_WARMUP=0.2 CRIT_TIME=0.3 CRIT_SAMPLES=10 ;;
esac
LAT_RATE=${LAT_RATE:-5000}

((INSTALL)) && install_packages
command -v python3 >/dev/null || die "python3 is needed (apt-get install python3)"
# The interpreter itself, not a version-manager shim (pyenv's adds ~50 ms to every call).
PY=$(python3 -c 'import sys; print(sys.executable)')
for c in openssl taskset ss curl nginx; do
	command -v "$c" >/dev/null || die "$c is needed and could not be installed"
done

require_free_port "$TLS_PORT" TERN_BENCH_PORT
require_free_port "$BACKEND_PORT" TERN_BENCH_BACKEND_PORT

RUN_DIR=$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN_DIR"/{logs,conf,tmp,certs}
log "results: $RUN_DIR (mode $MODE)"

((BUILD)) && build_binaries
TERN=${TERN_BIN:-$ROOT/target/release/tern}
[[ ${TERN_BUILD_FAILED:-0} == 1 ]] && TERN=$ROOT/target/release/tern-did-not-build
LOADGEN=$ROOT/target/release/tern-loadgen
[[ -x $LOADGEN ]] || die "tern-loadgen was not built ($LOADGEN)"
# Run copies: a build in the shared target directory during the run must not swap binaries.
mkdir -p "$RUN_DIR/bin"
cp "$LOADGEN" "$RUN_DIR/bin/tern-loadgen" && LOADGEN=$RUN_DIR/bin/tern-loadgen
[[ -x $TERN ]] && cp "$TERN" "$RUN_DIR/bin/tern" && TERN=$RUN_DIR/bin/tern
if [[ -z $PEERS_ARG || ",$PEERS_ARG," == *",bare-crypto,"* ]]; then build_bench_tls; fi

cpu_layout
raise_fd_limit
# Idle connections: 10,000, unless the open-file limit cannot hold two fds per connection
# (client side and backend side) in one terminator process.
IDLE_MAX=$(((NOFILE - 200) / 2 / 100 * 100))
IDLE_CONNS=${IDLE_ARG:-$IDLE_DEFAULT}
if ((IDLE_CONNS > IDLE_MAX)); then
	log "open-file limit $NOFILE: holding $IDLE_MAX idle connections instead of $IDLE_CONNS"
	IDLE_CONNS=$IDLE_MAX
fi

# Which workloads.
SELECTED=()
for w in ${ONLY//,/ }; do
	[[ " $WORKLOADS $OPT_IN_WORKLOADS " == *" $w "* ]] || die "unknown workload $w (known: $WORKLOADS $OPT_IN_WORKLOADS)"
done
for w in $WORKLOADS $OPT_IN_WORKLOADS; do
	if [[ -z $ONLY && " $OPT_IN_WORKLOADS " != *" $w "* ]] || [[ ",$ONLY," == *",$w,"* ]]; then
		SELECTED+=("$w")
	elif [[ -z $ONLY && $w == unix ]] && ((CHECK)); then
		SELECTED+=("$w") # CI keeps the unix-socket path working, shortened (wl_unix)
	elif [[ $w == scaling && -n $SCALE_LIST ]]; then
		SELECTED+=("$w") # --scaling asks for it
	fi
done
has() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }
# The reencrypt workload's backend also serves HTTPS, on the next port.
has reencrypt && BACKEND_TLS_PORT=$((BACKEND_PORT + 1))
# The unix workload's backend also listens on a Unix socket (sun_path holds 107 bytes: a deep
# checkout puts it in /tmp instead).
if has unix; then
	BACKEND_SOCK=$RUN_DIR/tmp/backend.sock
	((${#BACKEND_SOCK} > 100)) && BACKEND_SOCK=$(mktemp -u /tmp/tern-bench-XXXXXX.sock)
fi

# Again, after the build (which can take minutes): is anything else using the ports now?
require_free_port "$TLS_PORT" TERN_BENCH_PORT
require_free_port "$BACKEND_PORT" TERN_BENCH_BACKEND_PORT
[[ -n ${BACKEND_TLS_PORT:-} ]] && require_free_port "$BACKEND_TLS_PORT" "TERN_BENCH_BACKEND_PORT (+1)"
wrk_client_conf >"$RUN_DIR/conf/wrk-client.cnf"
make_certs

# Which terminators.
PEERS=()
for p in ${PEERS_ARG//,/ }; do
	[[ " $ALL_PEERS " == *" $p "* ]] || die "unknown peer $p (known: $ALL_PEERS)"
done
for p in $ALL_PEERS; do
	[[ -n $PEERS_ARG && ",$PEERS_ARG," != *",$p,"* ]] && continue
	why=$(peer_unavailable "$p")
	if [[ -n $why ]]; then
		log "skipping $p: $why"
		record "{\"peer\": \"$p\", \"workload\": \"skipped\", \"reason\": $(json_str "$why")}"
		# tern itself must be there; a missing peer or tern's unbuilt http mode is only noted.
		[[ $p == tern ]] && fail "tern is not available: $why"
		continue
	fi
	PEERS+=("$p")
done
((${#PEERS[@]})) || die "no terminator available"
log "terminators: ${PEERS[*]}; workloads: ${SELECTED[*]}"
backend_start
write_meta

# Runs grouped by server configuration; inside a group the terminators take turns, so that
# whatever else the machine does at the time hits all of them alike. idle-mem always gets a
# freshly started terminator (memory freed by earlier runs would hide its growth).
run_group() { # CERT TICKETS WORKLOAD...
	local cert=$1 tickets=$2 p w todo
	shift 2
	(($#)) || return 0
	for p in "${PEERS[@]}"; do
		todo=()
		for w in "$@"; do peer_runs "$p" "$w" && todo+=("$w"); done
		((${#todo[@]})) || continue
		peer_start "$p" "$cert" "$tickets" || continue
		for w in "${todo[@]}"; do run_workload "$p" "$w"; done
		peer_stop
	done
}
# Re-encryption: only the terminators that can forward over TLS; the others are noted.
run_reencrypt() {
	local p why able=()
	for p in "${PEERS[@]}"; do
		[[ $p == *-plain || $p == bare-crypto ]] && continue
		why=$(reencrypt_unavailable "$p")
		if [[ -n $why ]]; then
			log "reencrypt: skipping $p: $why"
			record "{\"peer\": \"$p\", \"workload\": \"skipped\", \"for\": \"reencrypt\", \"reason\": $(json_str "$why")}"
			continue
		fi
		able+=("$p")
	done
	PEER_BACKEND=tls
	for p in "${able[@]}"; do
		peer_start "$p" ec off || continue
		run_workload "$p" reencrypt
		peer_stop
	done
	PEER_BACKEND=plain
}
# The unix-socket backend: tern and tern-http only (the peers' rows are the tcp-backend ones).
run_unix() {
	local p why
	why=$(unix_unavailable)
	PEER_BACKEND=unix
	for p in "${PEERS[@]}"; do
		[[ $p == tern || $p == tern-http ]] || continue
		if [[ -n $why ]]; then
			log "unix: skipping $p: $why"
			record "{\"peer\": \"$p-unix\", \"workload\": \"skipped\", \"for\": \"unix\", \"reason\": $(json_str "$why")}"
			continue
		fi
		peer_start "$p" ec on || continue
		wl_unix "$p"
		peer_stop
	done
	PEER_BACKEND=plain
}
group_on=()
for w in resume keepalive bulk-down bulk-up latency toolcheck; do has "$w" && group_on+=("$w"); done
has hs-ecdsa && run_group ec off hs-ecdsa
has hs-rsa && run_group rsa off hs-rsa
run_group ec on "${group_on[@]}"
has idle-mem && run_group ec on idle-mem
has reencrypt && run_reencrypt
has unix && run_unix
[[ " ${PEERS[*]} " == *" bare-crypto "* ]] && crypto_row
if has scaling; then
	if [[ " ${PEERS[*]} " == *" tern "* ]]; then wl_scaling; else log "scaling: tern not available"; fi
fi

stop_bg "$BACKEND_PID"
[[ -n ${BACKEND_SOCK:-} ]] && rm -f "$BACKEND_SOCK"
ELAPSED=$(($(date +%s) - START_TIME))
log "measured in ${ELAPSED}s; writing the report"
"$PY" "$BENCH_DIR/lib/report.py" "$RUN_DIR" --elapsed "$ELAPSED" --mode "$MODE" ||
	fail "report: lib/report.py failed"
if ((CHECK)); then
	n=$(find "$RUN_DIR" -maxdepth 1 -name '*.png' | wc -l)
	((n > 0)) || fail "report: no chart was written"
	for f in results.md results.csv results.json; do
		[[ -s $RUN_DIR/$f ]] || fail "report: $f missing"
	done
fi
if ((${#FAILURES[@]})); then
	log "${#FAILURES[@]} step(s) failed:"
	for f in "${FAILURES[@]}"; do log "  $f"; done
	exit 1
fi
log "done in $(($(date +%s) - START_TIME))s: $RUN_DIR"
