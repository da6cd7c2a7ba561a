# shellcheck shell=bash
# Variables set here are read by the files that source this one:
# shellcheck disable=SC2034
# Installing, building, and reading the machine: CPU layout, fd limit, run metadata.
# Sourced by run.sh.

APT_PACKAGES="nginx libnginx-mod-stream haproxy hitch wrk gnuplot-nox openssl curl iproute2 procps util-linux python3"

install_packages() {
	local missing=() p sudo=""
	command -v dpkg-query >/dev/null || {
		log "no dpkg: install by hand: $APT_PACKAGES"
		return 0
	}
	for p in $APT_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if ((EUID != 0)); then
		command -v sudo >/dev/null || {
			log "not root and no sudo: cannot install ${missing[*]}"
			return 0
		}
		sudo=sudo
	fi
	log "installing: ${missing[*]}"
	# Keep the packages' own services (nginx and haproxy on :80 and the like) from starting:
	# the harness starts its own, on 127.0.0.1 only.
	local rcd=/usr/sbin/policy-rc.d made_rcd=0
	if [[ ! -e $rcd ]]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$rcd" >/dev/null && $sudo chmod +x "$rcd" && made_rcd=1
	fi
	$sudo apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed"
	local pkg
	for pkg in "${missing[@]}"; do
		# One at a time: a package this release lacks costs only its own peer.
		DEBIAN_FRONTEND=noninteractive bounded 600 $sudo apt-get install -y -qq --no-install-recommends \
			"$pkg" >>"/tmp/tern-bench-apt.log" 2>&1 || log "could not install $pkg (see /tmp/tern-bench-apt.log)"
	done
	((made_rcd)) && $sudo rm -f "$rcd"
	return 0
}

build_binaries() {
	command -v cargo >/dev/null || die "cargo is needed to build tern (https://rustup.rs)"
	log "building tern-loadgen (release)"
	(cd "$ROOT" && bounded 1800 cargo build --release -q -p tern-loadgen) ||
		die "tern-loadgen does not build"
	if [[ -n ${TERN_BIN:-} ]]; then
		log "measuring TERN_BIN=$TERN_BIN (not building tern)"
		return 0
	fi
	log "building tern (release)"
	if ! (cd "$ROOT" && bounded 1800 cargo build --release -q -p tern); then
		# The peers can still be measured; tern's absence is reported as a failure. A binary
		# left from an earlier build is not used: it would not be the tern of this tree.
		log "tern does not build; measuring the peers only"
		TERN_BUILD_FAILED=1
	fi
}

# Which CPUs run what, among the CPUs this process may use (taskset, cgroup cpusets): the
# terminator gets the first; the backend the last; the load generator those between (on 2 cores
# it shares the second with the backend). Default scaling runs tern on the first w CPUs for
# w = 1..SCALE_MAX. CPU_LIST holds the allowed CPUs, NCPU their number.
cpu_layout() {
	local n
	read -r -a CPU_LIST <<<"$("$PY" -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
	n=${#CPU_LIST[@]}
	((n > 0)) || die "cannot read the CPUs this process may use"
	TERM_CPUS=${CPU_LIST[0]}
	if ((n >= 4)); then
		BACKEND_CPUS=${CPU_LIST[n - 1]}
		CLIENT_CPUS=$(cpu_range "$((n / 2))" "$((n - 1 - n / 2))")
		CLIENT_THREADS=$((n - 1 - n / 2))
		SCALE_MAX=$((n / 2))
	elif ((n == 3)); then
		BACKEND_CPUS=${CPU_LIST[2]} CLIENT_CPUS=${CPU_LIST[1]} CLIENT_THREADS=1 SCALE_MAX=2
	elif ((n == 2)); then
		BACKEND_CPUS=${CPU_LIST[1]} CLIENT_CPUS=${CPU_LIST[1]} CLIENT_THREADS=1 SCALE_MAX=2
	else
		BACKEND_CPUS=$TERM_CPUS CLIENT_CPUS=$TERM_CPUS CLIENT_THREADS=1 SCALE_MAX=1
		log "warning: 1 CPU: terminator, backend and load generator share it"
	fi
	SCALE_CPUS=""
	NCPU=$n
	log "CPUs: $(cpu_range 0 "$n"); terminator on $TERM_CPUS, backend on $BACKEND_CPUS, load generator on $CLIENT_CPUS"
}

raise_fd_limit() {
	local hard
	hard=$(ulimit -Hn)
	[[ $hard == unlimited ]] && hard=1048576
	((hard > 1048576)) && hard=1048576
	ulimit -n "$hard" 2>/dev/null || true
	NOFILE=$(ulimit -n)
	if ((NOFILE < 65536)); then
		# Raising the hard limit needs CAP_SYS_RESOURCE; a plain `ulimit -n` cannot.
		ulimit -Hn 65536 2>/dev/null && ulimit -n 65536 2>/dev/null && NOFILE=65536
	fi
	log "open-file limit: $NOFILE"
}

write_meta() {
	"$PY" - "$RUN_DIR/meta.json" <<EOF
import json, platform, subprocess, sys
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or \
            subprocess.run(cmd, capture_output=True, text=True, timeout=10).stderr.strip()
    except Exception:
        return None
meta = {
    "mode": "$MODE", "cpus": $NCPU, "cpu_list": "$(cpu_range 0 "$NCPU")", "kernel": platform.release(),
    "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
    "terminator_cpus": "$TERM_CPUS", "backend_cpus": "$BACKEND_CPUS", "client_cpus": "$CLIENT_CPUS",
    "warmup_s": $WARMUP, "duration_s": $DURATION, "nofile": $NOFILE, "idle_conns": $IDLE_CONNS,
    "lat_rate": $LAT_RATE, "backend_send": "$BACKEND_SEND", "scaling": "${SCALE_LIST:-default}",
    "conns": {"handshake": $HS_CONNS, "keepalive": $KA_CONNS, "bulk": $BULK_CONNS, "latency": $LAT_CONNS},
    "versions": {
        "tern": out("git", "-C", "$ROOT", "describe", "--always", "--dirty"),
        "nginx": out("nginx", "-v"), "haproxy": (out("haproxy", "-v") or "").split("\n")[0],
        "hitch": out("hitch", "--version"), "openssl": out("openssl", "version"),
        "wrk": (out("wrk", "--version") or "").split("\n")[0],
    },
    "client": "tern-loadgen: TLS 1.3, X25519, TLS_AES_128_GCM_SHA256, certificate chain not checked, handshake signature not checked",
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
}
