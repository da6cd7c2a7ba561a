#!/usr/bin/env python3
"""Runs the tlsfuzzer scripts of a curated list against running tern instances and judges
every failed probe against the list's expectations.

The list (tlsfuzzer.list) has one script per line, then its expectations indented below it:

    both  test-tls13-keyupdate -n 0
    rsa   test-conversation -C {suite12}
        xfail  REGEX | ERROR TEXT  # reason
        skip   PROBE NAME          # reason

- the first word says which instances run the script: rsa, ecdsa or both; `{suite12}` in the
  arguments becomes the TLS 1.2 AEAD suite matching the instance's key; a script ending in .py
  is one of ours beside this file, otherwise tlsfuzzer's (test-foo runs _apps/test_foo.py);
- `skip NAME` leaves a probe out (passed to the script as `-e NAME`);
- `xfail REGEX | TEXT` accepts a failed probe whose name matches REGEX (whole name) only when
  TEXT appears in its error, so a probe failing in another way (a reset instead of the alert)
  is still a failure;
- every skip and xfail needs its reason after " # ".

A run fails on any failed probe no xfail explains, a script that does not finish (timeout,
crash, no summary), or an xfail/skip without a reason. Exit status 0 only when all is as
expected.
"""

import argparse
import ast
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

SUITE12 = {
    "rsa": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ecdsa": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
}


class Entry:
    def __init__(self, lineno, instances, script, args):
        self.lineno = lineno
        self.instances = instances
        self.script = script
        self.args = args
        self.skips = []  # (name, reason)
        self.xfails = []  # (regex, text, reason)


def parse_list(path):
    import shlex

    entries, errors = [], []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            spec, _, reason = line.partition(" # ")
            reason = reason.strip()
            if not line[0].isspace():
                words = shlex.split(spec)
                if len(words) < 2 or words[0] not in ("rsa", "ecdsa", "both"):
                    errors.append(f"{path}:{n}: expected 'rsa|ecdsa|both SCRIPT ARGS...'")
                    continue
                inst = ["rsa", "ecdsa"] if words[0] == "both" else [words[0]]
                entries.append(Entry(n, inst, words[1], words[2:]))
                continue
            if not entries:
                errors.append(f"{path}:{n}: expectation before any script")
                continue
            kind, _, rest = spec.strip().partition(" ")
            rest = rest.strip()
            if not reason:
                errors.append(f"{path}:{n}: {kind} without a reason (' # why')")
                continue
            if kind == "skip":
                entries[-1].skips.append((rest, reason))
            elif kind == "xfail":
                regex, bar, text = rest.partition(" | ")
                if not bar or not text.strip():
                    errors.append(f"{path}:{n}: xfail needs 'REGEX | ERROR TEXT'")
                    continue
                try:
                    re.compile(regex.strip())
                except re.error as e:
                    errors.append(f"{path}:{n}: bad regex: {e}")
                    continue
                entries[-1].xfails.append((regex.strip(), text.strip(), reason))
            else:
                errors.append(f"{path}:{n}: unknown expectation {kind!r}")
    return entries, errors


def is_header(line):
    """A line that starts a probe's output: `NAME ...` (or `"NAME" repeat N...`)."""
    return line.endswith("...") and not line[:1].isspace()


def probe_errors(output):
    """{probe name: error text} for the probes the script reports as failed (its FAILED list),
    the text being every traceback printed under that probe's header."""
    lines = output.split("\n")
    failed = []
    if "FAILED:" in lines:
        for l in lines[lines.index("FAILED:") + 1 :]:
            l = l.strip()
            if not l.startswith("'") and not l.startswith('"'):
                break
            failed.append(ast.literal_eval(l))
    errors = {}
    for name in failed:
        texts = []
        for i, l in enumerate(lines):
            if l != name + " ..." and not l.startswith('"' + name + '" repeat '):
                continue
            block = []
            for l2 in lines[i + 1 :]:
                if is_header(l2) or l2.startswith("Test end") or l2.startswith("===="):
                    break
                block.append(l2)
            if any(b.startswith("Error while processing") for b in block):
                texts.append("\n".join(block))
        errors[name] = "\n".join(texts)
    return errors


def last_error_line(text):
    """The line that says why, for the summary: the last exception raised."""
    lines = [l.strip() for l in text.split("\n")]
    for l in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception)\b", l):
            return l
    return next((l for l in reversed(lines) if l), "(no message)")


def summary_counts(output):
    counts = {}
    for key in ("TOTAL", "PASS", "FAIL", "SKIP"):
        m = re.findall(rf"^{key}: (\d+)$", output, re.M)
        if m:
            counts[key] = int(m[-1])
    return counts


