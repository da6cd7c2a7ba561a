# shellcheck shell=bash
# Variables set here are read by the files that source this one:
# shellcheck disable=SC2034
# Every terminator (tern and its peers) and the plaintext forwarders beside them: configuration,
# start, readiness probe, stop. Sourced by run.sh. All listen on 127.0.0.1 only.
#
# Same settings for every terminator: one worker (process or thread) pinned to $TERM_CPUS, TLS 1.2
# and 1.3, the certificate given (ECDSA P-256 or RSA 2048), session tickets and the session cache
# off for full-handshake runs (TICKETS=off) and on otherwise, generous timeouts, access logs off.
#
# PEER_BACKEND=tls (set by the reencrypt workload) makes each terminator forward over TLS to the
# backend's HTTPS port ($BACKEND_TLS_PORT), checking its certificate against the test CA.
# PEER_BACKEND=unix (the unix workload, tern and tern-http only) makes tern reach the same plain
# backend over its Unix socket ($BACKEND_SOCK) instead of 127.0.0.1:$BACKEND_PORT.

ALL_PEERS="tern nginx-stream haproxy-tcp hitch tern-http nginx-http haproxy-http nginx-stream-plain haproxy-tcp-plain bare-crypto"
# The reference rows: forwarding plain HTTP without TLS, and only where that means something.
# hs-ecdsa's plain row is a new TCP connection per request (accept, backend connect, one
# request, both closes): what a full handshake costs a terminator besides the TLS itself.
PLAIN_WORKLOADS="hs-ecdsa keepalive bulk-down bulk-up"
# Seconds a freshly started terminator gets for its first successful request.
PROBE_SECS=${TERN_BENCH_PROBE_SECS:-10}

is_plain() { [[ $1 == *-plain ]]; }

peer_binary() {
	case $1 in
	tern | tern-http) echo "$TERN" ;;
	nginx-*) echo nginx ;;
	haproxy-*) echo haproxy ;;
	hitch) echo hitch ;;
	esac
}

# Does PEER take part in WORKLOAD? (bare-crypto is its own step: crypto_row.)
peer_runs() { # PEER WORKLOAD
	case $1 in
	*-plain) [[ " $PLAIN_WORKLOADS " == *" $2 "* ]] ;;
	bare-crypto) return 1 ;;
	*) return 0 ;;
	esac
}

# Why a peer cannot run here (empty if it can).
peer_unavailable() {
	local p=$1
	case $p in
	tern | tern-http) [[ -x $TERN ]] || {
		echo "tern binary missing ($TERN)"
		return
	} ;;
	nginx-stream | nginx-stream-plain) [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || {
		echo "libnginx-mod-stream not installed"
		return
	} ;;
	bare-crypto)
		[[ -x ${BENCH_TLS:-} ]] || echo "no build of benches/tls.rs (${BENCH_TLS_WHY:-cargo bench --bench tls --no-run})"
		return
		;;
	*) command -v "$(peer_binary "$p")" >/dev/null || {
		echo "$(peer_binary "$p") not installed"
		return
	} ;;
	esac
	if [[ $p == tern-http ]]; then
		# tern's http mode: included only once `tern --mode http` starts.
		tern_trial --mode http --backend "127.0.0.1:$BACKEND_PORT" ||
			echo "tern --mode http does not start ($TRIAL_OUT)"
	fi
}

# tern_trial ARGS...: does tern start (still running after 3 s) with these arguments? The
# cause of a refusal goes to TRIAL_OUT (exit code and the first line of output).
tern_trial() {
	local out rc
	out=$(timeout -k 2 3 "$TERN" --listen "127.0.0.1:$TLS_PORT" --cert "$RUN_DIR/certs/ec.crt" \
		--key "$RUN_DIR/certs/ec.key" --workers 1 -q "$@" 2>&1)
	rc=$?
	TRIAL_OUT="exit $rc: ${out%%$'\n'*}"
	# timeout's 124 means it was still running after 3 s: it started.
	[[ $rc == 124 ]]
}

