# shellcheck shell=bash
# Variables set here are read by the files that source this one:
# shellcheck disable=SC2034
# The workloads. Each runs against the terminator started by peer_start ($PEER_PID on
# 127.0.0.1:$TLS_PORT) and appends one JSON line per measurement to $RUN_DIR/raw.jsonl.
# Sourced by run.sh.
#
# Load-generator settings (chosen by measurement on a 2-core machine, see README.md):
#   handshakes   32 connections in flight: the OpenSSL peers reach 0.9-1.0 CPU at 8 already,
#                32 leaves headroom for tern (more than twice as fast); 128 only adds latency.
#   keep-alive   16 connections: 4 leaves single-core peers at 0.5-0.9 CPU, 16 reaches 0.9+,
#                64 adds queueing (p99 x10) and no rate.
#   bulk         4 connections: at 4, 1 MiB transfers already fill the client+backend core;
#                at 16-64 every terminator moves fewer MiB per CPU-second (cache misses over
#                64 MiB in flight), nginx down to half.
#   latency      32 keep-alive connections sharing a fixed request rate ($LAT_RATE/s).
#   idle         64 connections opened at once until $IDLE_CONNS are held.

WORKLOADS="hs-ecdsa hs-rsa resume keepalive bulk-down bulk-up latency idle-mem scaling"
# Not in the default set: run with --only (unix also runs, shortened, in --check).
OPT_IN_WORKLOADS="toolcheck reencrypt unix"
HS_CONNS=32
KA_CONNS=16
BULK_CONNS=4
LAT_CONNS=32

# Server configuration each workload needs: CERT TICKETS.
wl_config() {
	case $1 in
	hs-ecdsa) echo "ec off" ;;
	hs-rsa) echo "rsa off" ;;
	reencrypt) echo "ec off" ;;
	*) echo "ec on" ;;
	esac
}

# lg_run PEER WORKLOAD EXTRA_JSON LOADGEN_ARGS... : one measured loadgen run, recorded.
# A run that produced no number (on a shared machine, another process can starve a short run)
# is run once more before it counts as a failure.
lg_run() {
	local peer=$1 wl=$2 extra=$3 line attempt retry plain=()
	shift 3
	is_plain "$peer" && plain=(--plain)
	for attempt in 1 2; do
		retry=--retry
		((attempt == 2)) && retry=""
		if line=$(bounded $((${WARMUP%.*} + ${DURATION%.*} + 40)) \
			taskset -c "$CLIENT_CPUS" "$LOADGEN" run --target "127.0.0.1:$TLS_PORT" \
			--threads "$CLIENT_THREADS" --cpus "$CLIENT_CPUS" \
			--watch-pid "$PEER_PID" --watch-backend "$BACKEND_PID" \
			--warmup "$WARMUP" --duration "$DURATION" --label "$peer/$wl" "${plain[@]}" "$@" \
			2>>"$RUN_DIR/logs/loadgen.log" |
			"$PY" "$BENCH_DIR/lib/record.py" "$RUN_DIR" "$peer" "$wl" "$extra" $retry); then
			log "  $peer/$wl: $line"
			return 0
		fi
		((attempt == 1)) && log "  $peer/$wl: $line; running it again"
	done
	fail "$peer/$wl: $line"
	return 1
}

wl_hs() { # PEER WORKLOAD
	lg_run "$1" "$2" '{}' --reqs-per-conn 1 --conns "$HS_CONNS"
}

wl_resume() {
	lg_run "$1" resume '{}' --reqs-per-conn 1 --conns "$HS_CONNS" --resume
}

# WL_EXTRA: what the unix workload adds to the rows of these three.
WL_EXTRA='{}'
wl_keepalive() {
	lg_run "$1" keepalive "$WL_EXTRA" --conns "$KA_CONNS"
}

wl_bulk_down() {
	lg_run "$1" bulk-down "$WL_EXTRA" --conns "$BULK_CONNS" --path /1m
}

wl_bulk_up() {
	lg_run "$1" bulk-up "$WL_EXTRA" --conns "$BULK_CONNS" --path /upload --method POST --body-size 1048576
}

wl_latency() {
	lg_run "$1" latency "{\"lat_rate\": $LAT_RATE}" --conns "$LAT_CONNS" --rate "$LAT_RATE"
}