def run_one(entry, instance, port, opts):
    if entry.script.endswith(".py"):
        # One of ours, beside this file, written on the tlsfuzzer library.
        app = os.path.join(os.path.dirname(os.path.abspath(__file__)), entry.script)
    else:
        app = os.path.join(opts.apps, entry.script.replace("-", "_") + ".py")
    args = [a.replace("{suite12}", SUITE12[instance]) for a in entry.args]
    cmd = [opts.python, app, "-h", "127.0.0.1", "-p", str(port)] + args
    for name, _ in entry.skips:
        cmd += ["-e", name]
    log = os.path.join(opts.logs, f"{instance}-{entry.script}.log")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=opts.timeout,
            cwd=opts.logs,
        )
        output = proc.stdout.decode("utf-8", "replace")
        rc = proc.returncode
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode("utf-8", "replace")
        rc = None
    took = time.monotonic() - started
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n\n" + output)

    result = {"entry": entry, "instance": instance, "took": took, "log": log}
    counts = summary_counts(output)
    problems = []
    if rc is None:
        problems.append(f"did not finish within {opts.timeout}s")
    elif "TOTAL" not in counts or rc not in (0, 1):
        problems.append(f"exited {rc} without a tlsfuzzer summary")
    expected, unexpected = [], []
    used = set()
    for name, text in probe_errors(output).items():
        why = None
        for i, (regex, needle, reason) in enumerate(entry.xfails):
            if re.fullmatch(regex, name) and needle in text:
                why = reason
                used.add(i)
                break
        if why:
            expected.append((name, why))
        else:
            unexpected.append((name, last_error_line(text)))
    if rc == 1 and not expected and not unexpected and not problems:
        problems.append("exited 1 but reported no failed probe")
    result.update(
        counts=counts,
        expected=expected,
        unexpected=unexpected,
        problems=problems,
        unused=[entry.xfails[i] for i in range(len(entry.xfails)) if i not in used],
    )
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", required=True)
    ap.add_argument("--apps", required=True, help="tlsfuzzer/_apps directory")
    ap.add_argument("--python", required=True, help="python of the tlsfuzzer venv")
    ap.add_argument("--logs", required=True)
    ap.add_argument("--port", action="append", default=[], help="INSTANCE=PORT")
    ap.add_argument("--timeout", type=int, default=150, help="seconds per script")
    ap.add_argument("--jobs", type=int, default=2, help="scripts run at once")
    ap.add_argument("--only", help="run only scripts whose name contains this")
    opts = ap.parse_args()

    entries, errors = parse_list(opts.list)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 2
    ports = dict(p.split("=", 1) for p in opts.port)
    os.makedirs(opts.logs, exist_ok=True)

    # (script, instance) runs in list order, a few at a time: probes are independent
    # connections, so a tern instance may serve two scripts at once.
    runs = [
        (e, inst)
        for e in entries
        if not (opts.only and opts.only not in e.script)
        for inst in e.instances
        if inst in ports
    ]

    def one(run):
        e, inst = run
        r = run_one(e, inst, ports[inst], opts)
        verdict = "ok" if not (r["unexpected"] or r["problems"]) else "FAIL"
        print(f"[{inst}] {e.script:58} {verdict:4} {r['took']:6.1f}s", flush=True)
        return r

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        results = list(pool.map(one, runs))
    wall = time.monotonic() - started

    results.sort(key=lambda r: (r["entry"].lineno, r["instance"]))
    print()
    print(f"{'instance':8} {'script':58} {'probes':>6} {'pass':>5} {'xfail':>5} {'FAIL':>5} {'secs':>6}  result")
    bad = 0
    for r in results:
        c = r["counts"]
        failed = r["unexpected"] or r["problems"]
        bad += bool(failed)
        print(
            f"{r['instance']:8} {r['entry'].script:58} {c.get('TOTAL', '-'):>6} "
            f"{c.get('PASS', '-'):>5} {len(r['expected']):>5} {len(r['unexpected']):>5} "
            f"{r['took']:6.1f}  {'FAIL' if failed else 'ok'}"
        )
    print(f"\n{len(results)} script runs in {wall:.0f}s wall; logs in {opts.logs}")
    for r in results:
        tag = f"[{r['instance']}] {r['entry'].script}"
        for p in r["problems"]:
            print(f"FAIL {tag}: {p} (log: {r['log']})")
        for name, err in r["unexpected"]:
            print(f"FAIL {tag}: probe {name!r}: {err}")
        for regex, text, _ in r["unused"]:
            print(f"note {tag}: xfail {regex!r} | {text!r} matched no failed probe this run")
    if bad:
        print(f"\n{bad} script run(s) with unexpected results", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
