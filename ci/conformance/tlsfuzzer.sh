#!/usr/bin/env bash
# TLS conformance of tern against tlsfuzzer, an independent test suite: the scripts in
# tlsfuzzer.list run against two local tern instances in tcp mode (default certificate RSA,
# and ECDSA), each in front of a tiny backend that answers `GET / HTTP/1.0` with one write.
# Exit status 0 only when every probe passed or failed exactly as the list expects.
#
#   ci/conformance/tlsfuzzer.sh [--only SUBSTRING]
#
# Environment:
#   TLSFUZZER_SRC   tlsfuzzer source tree (default: ../shared/vendor/tlsfuzzer from the repo root)
#   TERN_BIN        tern binary to test (default: `cargo build`, target/debug/tern)
#   CONFORMANCE_DIR work directory: venv, certificates, logs (default: target/conformance)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/ci/conformance
src=${TLSFUZZER_SRC:-$root/../shared/vendor/tlsfuzzer}
work=${CONFORMANCE_DIR:-$root/target/conformance}
venv=$work/venv-tlsfuzzer
mkdir -p "$work"

if [ ! -f "$src/setup.py" ] || [ ! -d "$src/tlsfuzzer/_apps" ]; then
    echo "tlsfuzzer.sh: no tlsfuzzer source at $src (set TLSFUZZER_SRC)" >&2
    exit 2
fi

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# The suite in its own venv: tlslite-ng from PyPI, tlsfuzzer from the vendored source (copied
# first, so that pip's in-tree build writes nothing into the source tree).
if ! "$venv/bin/python" -c 'import tlsfuzzer.runner, tlslite' 2>/dev/null; then
    echo "== installing tlsfuzzer into $venv"
    rm -rf "$venv" "$work/tlsfuzzer-src"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "tlslite-ng==0.9.0b2" "ecdsa>=0.19" kyber-py zstd
    cp -r "$src" "$work/tlsfuzzer-src"
    rm -rf "$work/tlsfuzzer-src/build" "$work/tlsfuzzer-src"/*.egg-info
    "$venv/bin/pip" install -q "$work/tlsfuzzer-src"
fi

if [ -n "${TERN_BIN:-}" ]; then
    tern=$TERN_BIN
else
    (cd "$root" && cargo build --quiet --bin tern)
    tern=${CARGO_TARGET_DIR:-$root/target}/debug/tern
fi

# Throwaway certificates: RSA 2048 and ECDSA P-256, self-signed for localhost.
certs=$work/certs
mkdir -p "$certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/rsa.key" -out "$certs/rsa.pem" \
    -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$certs/ecdsa.key" \
    -out "$certs/ecdsa.pem" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null

logs=$work/tlsfuzzer-logs
rm -rf "$logs"
mkdir -p "$logs"

# The backend: answers each connection's request head with one write, then closes.
"$venv/bin/python" -u "$here/backend.py" > "$logs/backend.port" 2> "$logs/backend.log" &
pids+=($!)

# Waits (bounded) for a line matching $2 in file $1 written by process $3, and prints the
# line's last word.
wait_line() {
    for _ in $(seq 200); do
        if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
            break
        fi
        if line=$(grep -m1 -- "$2" "$1" 2>/dev/null); then
            echo "${line##* }"
            return 0
        fi
        sleep 0.1
    done
    echo "tlsfuzzer.sh: no '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}
backend=$(wait_line "$logs/backend.port" "^port " "$!")

# One worker, so that TLS 1.2 session-ID resumption always meets the worker holding the session
# (the cache is per worker by design; tickets work across workers). A long handshake timeout:
# tlsfuzzer connects before it builds a probe's ClientHello, and building a 16 MiB one can
# take longer than the default 10 s on a loaded machine.
ports=()
for kind in rsa ecdsa; do
    "$tern" --listen 127.0.0.1:0 --cert "$certs/$kind.pem" --key "$certs/$kind.key" \
        --backend "127.0.0.1:$backend" --mode tcp --workers 1 --handshake-timeout 60s \
        -v > "$logs/tern-$kind.log" 2>&1 &
    pids+=($!)
    addr=$(wait_line "$logs/tern-$kind.log" "listening on " "$!")
    ports+=(--port "$kind=${addr##*:}")
done

status=0
"$venv/bin/python" "$here/tlsfuzzer_run.py" --list "$here/tlsfuzzer.list" \
    --apps "$src/tlsfuzzer/_apps" --python "$venv/bin/python" --logs "$logs" \
    "${ports[@]}" "$@" || status=$?

# A probe may pass while tern logged a panic (caught per connection): that is a bug too.
for kind in rsa ecdsa; do
    if grep -q "panicked" "$logs/tern-$kind.log"; then
        echo "FAIL: tern ($kind) panicked; see $logs/tern-$kind.log" >&2
        grep -m3 -A2 "panicked at" "$logs/tern-$kind.log" >&2
        status=1
    fi
done
# Both instances must have lived through it.
for pid in "${pids[@]:1}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "FAIL: a tern instance exited during the run (logs in $logs)" >&2
        status=1
    fi
done
exit "$status"