# Why tern cannot reach the backend over a Unix socket (empty if it can): a binary from before
# `--backend unix:PATH` refuses the address.
unix_unavailable() {
	wait_port_free "$TLS_PORT" 10 || {
		echo "port $TLS_PORT still busy"
		return
	}
	tern_trial --backend "unix:$BACKEND_SOCK" ||
		echo "tern --backend unix:PATH does not start ($TRIAL_OUT)"
}

# Why a peer cannot forward over TLS to the backend (empty if it can).
reencrypt_unavailable() {
	case $1 in
	hitch) echo "hitch cannot encrypt towards its backend" ;;
	*-plain | bare-crypto) echo "not a TLS terminator" ;;
	tern | tern-http)
		local mode=tcp
		[[ $1 == tern-http ]] && mode=http
		if ! tern_trial --mode "$mode" --backend "127.0.0.1:$BACKEND_TLS_PORT" --backend-tls \
			--backend-ca "$RUN_DIR/certs/ca.crt"; then
			# clap names the flag it does not know; anything else is a start-up failure.
			if [[ $TRIAL_OUT == *"unexpected argument"* || $TRIAL_OUT == *"--backend-tls"* ]]; then
				echo "tern lacks --backend-tls"
			else
				echo "tern --backend-tls does not start ($TRIAL_OUT)"
			fi
		fi
		;;
	esac
}

nginx_ssl_lines() { # CERT TICKETS
	local cache=off
	[[ $2 == on ]] && cache="shared:SSL:20m"
	cat <<EOF
        ssl_certificate $RUN_DIR/certs/$1.crt;
        ssl_certificate_key $RUN_DIR/certs/$1.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets $2;
        ssl_session_cache $cache;
EOF
}

# nginx towards a TLS backend: the certificate checked against the test CA and the name
# localhost, sessions to the backend resumed.
nginx_proxy_ssl_lines() {
	cat <<EOF
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate $RUN_DIR/certs/ca.crt;
        proxy_ssl_name localhost;
        proxy_ssl_server_name on;
        proxy_ssl_session_reuse on;
        proxy_ssl_protocols TLSv1.2 TLSv1.3;
EOF
}

