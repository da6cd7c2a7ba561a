#!/usr/bin/env bash
# testssl.sh against tern's defaults: two local instances (RSA and ECDSA certificates from a
# throwaway CA, passed to testssl with --add-ca) in tcp mode before a tiny backend, scanned
# for protocols, cipher categories and every cipher per protocol, forward secrecy, server
# preferences, server defaults and vulnerabilities. Exits non-zero on any finding of severity
# LOW or worse that testssl_judge.py does not explain (it names each explained id and why).
# HTTP header checks are left out: in tcp mode the headers are the backend's, not tern's.
#
# Environment:
#   TESTSSL         testssl binary (default: testssl or testssl.sh on PATH)
#   TERN_BIN        tern binary to test (default: `cargo build`, target/debug/tern)
#   CONFORMANCE_DIR work directory (default: target/conformance)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/ci/conformance
work=${CONFORMANCE_DIR:-$root/target/conformance}/testssl
testssl=${TESTSSL:-$(command -v testssl || command -v testssl.sh || true)}
if [ -z "$testssl" ]; then
    echo "testssl.sh: no testssl on PATH (Debian: apt-get install testssl.sh; or set TESTSSL)" >&2
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

if [ -n "${TERN_BIN:-}" ]; then
    tern=$TERN_BIN
else
    (cd "$root" && cargo build --quiet --bin tern)
    tern=${CARGO_TARGET_DIR:-$root/target}/debug/tern
fi

rm -rf "$work"
mkdir -p "$work"
cd "$work"

# A CA per key type and a leaf for localhost and 127.0.0.1, valid for 200 days; tern serves
# leaf + CA, testssl trusts the CA.
for kind in rsa ecdsa; do
    if [ "$kind" = rsa ]; then
        newkey=(-newkey rsa:2048)
        usage=digitalSignature,keyEncipherment
    else
        newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
        usage=digitalSignature
    fi
    openssl req -x509 "${newkey[@]}" -nodes -keyout "ca-$kind.key" -out "ca-$kind.pem" \
        -days 200 -subj "/CN=tern test CA ($kind)" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
    openssl req "${newkey[@]}" -nodes -keyout "$kind.key" -out "$kind.csr" -subj /CN=localhost \
        2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,$usage" "extendedKeyUsage=serverAuth" > "$kind.ext"
    openssl x509 -req -in "$kind.csr" -CA "ca-$kind.pem" -CAkey "ca-$kind.key" -CAcreateserial \
        -days 200 -extfile "$kind.ext" -out "$kind.pem" 2>/dev/null
    cat "$kind.pem" "ca-$kind.pem" > "$kind-chain.pem"
done

python3 -u "$here/backend.py" > backend.port 2> backend.log &
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
    echo "testssl.sh: no '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}
backend=$(wait_line backend.port "^port " "$!")

# tern's defaults: only the addresses, certificate and backend are given.
declare -A port
for kind in rsa ecdsa; do
    "$tern" --listen 127.0.0.1:0 --cert "$kind-chain.pem" --key "$kind.key" \
        --backend "127.0.0.1:$backend" > "tern-$kind.log" 2>&1 &
    pids+=($!)
    addr=$(wait_line "tern-$kind.log" "listening on " "$!")
    port[$kind]=${addr##*:}
done

# Both scans at once (about 2 minutes each on a 2-core machine).
started=$(date +%s)
scans=()
for kind in rsa ecdsa; do
    timeout 300 "$testssl" --quiet --color 0 --warnings off --nodns min --openssl-timeout 10 \
        --add-ca "$work/ca-$kind.pem" --jsonfile "$work/$kind.json" \
        --protocols --std --cipher-per-proto --fs --server-preference --server-defaults \
        --vulnerable "127.0.0.1:${port[$kind]}" > "testssl-$kind.txt" 2>&1 &
    scans+=($!)
done
status=0
for pid in "${scans[@]}"; do
    wait "$pid" || true   # testssl's exit status counts findings; the judge decides
done
echo "== testssl scans took $(( $(date +%s) - started ))s (reports in $work/testssl-*.txt)"

python3 "$here/testssl_judge.py" "rsa=$work/rsa.json" "ecdsa=$work/ecdsa.json" || status=1

# Ticket resumption, checked directly (testssl's TLS 1.3 check races the ticket): a client
# that reads the response gets the ticket, and a second connection presenting it is resumed.
for kind in rsa ecdsa; do
    for version in -tls1_3 -tls1_2; do
        rm -f sess
        for attempt in first second; do
            if [ "$attempt" = first ]; then sess=(-sess_out sess); else sess=(-sess_in sess); fi
            printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect \
                "127.0.0.1:${port[$kind]}" -servername localhost "$version" -ign_eof \
                -CAfile "ca-$kind.pem" "${sess[@]}" > "resume-$kind$version-$attempt.txt" 2>&1 || true
        done
        if grep -q '^Reused' "resume-$kind$version-second.txt"; then
            echo "resumption [$kind] ${version#-} by ticket: ok"
        else
            echo "FAIL resumption [$kind] ${version#-} by ticket: not resumed" \
                "(see $work/resume-$kind$version-second.txt)" >&2
            status=1
        fi
    done
done
exit "$status"
