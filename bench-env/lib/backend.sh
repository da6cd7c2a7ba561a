# shellcheck shell=bash
# Variables set here are read by the files that source this one:
# shellcheck disable=SC2034
# Test certificates and the backend every terminator forwards to. Sourced by run.sh.
#
# Certificates (in $RUN_DIR/certs): ec.* and rsa.* are the terminators' self-signed ECDSA P-256
# and RSA 2048 certificates; ca.crt is a test CA and backend.* the backend's certificate it
# signed (for the reencrypt workload, whose terminators check the backend against ca.crt).

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
	# The backend's: a CA, and a leaf it signs for localhost and 127.0.0.1.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-keyout "$d/ca.key" -out "$d/ca.crt" -subj "/CN=tern bench-env test CA" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
		2>/dev/null || die "openssl could not make the test CA"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$d/backend.key" -out "$d/backend.csr" -subj /CN=localhost 2>/dev/null ||
		die "openssl could not make the backend's key"
	printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
		"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$d/backend.ext"
	openssl x509 -req -in "$d/backend.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -set_serial 2 \
		-days 30 -extfile "$d/backend.ext" -out "$d/backend.crt" 2>/dev/null ||
		die "openssl could not sign the backend's certificate"
}

# ---------------------------------------------------------------- backend (nginx)
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

backend_locations() { # WWW
	cat <<EOF
        root $1;
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
EOF
}

# With BACKEND_TLS_PORT set (the reencrypt workload), the same site is served over HTTPS there
# too, with the CA-signed certificate, sessions resumable (cache and tickets), as a backend
# would be.
backend_tls_server() {
	[[ -n ${BACKEND_TLS_PORT:-} ]] || return 0
	cat <<EOF
    server {
        listen 127.0.0.1:$BACKEND_TLS_PORT ssl backlog=4096;
        ssl_certificate $RUN_DIR/certs/backend.crt;
        ssl_certificate_key $RUN_DIR/certs/backend.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:BACKEND:20m;
        ssl_session_tickets on;
$(backend_locations "$1")
    }
EOF
}

# With BACKEND_SOCK set (the unix workload), the plain site also listens on that Unix socket.
backend_unix_listen() {
	[[ -n ${BACKEND_SOCK:-} ]] || return 0
	printf '        listen unix:%s backlog=4096;' "$BACKEND_SOCK"
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
$(backend_unix_listen)
$(backend_locations "$www")
    }
$(backend_tls_server "$www")
}
EOF
	start_bg backend "$BACKEND_CPUS" nginx -c "$c" -e "$RUN_DIR/logs/backend-error.log"
	BACKEND_PID=$BG_PID
	wait_port "$BACKEND_PORT" "$BACKEND_PID" 10 || die "backend nginx did not start (see $RUN_DIR/logs/backend.log)"
	curl -fsS -o /dev/null "http://127.0.0.1:$BACKEND_PORT/" || die "backend answers no GET /"
	curl -fsS -o /dev/null -X POST --data-binary @"$www/1m" "http://127.0.0.1:$BACKEND_PORT/upload" ||
		die "backend answers no POST /upload"
	if [[ -n ${BACKEND_SOCK:-} ]]; then
		curl -fsS -o /dev/null --unix-socket "$BACKEND_SOCK" "http://localhost/" ||
			die "backend answers no GET / on unix:$BACKEND_SOCK"
	fi
	if [[ -n ${BACKEND_TLS_PORT:-} ]]; then
		# Checked against the test CA, by name, as the terminators will.
		curl -fsS -o /dev/null --cacert "$RUN_DIR/certs/ca.crt" \
			--resolve "localhost:$BACKEND_TLS_PORT:127.0.0.1" "https://localhost:$BACKEND_TLS_PORT/" ||
			die "backend answers no GET / over HTTPS on $BACKEND_TLS_PORT (with the test CA)"
	fi
}

# backend_pin CPULIST: move the running backend (master and worker) to other CPUs.
backend_pin() {
	local p
	for p in $BACKEND_PID $(descendants "$BACKEND_PID"); do
		taskset -a -p -c "$1" "$p" >/dev/null 2>&1 || log "could not move backend pid $p to CPUs $1"
	done
}
