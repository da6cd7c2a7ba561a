# shellcheck shell=bash
# Variables set here are read by the files that source this one:
# shellcheck disable=SC2034
# Certificates, the backend, and every terminator (tern and its peers): configuration and
# start/stop. Sourced by run.sh. All listen on 127.0.0.1 only.
#
# Same settings for every terminator: one worker (process or thread) pinned to $TERM_CPUS, TLS 1.2
# and 1.3, the certificate given (ECDSA P-256 or RSA 2048), session tickets and the session cache
# off for full-handshake runs (TICKETS=off) and on otherwise, generous timeouts, access logs off.

ALL_PEERS="tern nginx-stream haproxy-tcp hitch tern-http nginx-http haproxy-http"

make_certs() {
	local d=$RUN_DIR/certs
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-keyout "$d/ec.key" -out "$d/ec.crt" -subj /CN=localhost \
		-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null ||
		die "openssl could not make the ECDSA certificate"
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
		-keyout "$d/rsa.key" -out "$d/rsa.crt" -subj /CN=localhost \
		-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null ||
		die "openssl could not make the RSA certificate"
	cat "$d/ec.crt" "$d/ec.key" >"$d/ec.pem"
	cat "$d/rsa.crt" "$d/rsa.key" >"$d/rsa.pem"
}

# ---------------------------------------------------------------- backend (nginx, plain HTTP)
# /      ~100-byte body, from memory (return)
# /1m    1 MiB static file (sendfile)
# /upload  POST up to 2 MiB; the whole body is read, then the answer is 200
# How the backend writes /1m. It changes every terminator's cost per MiB (measured here, 2 cores):
#   write (default)  1 MiB read into 256 KiB buffers and written with write(): large segments;
#   sendfile         sendfile() without TCP_CORK: the data reaches the terminator in far more,
#                    smaller segments, and every terminator spends ~1.5x the CPU per MiB;
#   sendfile+cork    (nginx's tcp_nopush) large segments too, but HAProxy's http mode then stalls
#                    60-100 ms on reused backend connections: not used.
backend_send_mode() {
	if [[ ${BACKEND_SEND:-write} == sendfile ]]; then
		printf '    sendfile on;\n    tcp_nopush off;'
	else
		printf '    sendfile off;\n    output_buffers 2 256k;\n    tcp_nopush off;'
	fi
}

backend_start() {
	local c=$RUN_DIR/conf/backend.conf www=$RUN_DIR/www tmp=$RUN_DIR/tmp/backend
	mkdir -p "$www" "$tmp"
	head -c 1048576 /dev/zero | tr '\0' 'a' >"$www/1m"
	cat >"$c" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $RUN_DIR/tmp/backend.pid;
error_log $RUN_DIR/logs/backend-error.log warn;
events { worker_connections $((NOFILE - 100)); multi_accept on; }
http {
    access_log off;
$(backend_send_mode)
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    default_type application/octet-stream;
    upstream backend_self { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        root $www;
        client_max_body_size 2m;
        location = / { default_type text/plain; return 200 "tern bench-env backend: a small response of about one hundred bytes, ok.\n"; }
        location = /1m { }
        # The whole body is read (into memory) before the answer, as an application would:
        # the proxy module buffers it, then asks this server for the answer without it.
        location = /upload {
            client_body_buffer_size 2m;
            proxy_pass http://backend_self/uploaded;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /uploaded { return 200 "uploaded\n"; }
    }
}
EOF
	start_bg backend "$BACKEND_CPUS" nginx -c "$c" -e "$RUN_DIR/logs/backend-error.log"
	BACKEND_PID=$BG_PID
	wait_port "$BACKEND_PORT" "$BACKEND_PID" 10 || die "backend nginx did not start (see $RUN_DIR/logs/backend.log)"
	curl -fsS -o /dev/null "http://127.0.0.1:$BACKEND_PORT/" || die "backend answers no GET /"
	curl -fsS -o /dev/null -X POST --data-binary @"$www/1m" "http://127.0.0.1:$BACKEND_PORT/upload" ||
		die "backend answers no POST /upload"
}

# ---------------------------------------------------------------- terminators
peer_binary() {
	case $1 in
	tern | tern-http) echo "$TERN" ;;
	nginx-*) echo nginx ;;
	haproxy-*) echo haproxy ;;
	hitch) echo hitch ;;
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
	nginx-stream) [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || {
		echo "libnginx-mod-stream not installed"
		return
	} ;;
	*) command -v "$(peer_binary "$p")" >/dev/null || {
		echo "$(peer_binary "$p") not installed"
		return
	} ;;
	esac
	if [[ $p == tern-http ]]; then
		# tern's http mode: included only once `tern --mode http` starts.
		local out rc
		out=$(timeout -k 2 3 "$TERN" --mode http --listen "127.0.0.1:$TLS_PORT" \
			--cert "$RUN_DIR/certs/ec.crt" --key "$RUN_DIR/certs/ec.key" \
			--backend "127.0.0.1:$BACKEND_PORT" --workers 1 -q 2>&1)
		rc=$?
		# timeout's 124 means it was still running after 3 s: it started.
		[[ $rc == 124 ]] || echo "tern --mode http does not start (exit $rc: ${out%%$'\n'*})"
	fi
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