nginx_conf() { # MODE(stream|stream-plain|http) CERT TICKETS
	local tmp=$RUN_DIR/tmp/nginx ssl=" ssl" be_port=$BACKEND_PORT
	mkdir -p "$tmp"
	[[ ${PEER_BACKEND:-plain} == tls ]] && be_port=$BACKEND_TLS_PORT
	cat <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $RUN_DIR/tmp/nginx.pid;
error_log $RUN_DIR/logs/nginx-error.log error;
EOF
	if [[ $1 == stream* ]]; then
		[[ $1 == stream-plain ]] && ssl=""
		cat <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events { worker_connections $((NOFILE - 100)); multi_accept on; }
stream {
    server {
        listen 127.0.0.1:$TLS_PORT$ssl backlog=4096;
$([[ -n $ssl ]] && nginx_ssl_lines "$2" "$3")
        proxy_pass 127.0.0.1:$be_port;
$([[ ${PEER_BACKEND:-plain} == tls ]] && echo "        proxy_ssl on;" && nginx_proxy_ssl_lines)
        proxy_timeout 600s;
    }
}
EOF
	else
		local scheme=http
		[[ ${PEER_BACKEND:-plain} == tls ]] && scheme=https
		cat <<EOF
events { worker_connections $((NOFILE - 100)); multi_accept on; }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    upstream backend { server 127.0.0.1:$be_port; keepalive 128; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$TLS_PORT ssl backlog=4096;
$(nginx_ssl_lines "$2" "$3")
        client_max_body_size 2m;
        location / {
            proxy_pass $scheme://backend;
$([[ $scheme == https ]] && nginx_proxy_ssl_lines)
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            # Stream bodies both ways through memory, never through temp files.
            proxy_request_buffering off;
            proxy_buffers 16 64k;
            proxy_busy_buffers_size 128k;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
	fi
}

haproxy_conf() { # MODE(tcp|tcp-plain|http) CERT TICKETS
	local opts="ssl-min-ver TLSv1.2" cache="" mode=${1%-plain} bind_ssl=" ssl crt $RUN_DIR/certs/$2.pem"
	local maxconn=$(((NOFILE - 100) / 2)) pipes=""
	[[ $3 == off ]] && opts+=" no-tls-tickets" && cache="tune.ssl.cachesize 0"
	if [[ $1 == tcp-plain ]]; then
		# Each splice pipe holds two descriptors too: room for 1,024 of them in the fd limit.
		bind_ssl="" pipes="maxpipes 1024" maxconn=$(((NOFILE - 100 - 2048) / 2))
	fi
	cat <<EOF
global
    nbthread 1
    maxconn $maxconn
    $pipes
    $cache
    ssl-default-bind-options $opts
    log stderr format raw local0 err
defaults
    mode $mode
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
    timeout http-request 30s
EOF
	# Plain forwarding may move bytes socket to socket in the kernel (splice), as it would in
	# production; with TLS on either side the bytes pass through HAProxy, so it is not offered.
	[[ $1 == tcp-plain ]] && printf '    option splice-auto\n'
	cat <<EOF
frontend fe
    bind 127.0.0.1:$TLS_PORT$bind_ssl
    default_backend be
EOF
	[[ $mode == http ]] && printf '    option forwardfor\n    http-request set-header X-Forwarded-Proto https\n'
	printf 'backend be\n'
	[[ $mode == http ]] && printf '    http-reuse always\n'
	if [[ ${PEER_BACKEND:-plain} == tls ]]; then
		# HAProxy resumes its TLS sessions to a server by default.
		printf '    server s1 127.0.0.1:%s ssl verify required ca-file %s sni str(localhost) verifyhost localhost\n' \
			"$BACKEND_TLS_PORT" "$RUN_DIR/certs/ca.crt"
	else
		printf '    server s1 127.0.0.1:%s\n' "$BACKEND_PORT"
	fi
}

hitch_conf() { # CERT   (hitch has no switch for tickets or its session cache)
	cat <<EOF
frontend = "[127.0.0.1]:$TLS_PORT"
backend = "[127.0.0.1]:$BACKEND_PORT"
pem-file = "$RUN_DIR/certs/$1.pem"
workers = 1
backlog = 4096
daemon = off
tls-protos = TLSv1.2 TLSv1.3
keepalive = 3600
user = "nobody"
group = "nogroup"
EOF
}

# OpenSSL-based peers read this (OPENSSL_CONF) in full-handshake runs: NumTickets = 0 stops the
# TLS 1.3 NewSessionTicket messages that nginx, HAProxy and hitch otherwise send (2 per
# connection) even with their own ticket switches off, and hitch has no such switch at all.
openssl_notickets_conf() {
	cat <<EOF
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
NumTickets = 0
Options = -SessionTicket
EOF
}

# peer_start PEER CERT(ec|rsa) TICKETS(on|off) [WORKERS] -> PEER_PID; fails (returns 1) with a
# log line if it does not come up and answer a request (a TLS one with a valid handshake
# signature). Pinned to $TERM_CPUS, or to $SCALE_CPUS while the scaling workload sets it.
peer_start() {
	local p=$1 cert=$2 tickets=$3 workers=${4:-1} cpus=${SCALE_CPUS:-$TERM_CPUS} conf
	wait_port_free "$TLS_PORT" 10 || {
		fail "$p: port $TLS_PORT still busy"
		return 1
	}
	conf=$RUN_DIR/conf/$p.conf
	[[ ${PEER_BACKEND:-plain} == tls ]] && conf=$RUN_DIR/conf/$p-reencrypt.conf
	local ossl=${OPENSSL_CONF:-/etc/ssl/openssl.cnf}
	if [[ $tickets == off ]]; then
		ossl=$RUN_DIR/conf/openssl-notickets.cnf
		openssl_notickets_conf >"$ossl"
	fi
	case $p in
	tern | tern-http)
		local mode=tcp backend=(--backend "127.0.0.1:$BACKEND_PORT")
		[[ $p == tern-http ]] && mode=http
		[[ ${PEER_BACKEND:-plain} == tls ]] && backend=(--backend "127.0.0.1:$BACKEND_TLS_PORT"
			--backend-tls --backend-ca "$RUN_DIR/certs/ca.crt")
		[[ ${PEER_BACKEND:-plain} == unix ]] && backend=(--backend "unix:$BACKEND_SOCK")
		# --cores: the CPUs of $cpus, one worker each.
		start_bg "$p" "$cpus" "$TERN" --listen "127.0.0.1:$TLS_PORT" \
			--cert "$RUN_DIR/certs/$cert.crt" --key "$RUN_DIR/certs/$cert.key" \
			"${backend[@]}" --mode "$mode" --workers "$workers" \
			--cores "$cpus" --tickets "$tickets" --idle-timeout 600s -q ${TERN_FLAGS:-}
		;;
	nginx-stream | nginx-http | nginx-stream-plain)
		nginx_conf "${p#nginx-}" "$cert" "$tickets" >"$conf"
		OPENSSL_CONF=$ossl start_bg "$p" "$cpus" nginx -c "$conf" -e "$RUN_DIR/logs/nginx-error.log"
		;;
	haproxy-tcp | haproxy-http | haproxy-tcp-plain)
		haproxy_conf "${p#haproxy-}" "$cert" "$tickets" >"$conf"
		OPENSSL_CONF=$ossl start_bg "$p" "$cpus" haproxy -db -f "$conf"
		;;
	hitch)
		hitch_conf "$cert" >"$conf"
		OPENSSL_CONF=$ossl start_bg "$p" "$cpus" hitch --config="$conf"
		;;
	*)
		fail "unknown peer $p"
		return 1
		;;
	esac
	PEER_PID=$BG_PID
	if ! wait_port "$TLS_PORT" "$PEER_PID" 15; then
		fail "$p did not start listening (see $RUN_DIR/logs/$p.log)"
		stop_bg "$PEER_PID"
		return 1
	fi
	if ! probe "$p"; then
		fail "$p: probe request failed: $PROBE_WHY (see $RUN_DIR/logs/probe.log and $RUN_DIR/logs/$p.log)"
		stop_bg "$PEER_PID"
		return 1
	fi
}

