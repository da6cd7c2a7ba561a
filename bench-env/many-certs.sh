#!/usr/bin/env bash
# bench-env/many-certs.sh [N] [WORKERS]: how long tern takes to start and to reload with N
# certificates (default 10,000, one worker per CPU), each its own PEM file in one --pem DIR.
#
# Prints the time from exec to "tern ready", tern's RSS once ready, the time a SIGHUP reload
# takes (tern's own "reloaded in X ms"), and checks that a name from the middle of the set is
# served its own certificate. TERN_BIN=/path/tern measures that binary instead of building.
set -euo pipefail
N=${1:-10000}
WORKERS=${2:-}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [[ -z ${TERN_BIN:-} ]]; then
	cargo build --release --quiet
	TERN_BIN=$ROOT/target/release/tern
fi
cargo build --release --quiet -p tern-loadgen
LOADGEN=$ROOT/target/release/tern-loadgen

work=$(mktemp -d)
tern_pid=""
cleanup() {
	[[ -n $tern_pid ]] && kill "$tern_pid" 2>/dev/null && wait "$tern_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

t0=$(date +%s.%N)
"$LOADGEN" gencerts "$work/certs" "$N" >/dev/null
t1=$(date +%s.%N)
echo "generated $N certificates in $(echo "$t1 - $t0" | bc) s"

args=(--listen 127.0.0.1:0 --pem "$work/certs" --backend 127.0.0.1:9)
[[ -n $WORKERS ]] && args+=(--workers "$WORKERS")
log=$work/tern.log
start=$(date +%s.%N)
"$TERN_BIN" "${args[@]}" 2>"$log" &
tern_pid=$!
for _ in $(seq 1 6000); do
	grep -q "tern ready" "$log" && break
	kill -0 "$tern_pid" 2>/dev/null || { cat "$log"; exit 1; }
	sleep 0.01
done
ready=$(date +%s.%N)
grep -q "tern ready" "$log" || { echo "tern not ready after 60 s"; exit 1; }
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f2)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$tern_pid/status")
echo "start-up to ready: $(echo "$ready - $start" | bc) s; RSS $((rss / 1024)) MiB"

mid=$((N / 2))
subject=$(openssl s_client -connect "127.0.0.1:$port" -servername "host$mid.example" </dev/null 2>/dev/null |
	openssl x509 -noout -ext subjectAltName 2>/dev/null | tr -d ' ' | tail -1)
[[ $subject == "DNS:host$mid.example" ]] || { echo "host$mid.example got: $subject"; exit 1; }
echo "host$mid.example is served its own certificate"

kill -HUP "$tern_pid"
for _ in $(seq 1 12000); do
	grep -q "reloaded in" "$log" && break
	sleep 0.01
done
grep -o "reloaded in [0-9]* ms" "$log" || { echo "no reload after 120 s"; tail -5 "$log"; exit 1; }
