#!/usr/bin/env python3
"""Turn bench-env's raw.jsonl into results.md (also printed), results.csv, results.json and one
PNG chart per workload (gnuplot). Standard library only.

usage: report.py RUN_DIR [--elapsed SECONDS] [--mode full|quick|check]
"""
import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys

# tern-unix, tern-http-unix: tern and tern-http reaching the backend over a Unix socket (the
# unix workload), beside their tcp-backend rows.
PEER_ORDER = ["tern", "tern-unix", "nginx-stream", "haproxy-tcp", "hitch", "tern-http", "tern-http-unix",
              "nginx-http", "haproxy-http", "nginx-stream-plain", "haproxy-tcp-plain", "bare-crypto"]
MODE_OF = {"tern": "tcp", "tern-unix": "tcp (unix backend)", "nginx-stream": "tcp", "haproxy-tcp": "tcp",
           "hitch": "tcp", "tern-http": "http", "tern-http-unix": "http (unix backend)", "nginx-http": "http",
           "haproxy-http": "http", "nginx-stream-plain": "plain", "haproxy-tcp-plain": "plain",
           "bare-crypto": "crypto"}
# The TLS peers tern and tern-http are each compared with, and the reference rows: forwarding
# without TLS, and TLS alone (criterion, in memory, no sockets).
TLS_PEERS = {"tern": ["nginx-stream", "haproxy-tcp", "hitch"], "tern-http": ["nginx-http", "haproxy-http"]}
TLS_PEERS.update({"tern-unix": TLS_PEERS["tern"], "tern-http-unix": TLS_PEERS["tern-http"]})
PLAIN_PEERS = ["nginx-stream-plain", "haproxy-tcp-plain"]
REFERENCE = set(PLAIN_PEERS) | {"bare-crypto"}
SUMMARY_WL = ["hs-ecdsa", "hs-rsa", "resume", "keepalive", "bulk-down", "bulk-up", "latency",
              "reencrypt-hs", "reencrypt-ka"]
LIMIT_WL = ["hs-ecdsa", "hs-rsa", "resume", "keepalive", "bulk-down", "bulk-up", "reencrypt-hs", "reencrypt-ka"]

# workload -> (title, rate key, rate unit, per-CPU-second key, per-CPU-second unit)
WORKLOADS = {
    "hs-ecdsa": ("Full handshakes, ECDSA P-256 (+1 request each)", "hps", "handshakes/s", "hps_per_cpu_s", "handshakes per CPU-s"),
    "hs-rsa": ("Full handshakes, RSA 2048 (+1 request each)", "hps", "handshakes/s", "hps_per_cpu_s", "handshakes per CPU-s"),
    "resume": ("Resumed handshakes, TLS 1.3 tickets (+1 request each)", "hps", "handshakes/s", "hps_per_cpu_s", "handshakes per CPU-s"),
    "keepalive": ("Keep-alive requests, ~100-byte responses", "rps", "requests/s", "rps_per_cpu_s", "requests per CPU-s"),
    "bulk-down": ("Bulk download, 1 MiB responses", "mib", "MiB/s", "mib_per_cpu_s", "MiB per CPU-s"),
    "bulk-up": ("Bulk upload, 1 MiB request bodies", "mib", "MiB/s", "mib_per_cpu_s", "MiB per CPU-s"),
    "latency": ("Latency at a fixed request rate", "rps", "requests/s", "rps_per_cpu_s", "requests per CPU-s"),
    "idle-mem": ("Memory per idle TLS connection", "conns", "connections held", "kib_per_conn", "KiB per connection"),
    "reencrypt-hs": ("Full handshakes, re-encrypted to a TLS backend (+1 request each)", "hps", "handshakes/s", "hps_per_cpu_s", "handshakes per CPU-s"),
    "reencrypt-ka": ("Keep-alive requests, re-encrypted to a TLS backend", "rps", "requests/s", "rps_per_cpu_s", "requests per CPU-s"),
    "scale-hs": ("tern scaling: full handshakes", "hps", "handshakes/s", "hps_per_cpu_s", "handshakes per CPU-s"),
    "scale-ka": ("tern scaling: keep-alive requests", "rps", "requests/s", "rps_per_cpu_s", "requests per CPU-s"),
    "toolcheck-keepalive": ("Tool check: keep-alive, wrk vs tern-loadgen", "rps", "requests/s", "rps_per_cpu_s", "requests per CPU-s"),
    "toolcheck-bulk-down": ("Tool check: bulk download, wrk vs tern-loadgen", "mib", "MiB/s", "mib_per_cpu_s", "MiB per CPU-s"),
}
# Above this share of a CPU used by processes outside the run, a row is marked noisy.
NOISY = 0.15