# probe PEER: one request through the freshly started terminator (a full handshake with its
# signature checked, unless plain), tried again until it works or $PROBE_SECS pass. A first
# request can take far longer than the later ones: the port accepts before the process serves,
# and first uses cost (aws-lc seeding its random generator: 30-50 ms, several times that on a
# busy machine). Sets PROBE_WHY on failure.
probe() {
	local p=$1 args=(--verify-sig) deadline=$((SECONDS + PROBE_SECS)) try=0 out
	is_plain "$p" && args=(--plain)
	while :; do
		try=$((try + 1))
		out=$(bounded 20 "$LOADGEN" run --target "127.0.0.1:$TLS_PORT" "${args[@]}" --conns 1 \
			--reqs-per-conn 1 --warmup 0 --duration 0.5 --timeout 5 --label "probe/$p" \
			2>>"$RUN_DIR/logs/probe.log")
		if PROBE_WHY=$("$PY" -c 'import json,sys
r = json.loads(sys.argv[1] or "{}")
if r.get("requests") and not r.get("errors"):
    sys.exit(0)
print("%s requests, %s errors" % (r.get("requests", 0), r.get("errors", "no result: see probe.log")))
sys.exit(1)' "$out"); then
			((try > 1)) && log "  $p: first request answered at try $try"
			return 0
		fi
		echo "probe $p, try $try: $PROBE_WHY" >>"$RUN_DIR/logs/probe.log"
		kill -0 "$PEER_PID" 2>/dev/null || {
			PROBE_WHY="$p exited"
			return 1
		}
		((SECONDS >= deadline)) && {
			PROBE_WHY="$PROBE_WHY at the last of $try tries in ${PROBE_SECS}s"
			return 1
		}
		sleep 0.2
	done
}

peer_stop() {
	[[ -n ${PEER_PID:-} ]] && stop_bg "$PEER_PID"
	PEER_PID=
}