# Memory per idle connection: hold $IDLE_CONNS TLS connections (handshake and one request done,
# so tcp-mode proxies hold their backend connection too) on a freshly started terminator.
wl_idle_mem() {
	local peer=$1 line
	if line=$(bounded 200 taskset -c "$CLIENT_CPUS" "$LOADGEN" idle --target "127.0.0.1:$TLS_PORT" \
		--cpus "$CLIENT_CPUS" --watch-pid "$PEER_PID" --conns "$IDLE_CONNS" --parallel 64 \
		--settle 1 --still "$IDLE_STILL" --max-setup 150 --label "$peer/idle-mem" 2>>"$RUN_DIR/logs/loadgen.log" |
		"$PY" "$BENCH_DIR/lib/record.py" "$RUN_DIR" "$peer" idle-mem "" --expect-conns "$IDLE_CONNS"); then
		log "  $peer/idle-mem: $line"
	else
		fail "$peer/idle-mem: $line"
		return 1
	fi
}

# Re-encryption (opt-in, --only reencrypt): the terminator forwards over TLS to the backend's
# HTTPS port and checks its certificate (PEER_BACKEND=tls); full handshakes as in hs-ecdsa and
# keep-alive requests as in keepalive.
wl_reencrypt() {
	lg_run "$1" reencrypt-hs '{"backend": "tls"}' --reqs-per-conn 1 --conns "$HS_CONNS"
	lg_run "$1" reencrypt-ka '{"backend": "tls"}' --conns "$KA_CONNS"
}

# Unix-socket backend (opt-in, --only unix): tern and tern-http reach the same nginx backend
# over its Unix socket (PEER_BACKEND=unix); the keep-alive and bulk workloads, recorded as the
# peers tern-unix and tern-http-unix so that they sit beside the tcp-backend rows of tern and
# tern-http in the same tables. --check runs keep-alive and bulk-down only (about 10 s).
wl_unix() { # PEER (tern or tern-http)
	local w todo=(keepalive bulk-down bulk-up)
	((CHECK)) && todo=(keepalive bulk-down)
	WL_EXTRA='{"backend": "unix"}'
	for w in "${todo[@]}"; do run_workload "$1-unix" "$w"; done
	WL_EXTRA='{}'
}

