#!/usr/bin/env python3
"""Judges testssl.sh JSON results for tern: every finding of severity LOW or worse (and every
WARN/FATAL, a check that could not run) fails, unless it is one of the EXPLAINED ids below
with exactly the expected finding. Prints a table and exits 1 on anything unexplained.

    testssl_judge.py NAME=RESULT.json [NAME=RESULT.json ...]
"""

import json
import re
import sys

BAD = ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL")

# TLS 1.2/1.3 suites that are all AEAD with (EC)DHE: testssl 3.2 rates "no server cipher order"
# INFO when all offered suites are equally strong (testssl PR #2235, issue #1311), and Mozilla's
# guidelines let the client choose then (it knows whether it has AES hardware); the Debian
# 3.0.8 package predates that and always says HIGH.
STRONG = re.compile(
    r"^TLS_(ECDHE_(RSA|ECDSA)_WITH_)?(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$"
)


def all_ciphers_strong(results):
    """Every suite the scan found (its -E list) is TLS 1.2/1.3, AEAD, with ECDHE."""
    found = [r["finding"] for r in results if r["id"].startswith("cipher-")]
    return bool(found) and all(
        f.startswith(("TLS 1.2 ", "TLS 1.3 ")) and STRONG.match(f.split()[-1]) for f in found
    )


# id -> (exact finding, condition or None, why it does not count against tern)
EXPLAINED = {
    "cert_revocation": (
        "Neither CRL nor OCSP URI provided",
        None,
        "test certificate: the throwaway CA names no CRL or OCSP responder (certificates from "
        "a public CA do)",
    ),
    "cipher_order": (
        "NOT a cipher order configured",
        all_ciphers_strong,
        "every suite offered is AEAD with ECDHE (checked from this run's cipher list), so the "
        "client may choose (Mozilla's guidance); testssl 3.2 rates this INFO (PR #2235), the "
        "3.0.8 package HIGH",
    ),
    "engine_problem": (
        "No engine or GOST support via engine with your /usr/bin/openssl",
        None,
        "about the scanner, not the server: the machine's OpenSSL 3 has no GOST engine, which "
        "only GOST cipher checks need (tern offers no GOST suites; rustls has none)",
    ),
    "sessionresumption_ticket": (
        "check failed because of connect problem",
        None,
        "testssl 3.0.8's TLS 1.3 ticket check closes right after the handshake and sometimes "
        "before the ticket arrives (it follows the client's Finished, RFC 8446 §4.6.1); "
        "testssl.sh checks ticket resumption itself with openssl s_client instead",
    ),
}

# A scan that silently skipped a section must not pass: these ids must be present.
REQUIRED = [
    "SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "cipher_order", "PFS",
    "cert_chain_of_trust", "heartbleed", "ROBOT", "fallback_SCSV", "secure_renego",
    "cipher-tls1_3_x1301",
]
# What tern offers and refuses (protocols): checked, not only rated.
EXPECT = {
    "SSLv2": "not offered", "SSLv3": "not offered", "TLS1": "not offered",
    "TLS1_1": "not offered", "TLS1_2": "offered", "TLS1_3": "offered with final",
    "cert_chain_of_trust": "passed.",
}


def judge(name, path):
    with open(path) as f:
        results = json.load(f)
    if isinstance(results, dict):  # --jsonfile-pretty
        results = [f for s in results.get("scanResult", []) for v in s.values()
                   if isinstance(v, list) for f in v]
    bad, explained = [], []
    ids = {r["id"] for r in results}
    for rid in REQUIRED:
        if rid not in ids:
            bad.append((rid, "MISSING", "the scan did not report it"))
    by_id = {r["id"]: r for r in results}
    for rid, want in EXPECT.items():
        got = by_id.get(rid, {}).get("finding")
        if got is not None and got != want:
            bad.append((rid, by_id[rid]["severity"], f"{got!r}, expected {want!r}"))
    for r in results:
        if r["severity"] not in BAD:
            continue
        why = EXPLAINED.get(r["id"])
        if why and r["finding"] == why[0] and (why[1] is None or why[1](results)):
            explained.append((r["id"], r["severity"], why[2]))
        else:
            bad.append((r["id"], r["severity"], r["finding"]))
    counts = {}
    for r in results:
        counts[r["severity"]] = counts.get(r["severity"], 0) + 1
    return bad, explained, counts


def main():
    failed = False
    rows = []
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        bad, explained, counts = judge(name, path)
        rows.append((name, counts, bad, explained))
        failed |= bool(bad)
    print(f"{'instance':8} {'OK':>4} {'INFO':>4} {'LOW+':>4} {'explained':>9}  result")
    for name, counts, bad, explained in rows:
        worse = sum(counts.get(s, 0) for s in BAD)
        print(f"{name:8} {counts.get('OK', 0):>4} {counts.get('INFO', 0):>4} {worse:>4} "
              f"{len(explained):>9}  {'FAIL' if bad else 'ok'}")
    for name, _, bad, explained in rows:
        for rid, sev, why in explained:
            print(f"explained [{name}] {sev} {rid}: {why}")
        for rid, sev, finding in bad:
            print(f"FAIL [{name}] {sev} {rid}: {finding}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