def load(run_dir):
    rows = []
    with open(os.path.join(run_dir, "raw.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    for r in rows:
        if "mib_in_s" in r:
            r["mib"] = (r.get("mib_in_s") or 0) + (r.get("mib_out_s") or 0)
        if r.get("workload") == "idle-mem" and r.get("bytes_per_conn") is not None:
            r["kib_per_conn"] = r["bytes_per_conn"] / 1024
    return rows


def fmt(x, digits=0):
    if x is None or x == "":
        return "-"
    if isinstance(x, float) and digits == 0 and abs(x) < 10:
        digits = 1
    return f"{x:,.{digits}f}"


def peer_key(p):
    return PEER_ORDER.index(p) if p in PEER_ORDER else len(PEER_ORDER)


def notes(r):
    n = []
    wl = r["workload"]
    if r.get("errors"):
        n.append(f"{r['errors']} errors")
    if r.get("bad_status"):
        n.append(f"{r['bad_status']} non-2xx")
    if wl == "resume" and r.get("handshakes"):
        n.append(f"{100 * r['resumed'] / r['handshakes']:.0f}% resumed")
    if r.get("tickets") and r.get("handshakes") and wl in ("hs-ecdsa", "hs-rsa", "resume", "scale-hs"):
        n.append(f"{r['tickets'] / r['handshakes']:.1f} tickets/conn")
    if wl == "latency":
        n.append(f"offered {fmt(r.get('rate_target'))}/s")
    if wl == "idle-mem":
        n.append(f"{fmt(r.get('conns'))} held, RSS {fmt((r.get('rss_before_kb') or 0) / 1024)}"
                 f" -> {fmt((r.get('rss_after_kb') or 0) / 1024)} MiB")
    if r.get("workers"):
        n.append(f"{r['workers']} worker(s)")
    if r.get("layout"):
        n.append(f"tern on CPUs {r.get('tern_cpus')}, load generator on {r.get('client_cpus')} ({r['layout']})")
    if r.get("plain"):
        n.append("plain HTTP, no TLS")
    if r.get("tool") == "criterion":
        n.append(f"criterion {r.get('bench')}: median {fmt(r.get('ns_per_iter'))} ns (+/- {fmt(r.get('ns_dev'))}), in memory, server side, CPU time")
    if r.get("backend") == "tls":
        n.append("TLS to the backend")
    if r.get("backend") == "unix":
        n.append("backend over a Unix socket")
    if r.get("tool") and wl.startswith("toolcheck"):
        n.append(r["tool"])
    secs = r.get("secs") or 0
    if (r.get("other_busy") or 0) > NOISY:
        n.append(f"NOISY: {r['other_busy']:.2f} CPU used by other processes")
    if secs and (r.get("steal_s") or 0) / secs > NOISY:
        n.append(f"NOISY: {r['steal_s'] / secs:.2f} CPU stolen by the hypervisor")
    return "; ".join(n)


def summary_table(rows, peers):
    out = ["| workload | unit | " + " | ".join(peers) + " |", "|---|---|" + "---|" * len(peers)]
    by = {(r["workload"], r["peer"]): r for r in rows if "peer" in r}
    for wl in SUMMARY_WL:
        if not any(k[0] == wl for k in by):
            continue
        _, _, _, pkey, punit = WORKLOADS[wl]
        cells = [fmt(by[(wl, p)].get(pkey)) if (wl, p) in by else "-" for p in peers]
        out.append(f"| {wl} | {punit} | " + " | ".join(cells) + " |")
    if any(k[0] == "latency" for k in by):
        for q, name in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            cells = [fmt(by[("latency", p)]["lat_us"].get(q)) if ("latency", p) in by else "-" for p in peers]
            out.append(f"| latency {name} | us at {fmt(rows_rate(rows))} req/s | " + " | ".join(cells) + " |")
    if any(k[0] == "idle-mem" for k in by):
        cells = [fmt(by[("idle-mem", p)].get("kib_per_conn"), 1) if ("idle-mem", p) in by else "-" for p in peers]
        out.append("| idle-mem | KiB per idle connection (lower is better) | " + " | ".join(cells) + " |")
    return out


def best(by, wl, peers, pkey):
    """(peer, value) of the highest per-CPU-second figure among `peers` in workload `wl`."""
    got = [(by[(wl, p)].get(pkey), p) for p in peers if (wl, p) in by and by[(wl, p)].get(pkey)]
    if not got:
        return None, None
    v, p = max(got)
    return p, v


# The plaintext load that stands for a workload's non-TLS work: a full or resumed handshake
# with one request is, without TLS, a new connection with one request whatever the key.
PLAIN_WL = {"hs-rsa": "hs-ecdsa", "resume": "hs-ecdsa"}


def bound(plain, crypto):
    """The most a terminator can do per CPU-second if it costs exactly the best plaintext
    forwarder's work plus TLS alone: the costs per unit (CPU-seconds) add."""
    return 1 / (1 / plain + 1 / crypto) if plain and crypto else None


def limits_table(rows):
    """Per workload: tern beside the best TLS peer of its mode, the best plaintext forwarder,
    TLS alone (bare crypto), and the two together (the bound), as ratios of work per CPU-second."""
    by = {(r["workload"], r["peer"]): r for r in rows if "peer" in r}
    out = []
    for wl in LIMIT_WL:
        _, _, _, pkey, punit = WORKLOADS[wl]
        plain_p, plain_v = best(by, PLAIN_WL.get(wl, wl), PLAIN_PEERS, pkey)
        crypto = by.get((wl, "bare-crypto"), {}).get(pkey)
        both = bound(plain_v, crypto)
        for tern in ("tern", "tern-unix", "tern-http", "tern-http-unix"):
            t = by.get((wl, tern), {}).get(pkey)
            if not t:
                continue
            peer_p, peer_v = best(by, wl, TLS_PEERS[tern], pkey)

            def ratio(v, t=t):
                return fmt(t / v, 2) if v else "-"
            if not out:
                out += ["| workload | unit | tern | per CPU-s | best TLS peer | tern ÷ best TLS peer | plaintext floor | tern ÷ plaintext floor | bare crypto | tern ÷ bare crypto | plaintext + crypto bound | tern ÷ bound |",
                        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            out.append(f"| {wl} | {punit} | {tern} | {fmt(t)} | "
                       f"{f'{peer_p} {fmt(peer_v)}' if peer_p else '-'} | {ratio(peer_v)} | "
                       f"{f'{plain_p} {fmt(plain_v)}' if plain_p else '-'} | {ratio(plain_v)} | "
                       f"{fmt(crypto) if crypto else '-'} | {ratio(crypto)} | "
                       f"{fmt(both) if both else '-'} | {ratio(both)} |")
    return out


def rows_rate(rows):
    for r in rows:
        if r.get("workload") == "latency":
            return r.get("rate_target")
    return None


def detail_table(rows):
    out = ["| workload | terminator | mode | rate | unit | per CPU-s | unit | terminator CPU | of it kernel | client CPU | p50 us | p99 us | p99.9 us | notes |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wl = r.get("workload")
        if wl not in WORKLOADS:
            continue
        _, rkey, runit, pkey, punit = WORKLOADS[wl]
        lat = r.get("lat_us") or {}
        out.append("| " + " | ".join([
            wl, r["peer"], MODE_OF.get(r["peer"], ""), fmt(r.get(rkey)), runit, fmt(r.get(pkey), 1 if wl == "idle-mem" else 0), punit,
            fmt(r.get("server_busy"), 2),
            f"{r['server_sys_share'] * 100:.0f} %" if r.get("server_sys_share") is not None else "-",
            fmt(r.get("client_busy"), 2),
            fmt(lat.get("p50")), fmt(lat.get("p99")), fmt(lat.get("p999")), notes(r)]) + " |")
    return out


def scaling_table(rows):
    out = []
    for wl in ("scale-hs", "scale-ka"):
        rs = sorted((r for r in rows if r.get("workload") == wl), key=lambda r: r.get("workers", 0))
        if not rs:
            continue
        _, rkey, runit, pkey, punit = WORKLOADS[wl]
        base = next((r.get(pkey) for r in rs if r.get("workers") == 1), None)
        if not out:
            out += ["| workload | workers | tern CPUs | load generator CPUs | rate | unit | per CPU-s | terminator CPU | per-worker efficiency |",
                    "|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            eff = r.get(pkey) / base if base and r.get(pkey) else None
            r["efficiency"] = eff
            out.append(f"| {wl} | {r.get('workers')} | {r.get('tern_cpus', '-')} | {r.get('client_cpus', '-')} | "
                       f"{fmt(r.get(rkey))} | {runit} | {fmt(r.get(pkey))} | "
                       f"{fmt(r.get('server_busy'), 2)} | {fmt(eff, 2)} |")
    return out


def gnuplot_bars(path, title, ylabel, labels, series, logscale=False):
    """series: list of (name, values, color); labels: x categories."""
    dat = path[:-4] + ".dat"
    with open(dat, "w") as f:
        f.write("label " + " ".join(f'"{s[0]}"' for s in series) + "\n")
        for i, lab in enumerate(labels):
            vals = ["NaN" if s[1][i] is None else f"{s[1][i]:.3f}" for s in series]
            f.write(f'"{lab}" ' + " ".join(vals) + "\n")
    gp = [
        "set terminal pngcairo size 960,540 font 'sans,11'",
        f"set output '{path}'",
        f"set title \"{title}\"",
        f"set ylabel \"{ylabel}\"",
        "set style data histogram",
        "set style histogram clustered gap 1" if len(series) > 1 else "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set grid ytics",
        "set yrange [0:*]" if not logscale else "set logscale y",
        "set xtics rotate by -20",
        "set key top right" if len(series) > 1 else "unset key",
    ]
    plots = []
    for i, (name, _vals, color) in enumerate(series):
        using = f"{i + 2}:xtic(1)" if i == 0 else f"{i + 2}"
        plots.append(f"'{dat}' using {using} title columnheader({i + 2}) lc rgb '{color}'")
    gp.append("plot " + ", ".join(plots))
    res = subprocess.run(["gnuplot"], input="\n".join(gp), text=True, capture_output=True, timeout=60)
    os.remove(dat)
    if res.returncode != 0:
        raise RuntimeError(f"gnuplot failed for {path}: {res.stderr.strip()}")


def charts(run_dir, rows, peers):
    if not shutil.which("gnuplot"):
        print("report: gnuplot not installed, no charts", file=sys.stderr)
        return []
    made = []
    by = {(r["workload"], r["peer"]): r for r in rows if "peer" in r}
    for wl in SUMMARY_WL[:6] + SUMMARY_WL[7:] + ["idle-mem"]:
        ps = [p for p in peers if (wl, p) in by]
        if not ps:
            continue
        title, _, _, pkey, punit = WORKLOADS[wl]
        vals = [by[(wl, p)].get(pkey) for p in ps]
        kinds = [1 if p.startswith("tern") else 2 if p in REFERENCE else 0 for p in ps]
        path = os.path.join(run_dir, f"{wl}.png")
        ylabel = punit + (" (lower is better)" if wl == "idle-mem" else " (higher is better)")
        gnuplot_bars_split(path, title, ylabel, ps, vals, kinds)
        made.append(path)
    ps = [p for p in peers if ("latency", p) in by]
    if ps:
        path = os.path.join(run_dir, "latency.png")
        series = [(q, [by[("latency", p)]["lat_us"].get(k) for p in ps], c) for q, k, c in
                  (("p50", "p50", "#4c72b0"), ("p99", "p99", "#dd8452"), ("p99.9", "p999", "#c44e52"))]
        gnuplot_bars(path, f"Latency at {fmt(rows_rate(rows))} requests/s (lower is better)", "microseconds (log scale)",
                     ps, series, logscale=True)
        made.append(path)
    for wl in ("toolcheck-keepalive", "toolcheck-bulk-down"):
        rs = [r for r in rows if r.get("workload") == wl]
        ps = [p for p in PEER_ORDER if any(r["peer"] == p for r in rs)]
        if ps:
            pick = {(r["peer"], r.get("tool")): r for r in rs}
            series = [(tool, [pick[(p, tool)].get("server_busy") if (p, tool) in pick else None for p in ps], c)
                      for tool, c in (("tern-loadgen", "#2a9d8f"), ("wrk", "#8d99ae"))]
            path = os.path.join(run_dir, f"{wl}.png")
            gnuplot_bars(path, WORKLOADS[wl][0] + ": how busy each tool keeps the terminator",
                         "terminator CPU (1.0 = one core)", ps, series)
            made.append(path)
    for wl in ("scale-hs", "scale-ka"):
        rs = sorted((r for r in rows if r.get("workload") == wl), key=lambda r: r.get("workers", 0))
        if rs:
            title, _, _, pkey, punit = WORKLOADS[wl]
            path = os.path.join(run_dir, f"{wl}.png")
            vals = [r.get(pkey) for r in rs]
            eff = ", ".join(f"{r['efficiency']:.2f}" for r in rs if r.get("efficiency") is not None)
            gnuplot_bars_split(path, f"{title}: per CPU-second by worker count (efficiency {eff})", punit,
                               [f"{r.get('workers')} worker(s)" for r in rs], vals, [1] * len(rs))
            made.append(path)
    return made


def gnuplot_bars_split(path, title, ylabel, labels, vals, kinds):
    """One bar per terminator: tern in green (kind 1), the TLS peers in grey (0), the reference
    rows (plaintext forwarders, bare crypto) in blue (2)."""
    dat = path[:-4] + ".dat"
    with open(dat, "w") as f:
        for lab, v, k in zip(labels, vals, kinds):
            f.write(f'"{lab}" {"NaN" if v is None else f"{v:.3f}"} {k}\n')
    gp = [
        "set terminal pngcairo size 960,540 font 'sans,11'",
        f"set output '{path}'",
        f"set title \"{title}\"",
        f"set ylabel \"{ylabel}\"",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.6",
        "set grid ytics",
        "set yrange [0:*]",
        "set offsets 0.5, 0.5, graph 0.08, 0",
        "set xtics rotate by -20",
        "unset key",
        f"plot '{dat}' using 0:2:($3 == 1 ? 0x2a9d8f : ($3 == 2 ? 0x7fa7d8 : 0x8d99ae)):xtic(1) with boxes lc rgb variable, "
        f"'' using 0:2:(sprintf($2 < 100 ? '%.1f' : '%.0f', $2)) with labels offset 0,0.7",
    ]
    res = subprocess.run(["gnuplot"], input="\n".join(gp), text=True, capture_output=True, timeout=60)
    os.remove(dat)
    if res.returncode != 0:
        raise RuntimeError(f"gnuplot failed for {path}: {res.stderr.strip()}")


CSV_FIELDS = ["workload", "peer", "tool", "workers", "secs", "requests", "handshakes", "resumed", "tickets",
              "errors", "bad_status", "rps", "hps", "mib", "rps_per_cpu_s", "hps_per_cpu_s", "mib_per_cpu_s",
              "server_cpu_s", "server_busy", "server_sys_share", "client_cpu_s", "client_busy", "backend_cpu_s", "irq_cpu_s",
              "other_cpu_s", "other_busy", "lat_p50_us", "lat_p99_us", "lat_p999_us", "lat_max_us",
              "rate_target", "conns_inflight", "conns", "rss_before_kb", "rss_after_kb", "bytes_per_conn",
              "kib_per_conn", "efficiency", "layout", "tern_cpus", "client_cpus", "plain", "backend",
              "bench", "ns_per_iter", "ns_dev", "for", "reason"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--elapsed", type=float)
    ap.add_argument("--mode", default="")
    a = ap.parse_args()
    rows = load(a.run_dir)
    meta = {}
    mp = os.path.join(a.run_dir, "meta.json")
    if os.path.exists(mp):
        meta = json.load(open(mp))
    if a.elapsed is not None:
        meta["elapsed_s"] = a.elapsed
    measured = [r for r in rows if r.get("workload") in WORKLOADS]
    skipped = [r for r in rows if r.get("workload") == "skipped"]
    peers = sorted({r["peer"] for r in measured if not r["workload"].startswith(("scale", "toolcheck"))}, key=peer_key)
    measured.sort(key=lambda r: (list(WORKLOADS).index(r["workload"]), peer_key(r["peer"]), r.get("workers", 0), r.get("tool", "")))

    md = [f"# tern bench-env results ({a.mode or meta.get('mode', '')} run)", ""]
    if meta:
        md.append(f"{meta.get('cpus')} CPUs ({meta.get('cpu_model')}), kernel {meta.get('kernel')}; terminator on CPU "
                  f"{meta.get('terminator_cpus')}, backend on {meta.get('backend_cpus')}, load generator on "
                  f"{meta.get('client_cpus')}; {meta.get('warmup_s')} s warm-up + {meta.get('duration_s')} s measured per run"
                  + (f"; {a.elapsed:.0f} s in all." if a.elapsed is not None else "."))
        md.append("")
    md += ["## Work per CPU-second of the terminator (its whole process tree: utime + stime)", "",
           "Higher is better, except latency and idle-mem. tcp mode (L4: decrypt and pump bytes): tern, "
           "nginx-stream, haproxy-tcp, hitch; http mode (L7: parse requests, add X-Forwarded-For, pool "
           "backend connections): tern-http, nginx-http, haproxy-http. Reference rows: nginx-stream-plain and "
           "haproxy-tcp-plain forward the same plain HTTP without TLS; bare-crypto is TLS alone, in memory.", ""]
    md += summary_table(measured, peers)
    lt = limits_table(measured)
    if lt:
        md += ["", "## tern beside its peers and the limits", "",
               "Ratios of work per CPU-second. best TLS peer: the best terminator of tern's mode in this run. "
               "plaintext floor: the best forwarder of the same load without TLS (nginx stream, HAProxy mode tcp "
               "with splice-auto), the most work a CPU-second buys here with no TLS at all. bare crypto: TLS alone, "
               "in memory (criterion, benches/tls.rs, in CPU time): the server's handshake, or sealing (bulk-down) and "
               "opening (bulk-up) 16 KiB AES-128-GCM records, with no socket, kernel or proxy around it. "
               "plaintext + crypto bound: 1 ÷ (1 ÷ plaintext floor + 1 ÷ bare crypto), what a terminator that cost "
               "exactly the best plaintext forwarder plus TLS alone would do (for hs-rsa and resume the plaintext "
               "floor is hs-ecdsa's: a new connection with one request).", ""] + lt
    st = scaling_table(measured)
    skipped_scale = [r for r in skipped if r.get("for") == "scaling"]
    if st or skipped_scale:
        md += ["", "## tern scaling (per-worker efficiency = per CPU-s with N workers / per CPU-s with 1)", ""] + st
        md += [f"- {r.get('workers')} workers not run: {r.get('reason')}" for r in skipped_scale]
    md += ["", "## All measurements", "",
           "rate = what the load generator got (on a small machine often the limit of the client's core); "
           "terminator CPU = CPU-seconds the terminator used per second (1.00 = one core busy); of it kernel = "
           "the share of that CPU time spent in the kernel (stime ÷ utime + stime; on loopback mostly TCP); "
           "rows marked NOISY had other processes using the machine, or the hypervisor took (steal) more than "
           "0.15 of a CPU; a noisy measurement is run once more and the second one is recorded.", ""]
    md += detail_table(measured)
    others = [r for r in skipped if r.get("for") != "scaling"]
    if others:
        md += ["", "Skipped: " + "; ".join(f"{r['peer']} ({r['for'] + ': ' if r.get('for') else ''}{r.get('reason')})"
                                           for r in others)]
    text = "\n".join(md) + "\n"

    made = []
    try:
        made = charts(a.run_dir, measured, peers)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"report: {e}", file=sys.stderr)
    if made:
        text += "\nCharts: " + ", ".join(os.path.basename(m) for m in made) + "\n"
    with open(os.path.join(a.run_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.run_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in measured + skipped:
            flat = dict(r)
            lat = r.get("lat_us") or {}
            flat.update({"lat_p50_us": lat.get("p50"), "lat_p99_us": lat.get("p99"),
                         "lat_p999_us": lat.get("p999"), "lat_max_us": lat.get("max")})
            w.writerow(flat)
    with open(os.path.join(a.run_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": measured, "skipped": skipped, "charts": [os.path.basename(m) for m in made]},
                  f, indent=1)
    sys.stdout.write(text)
    # A run that measured something must have charted it.
    return 0 if made or not measured else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: die quietly, run.sh reports it
    sys.exit(main())