# Scaling: full handshakes and keep-alive requests through tern with N workers, connections
# scaled by N.
#   default            N = 1..$SCALE_MAX on CPUs 0..N-1; on 2 cores the second worker shares
#                      CPU 1 with the load generator and the backend.
#   --scaling LIST     each N gets N CPUs of its own, the load generator and the backend the rest
#                      (the backend the last one when two or more are left); an N that leaves no
#                      CPU for them is skipped, saying why.
wl_scaling() {
	local w
	if [[ -z ${SCALE_LIST:-} ]]; then
		for ((w = 1; w <= SCALE_MAX; w++)); do
			scale_run "$w" "$(cpu_range 0 "$w")" "$CLIENT_CPUS" "$CLIENT_THREADS" shared
		done
		return
	fi
	local rest client backend threads why
	for w in ${SCALE_LIST//,/ }; do
		if ((w + 1 > NCPU)); then
			why="needs $((w + 1)) CPUs ($w for tern, 1 or more for the load generator and the backend); this machine allows $NCPU"
			log "scaling: $w worker(s) skipped: $why"
			record "{\"peer\": \"tern\", \"workload\": \"skipped\", \"for\": \"scaling\", \"workers\": $w, \"reason\": \"$why\"}"
			continue
		fi
		rest=$((NCPU - w))
		if ((rest >= 2)); then
			backend=${CPU_LIST[NCPU - 1]} client=$(cpu_range "$w" "$((rest - 1))") threads=$((rest - 1))
		else
			backend=${CPU_LIST[w]} client=${CPU_LIST[w]} threads=1
		fi
		backend_pin "$backend"
		log "scaling: $w worker(s) on CPUs $(cpu_range 0 "$w"), load generator on $client, backend on $backend"
		scale_run "$w" "$(cpu_range 0 "$w")" "$client" "$threads" dedicated
	done
	backend_pin "$BACKEND_CPUS"
}

# scale_run WORKERS TERN_CPUS CLIENT_CPUS CLIENT_THREADS LAYOUT
scale_run() {
	local w=$1 saved_cpus=$CLIENT_CPUS saved_threads=$CLIENT_THREADS extra
	SCALE_CPUS=$2 CLIENT_CPUS=$3 CLIENT_THREADS=$4
	extra="{\"workers\": $w, \"tern_cpus\": \"$2\", \"client_cpus\": \"$3\", \"layout\": \"$5\"}"
	if peer_start tern ec off "$w"; then
		lg_run tern scale-hs "$extra" --reqs-per-conn 1 --conns $((HS_CONNS * w))
		peer_stop
	fi
	if peer_start tern ec on "$w"; then
		lg_run tern scale-ka "$extra" --conns $((KA_CONNS * w))
		peer_stop
	fi
	SCALE_CPUS="" CLIENT_CPUS=$saved_cpus CLIENT_THREADS=$saved_threads
}

# cpu_range FIRST COUNT: COUNT of the allowed CPUs from index FIRST, as a list for taskset,
# --cores and --cpus.
cpu_range() {
	local IFS=,
	echo "${CPU_LIST[*]:$1:$2}"
}

# Tool check (not run by default): wrk and tern-loadgen side by side on keep-alive and bulk
# download, to show which one drives a single-core terminator harder here.
wl_toolcheck() {
	local peer=$1 path conns wl out a b t0 t1
	for wl in keepalive bulk-down; do
		path=/ conns=$KA_CONNS
		[[ $wl == bulk-down ]] && path=/1m conns=$BULK_CONNS
		lg_run "$peer" "toolcheck-$wl" '{"tool": "tern-loadgen"}' --conns "$conns" --path "$path"
		command -v wrk >/dev/null || {
			log "  wrk not installed: no wrk half of the tool check"
			continue
		}
		# wrk takes whole seconds.
		OPENSSL_CONF=$RUN_DIR/conf/wrk-client.cnf bounded 60 taskset -c "$CLIENT_CPUS" \
			wrk -t1 -c"$conns" -d"$(whole_secs "$WARMUP")s" "https://127.0.0.1:$TLS_PORT$path" >/dev/null 2>&1
		a=$(treestat "$PEER_PID")
		t0=$(date +%s.%N)
		out=$(OPENSSL_CONF=$RUN_DIR/conf/wrk-client.cnf bounded 120 taskset -c "$CLIENT_CPUS" \
			wrk -t1 -c"$conns" -d"$(whole_secs "$DURATION")s" "https://127.0.0.1:$TLS_PORT$path" 2>&1)
		t1=$(date +%s.%N)
		b=$(treestat "$PEER_PID")
		out=$("$PY" - "$out" "$a" "$b" "$t0" "$t1" "$peer" "$wl" "$path" <<'EOF'
import json, re, sys
text, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
secs = float(sys.argv[5]) - float(sys.argv[4])
m = re.search(r"^\s*(\d+) requests in", text, re.M)
n = int(m.group(1)) if m else 0
cpu = b["cpu_s"] - a["cpu_s"]
body = 1048576 if sys.argv[8] == "/1m" else 0
mib = n * body / 1048576
print(json.dumps({"peer": sys.argv[6], "workload": "toolcheck-" + sys.argv[7], "tool": "wrk",
    "secs": secs, "requests": n, "rps": n / secs, "mib_in_s": mib / secs, "mib_out_s": 0,
    "server_cpu_s": cpu, "server_busy": cpu / secs,
    "rps_per_cpu_s": n / cpu if cpu else None, "mib_per_cpu_s": mib / cpu if cpu else None,
    "errors": 0 if m else 1, "lat_us": {"p50": None, "p99": None, "p999": None}}))
EOF
		)
		record "$out"
		if [[ $(json_get "$out" requests) == 0 ]]; then
			fail "$peer/toolcheck-$wl: wrk completed no request"
			continue
		fi
		log "  $peer/toolcheck-$wl (wrk): $(json_get "$out" rps) req/s, $(json_get "$out" mib_in_s) MiB/s, terminator CPU $(json_get "$out" server_busy)"
	done
}

whole_secs() { # round up to whole seconds, at least 1
	local s=${1%.*}
	[[ $1 == *.* ]] && s=$((s + 1))
	((s < 1)) && s=1
	echo "$s"
}

wrk_client_conf() {
	# wrk's OpenSSL client offers the same as tern-loadgen: TLS 1.3, AES-128-GCM, X25519.
	cat <<EOF
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = TLS_AES_128_GCM_SHA256
Groups = X25519
MinProtocol = TLSv1.3
EOF
}

# run_workload PEER WORKLOAD (peer already started with wl_config's settings)
run_workload() {
	case $2 in
	hs-ecdsa | hs-rsa) wl_hs "$1" "$2" ;;
	resume) wl_resume "$1" ;;
	keepalive) wl_keepalive "$1" ;;
	bulk-down) wl_bulk_down "$1" ;;
	bulk-up) wl_bulk_up "$1" ;;
	latency) wl_latency "$1" ;;
	idle-mem) wl_idle_mem "$1" ;;
	toolcheck) wl_toolcheck "$1" ;;
	reencrypt) wl_reencrypt "$1" ;;
	esac
}