nginx_conf() { # MODE(stream|http) CERT TICKETS
	local tmp=$RUN_DIR/tmp/nginx
	mkdir -p "$tmp"
	cat <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $RUN_DIR/tmp/nginx.pid;
error_log $RUN_DIR/logs/nginx-error.log error;
EOF
	if [[ $1 == stream ]]; then
		cat <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events { worker_connections $((NOFILE - 100)); multi_accept on; }
stream {
    server {
        listen 127.0.0.1:$TLS_PORT ssl backlog=4096;
$(nginx_ssl_lines "$2" "$3")
        proxy_pass 127.0.0.1:$BACKEND_PORT;
        proxy_timeout 600s;
    }
}
EOF
	else
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
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$TLS_PORT ssl backlog=4096;
$(nginx_ssl_lines "$2" "$3")
        client_max_body_size 2m;
        location / {
            proxy_pass http://backend;
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

haproxy_conf() { # MODE(tcp|http) CERT TICKETS
	local opts="ssl-min-ver TLSv1.2" cache=""
	[[ $3 == off ]] && opts+=" no-tls-tickets" && cache="tune.ssl.cachesize 0"
	cat <<EOF
global
    nbthread 1
    maxconn $(((NOFILE - 100) / 2))
    $cache
    ssl-default-bind-options $opts
    log stderr format raw local0 err
defaults
    mode $1
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
    timeout http-request 30s
frontend fe
    bind 127.0.0.1:$TLS_PORT ssl crt $RUN_DIR/certs/$2.pem
    default_backend be
EOF
	[[ $1 == http ]] && printf '    option forwardfor\n    http-request set-header X-Forwarded-Proto https\n'
	printf 'backend be\n'
	[[ $1 == http ]] && printf '    http-reuse always\n'
	printf '    server s1 127.0.0.1:%s\n' "$BACKEND_PORT"
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
# log line if it does not come up and answer a TLS request with a valid handshake signature.
peer_start() {
	local p=$1 cert=$2 tickets=$3 workers=${4:-1} cpus=$TERM_CPUS conf
	[[ $workers -gt 1 ]] && cpus=$SCALE_CPUS
	wait_port_free "$TLS_PORT" 10 || {
		fail "$p: port $TLS_PORT still busy"
		return 1
	}
	conf=$RUN_DIR/conf/$p.conf
	local ossl=${OPENSSL_CONF:-/etc/ssl/openssl.cnf}
	if [[ $tickets == off ]]; then
		ossl=$RUN_DIR/conf/openssl-notickets.cnf
		openssl_notickets_conf >"$ossl"
	fi
	case $p in
	tern | tern-http)
		local mode=tcp
		[[ $p == tern-http ]] && mode=http
		# --cores: the CPUs of $cpus, one worker each.
		start_bg "$p" "$cpus" "$TERN" --listen "127.0.0.1:$TLS_PORT" \
			--cert "$RUN_DIR/certs/$cert.crt" --key "$RUN_DIR/certs/$cert.key" \
			--backend "127.0.0.1:$BACKEND_PORT" --mode "$mode" --workers "$workers" \
			--cores "$cpus" --tickets "$tickets" --idle-timeout 600s -q
		;;
	nginx-stream | nginx-http)
		nginx_conf "${p#nginx-}" "$cert" "$tickets" >"$conf"
		OPENSSL_CONF=$ossl start_bg "$p" "$cpus" nginx -c "$conf" -e "$RUN_DIR/logs/nginx-error.log"
		;;
	haproxy-tcp | haproxy-http)
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
	# Probe: one request, full handshake, server signature checked.
	if ! bounded 20 "$LOADGEN" run --target "127.0.0.1:$TLS_PORT" --verify-sig --conns 1 \
		--reqs-per-conn 1 --warmup 0 --duration 0.2 --timeout 5 2>>"$RUN_DIR/logs/probe.log" |
		"$PY" -c 'import json,sys; r=json.loads(sys.stdin.read() or "{}"); sys.exit(0 if r.get("requests") and not r.get("errors") else 1)'; then
		fail "$p: probe request failed (see $RUN_DIR/logs/probe.log and $RUN_DIR/logs/$p.log)"
		stop_bg "$PEER_PID"
		return 1
	fi
}

peer_stop() {
	[[ -n ${PEER_PID:-} ]] && stop_bg "$PEER_PID"
	PEER_PID=
}
