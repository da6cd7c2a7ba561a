#!/usr/bin/env python3
"""Record one tern-loadgen result: add who/what it measured, append it to RUN_DIR/raw.jsonl,
print a one-line summary, and exit 1 (with the reason on stdout) if it holds no number.

usage: tern-loadgen ... | record.py RUN_DIR PEER WORKLOAD [EXTRA_JSON] [--expect-conns N] [--retry]
"""
import json
import signal
import sys


def f(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"


def summary(r):
    wl = r["workload"]
    if r.get("mode") == "idle":
        kib = None if r.get("bytes_per_conn") is None else r["bytes_per_conn"] / 1024
        return f"{f(r.get('conns'))} connections held, {f(kib, 1)} KiB per connection"
    if r.get("reqs_per_conn") == 1:
        s = f"{f(r['hps'])} handshakes/s, {f(r['hps_per_cpu_s'])} per CPU-s"
    elif wl.startswith("bulk") or wl.endswith("bulk-down"):
        s = f"{f(r['mib_in_s'] + r['mib_out_s'])} MiB/s, {f(r['mib_per_cpu_s'])} MiB per CPU-s"
    else:
        s = f"{f(r['rps'])} req/s, {f(r['rps_per_cpu_s'])} per CPU-s"
    lat = r["lat_us"]
    s += f", terminator CPU {f(r['server_busy'], 2)}, p50/p99/p99.9 {lat['p50']}/{lat['p99']}/{lat['p999']} us"
    if r.get("errors"):
        s += f", {r['errors']} errors"
    why = noisy(r)
    if why:
        s += f" (noisy: {why})"
    return s


# Above this share of a CPU taken from the run, by other processes or by the hypervisor
# (steal: a vCPU not running at all), a measurement is noisy. Same as report.py's NOISY.
NOISY = 0.15


def noisy(r):
    """Why a measurement is noisy, or None."""
    secs = r.get("secs") or 0
    steal = (r.get("steal_s") or 0) / secs if secs else 0
    out = []
    if (r.get("other_busy") or 0) > NOISY:
        out.append(f"{r['other_busy']:.2f} CPU used by other processes")
    if steal > NOISY:
        out.append(f"{steal:.2f} CPU stolen by the hypervisor")
    return ", ".join(out) or None


def main():
    args = sys.argv[1:]
    expect = None
    # --retry: a run without a number is not recorded, so that the caller can run it again.
    retry = "--retry" in args
    if retry:
        args.remove("--retry")
    if "--expect-conns" in args:
        i = args.index("--expect-conns")
        expect = int(args[i + 1])
        del args[i:i + 2]
    run_dir, peer, wl = args[0], args[1], args[2]
    extra = json.loads(args[3]) if len(args) > 3 and args[3] else {}
    text = sys.stdin.read().strip()
    if not text:
        print("the load generator printed no result (see logs/loadgen.log)")
        return 1
    try:
        r = json.loads(text.splitlines()[-1])
    except json.JSONDecodeError as e:
        print(f"unreadable load-generator output ({e})")
        return 1
    r.update({"peer": peer, "workload": wl, "tool": "tern-loadgen"})
    r.update(extra)
    why = None
    if r.get("mode") == "idle":
        if r.get("bytes_per_conn") is None or (expect is not None and r.get("conns") != expect):
            why = f"held {r.get('conns')} of {expect} connections ({r.get('errors')} errors)"
    elif not r.get("requests") or r.get("server_cpu_s") is None:
        why = f"no requests completed ({r.get('errors')} errors; see logs/loadgen.log)"
    elif retry and noisy(r):
        # A noisy first attempt is run once more; the second one counts, noisy or not (and
        # is marked so in the report).
        why = f"noisy: {noisy(r)}"
    if why and retry:
        print(why)
        return 3
    with open(f"{run_dir}/raw.jsonl", "a") as out:
        out.write(json.dumps(r) + "\n")
    if why:
        print(why)
        return 1
    print(summary(r))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: die quietly, run.sh reports it
    sys.exit(main())
