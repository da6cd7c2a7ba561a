# shellcheck shell=bash
# Variables set here are read by the files that source this one:
# shellcheck disable=SC2034
# The bare-crypto row: what TLS alone costs one core here, with no sockets, no kernel and no
# proxy around it, from criterion's in-memory benches of tern's tls layer (benches/tls.rs, group
# bench_env: server side only, in the thread's CPU time, negotiating what tern-loadgen offers:
# TLS 1.3, X25519, TLS_AES_128_GCM_SHA256):
#   hs-ecdsa   bench_env/handshake/ecdsa_p256   handshakes per CPU-s = 1 s / median
#   hs-rsa     bench_env/handshake/rsa2048
#   bulk-down  bench_env/seal_16k               MiB per CPU-s = 16 KiB / median (the server seals)
#   bulk-up    bench_env/open_16k               (the server opens)
# Run pinned to the terminators' CPU ($TERM_CPUS) once the terminators are done. Sourced by run.sh.

CRYPTO_BENCHES="hs-ecdsa=bench_env/handshake/ecdsa_p256
hs-rsa=bench_env/handshake/rsa2048
bulk-down=bench_env/seal_16k
bulk-up=bench_env/open_16k"

# build_bench_tls: builds benches/tls.rs (release profile) and sets BENCH_TLS to its executable;
# with --no-build, takes the newest one already built. BENCH_TLS_WHY says why there is none.
build_bench_tls() {
	BENCH_TLS="" BENCH_TLS_WHY=""
	if ((BUILD)); then
		log "building benches/tls.rs (cargo bench --no-run)"
		local json
		json=$(cd "$ROOT" && bounded 1800 cargo bench -q --bench tls --no-run --message-format=json 2>>"$RUN_DIR/logs/build.log")
		BENCH_TLS=$("$PY" -c 'import json,sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "tls":
        print(m["executable"])' <<<"$json" | tail -n 1)
		if [[ ! -x $BENCH_TLS ]]; then
			BENCH_TLS_WHY="cargo bench --bench tls --no-run failed: see logs/build.log"
			fail "bare-crypto: $BENCH_TLS_WHY"
		fi
	else
		BENCH_TLS=$(find "$ROOT/target/release/deps" -maxdepth 1 -type f -executable -name 'tls-*' \
			-printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n 1 | cut -d' ' -f2-)
		[[ -x $BENCH_TLS ]] || BENCH_TLS_WHY="--no-build and no earlier build in target/release/deps"
	fi
	if [[ -x $BENCH_TLS ]]; then
		cp "$BENCH_TLS" "$RUN_DIR/bin/bench-tls" && BENCH_TLS=$RUN_DIR/bin/bench-tls
	fi
}

# crypto_row: runs the benches the selected workloads need and records one row per workload.
crypto_row() {
	local ids=() pair w id out line
	for pair in $CRYPTO_BENCHES; do
		w=${pair%%=*} id=${pair#*=}
		[[ " ${SELECTED[*]} " == *" $w "* ]] && ids+=("$id")
	done
	((${#ids[@]})) || return 0
	local filter
	filter="^($(
		IFS='|'
		echo "${ids[*]}"
	))\$"
	log "bare-crypto: criterion on CPU $TERM_CPUS (${ids[*]})"
	mkdir -p "$RUN_DIR/tmp/criterion"
	out=$(cd "$RUN_DIR/tmp" && CRITERION_HOME=$RUN_DIR/tmp/criterion bounded 900 \
		taskset -c "$TERM_CPUS" "$BENCH_TLS" --bench --output-format bencher --noplot \
		--warm-up-time "$CRIT_WARMUP" --measurement-time "$CRIT_TIME" --sample-size "$CRIT_SAMPLES" \
		"$filter" 2>>"$RUN_DIR/logs/criterion.log")
	printf '%s\n' "$out" >>"$RUN_DIR/logs/criterion.log"
	for pair in $CRYPTO_BENCHES; do
		w=${pair%%=*} id=${pair#*=}
		[[ " ${SELECTED[*]} " == *" $w "* ]] || continue
		if line=$("$PY" - "$out" "$w" "$id" <<'EOF'
import json, re, sys
out, wl, bid = sys.argv[1:4]
m = re.search(r"^test " + re.escape(bid) + r" \.\.\. bench:\s+([\d,]+) ns/iter \(\+/- ([\d,]+)\)", out, re.M)
if not m:
    print(f"no result for {bid} (see logs/criterion.log)")
    sys.exit(1)
ns, dev = (int(g.replace(",", "")) for g in m.groups())
r = {"peer": "bare-crypto", "workload": wl, "tool": "criterion", "bench": bid,
     "ns_per_iter": ns, "ns_dev": dev, "server_busy": 1.0, "errors": 0}
if wl.startswith("hs-"):
    r["hps"] = r["hps_per_cpu_s"] = 1e9 / ns
else:
    r["mib"] = r["mib_per_cpu_s"] = (16384 / 1048576) / (ns * 1e-9)
print(json.dumps(r))
EOF
		); then
			record "$line"
			log "  bare-crypto/$w: $(json_get "$line" ns_per_iter) ns per $([[ $w == hs-* ]] && echo handshake || echo '16 KiB record')"
		else
			fail "bare-crypto/$w: $line"
		fi
	done
}
