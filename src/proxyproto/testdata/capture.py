#!/usr/bin/env python3
"""Captures the PROXY headers a real HAProxy sends, as test fixtures for src/proxyproto.

Run by hand (needs `haproxy` and `openssl` on PATH, loopback only):
    python3 src/proxyproto/testdata/capture.py src/proxyproto/testdata
For each scenario a client connects to an HAProxy frontend, sends PAYLOAD and closes;
HAProxy relays to a listener here that records every byte it receives: the PROXY header,
then PAYLOAD. `<name>.bin` is that recording; `manifest.txt` lists what the client side
knew independently of any parser (its own address and port, SNI, ALPN, TLS version and
cipher as Python's ssl module reports them, the certificate's CN) for the tests to compare.
"""
import os, socket, ssl, subprocess, sys, tempfile, threading, time

PAYLOAD = b"hello after the header\n"
OUT = sys.argv[1] if len(sys.argv) > 1 else "."
WORK = tempfile.mkdtemp(prefix="ppcap-")


def sh(*args):
    subprocess.run(args, check=True, cwd=WORK, capture_output=True)


def certs():
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=pp test CA")
    for name, cn in [("server", "tern.example"), ("client", "client.tern.example")]:
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        with open(os.path.join(WORK, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{cn}\n")
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-out", f"{name}.pem", "-days", "3650", "-extfile", f"{name}.ext")
    with open(os.path.join(WORK, "server.bundle"), "w") as f:
        f.write(open(os.path.join(WORK, "server.pem")).read())
        f.write(open(os.path.join(WORK, "server.key")).read())


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


captured = {}


def listen(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    srv.settimeout(20)
    def run():
        n = 0
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.settimeout(3)
            data = b""
            try:
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            c.close()
            captured.setdefault(port, []).append(data)
            n += 1
    threading.Thread(target=run, daemon=True).start()
    return srv


# (name, frontend bind family, tls?, client cert?, server line options)
SCENARIOS = [
    ("v2_ssl_cn", "v4", True, True, "send-proxy-v2 send-proxy-v2-ssl-cn"),
    ("v2_all", "v4", True, True, "send-proxy-v2 proxy-v2-options "
        "ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id"),
    ("v2_ssl_nocert_v6", "v6", True, False, "send-proxy-v2 send-proxy-v2-ssl"),
    ("v1_tcp4", "v4", False, False, "send-proxy"),
    ("v1_tcp6", "v6", False, False, "send-proxy"),
    ("v2_plain_v4", "v4", False, False, "send-proxy-v2"),
]


def main():
    certs()
    cfg = ["global", "  log stderr format raw local0 info", "defaults", "  mode tcp",
           "  log global", "  timeout connect 2s", "  timeout client 5s", "  timeout server 5s"]
    listeners, plan = [], []
    for name, fam, tls, cert, opts in SCENARIOS:
        cap = free_port()
        listeners.append(listen(cap))
        host = "127.0.0.1" if fam == "v4" else "::1"
        fport = free_port(socket.AF_INET if fam == "v4" else socket.AF_INET6, host)
        bind = f"  bind {'[::1]' if fam == 'v6' else host}:{fport}"
        if tls:
            bind += f" ssl crt {WORK}/server.bundle ca-file {WORK}/ca.pem verify optional alpn h2,http/1.1"
        cfg += [f"frontend f_{name}", bind, f"  default_backend b_{name}"]
        if "unique-id" in opts:
            cfg.append('  unique-id-format "%{+X}o\\ %ci:%cp_%fi:%fp"')
        cfg += [f"backend b_{name}", f"  server s 127.0.0.1:{cap} {opts}"]
        plan.append((name, fam, host, fport, tls, cert, cap))
    # A health check with send-proxy-v2: HAProxy sends a LOCAL header on its own connections.
    check_cap = free_port()
    listeners.append(listen(check_cap))
    cfg += ["backend b_check", f"  server s 127.0.0.1:{check_cap} send-proxy-v2 check inter 60s",
            "frontend f_check", f"  bind 127.0.0.1:{free_port()}", "  default_backend b_check"]
    with open(os.path.join(WORK, "haproxy.cfg"), "w") as f:
        f.write("\n".join(cfg) + "\n")
    hap = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(WORK, "haproxy.cfg")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        manifest = []
        for name, fam, host, fport, tls, cert, cap in plan:
            s = socket.create_connection((host, fport), timeout=5)
            src = s.getsockname()[:2]
            info = {"src": f"{src[0]} {src[1]}", "dst": f"{host} {fport}"}
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.load_verify_locations(os.path.join(WORK, "ca.pem"))
                ctx.set_alpn_protocols(["h2"])
                if cert:
                    ctx.load_cert_chain(os.path.join(WORK, "client.pem"), os.path.join(WORK, "client.key"))
                    info["cn"] = "client.tern.example"
                s = ctx.wrap_socket(s, server_hostname="tern.example")
                info.update(sni="tern.example", alpn=s.selected_alpn_protocol(),
                            version=s.version(), cipher=s.cipher()[0])
            s.sendall(PAYLOAD)
            time.sleep(0.5)
            s.close()
            for _ in range(50):
                if captured.get(cap):
                    break
                time.sleep(0.1)
            data = captured[cap][0]
            assert data.endswith(PAYLOAD), (name, data)
            with open(os.path.join(OUT, f"{name}.bin"), "wb") as f:
                f.write(data)
            manifest.append(f"{name}: " + " | ".join(f"{k}={v}" for k, v in info.items()))
        for _ in range(50):
            if captured.get(check_cap):
                break
            time.sleep(0.1)
        with open(os.path.join(OUT, "v2_local_check.bin"), "wb") as f:
            f.write(captured[check_cap][0])
        manifest.append("v2_local_check: a health check connection (LOCAL)")
        version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        with open(os.path.join(OUT, "manifest.txt"), "w") as f:
            f.write(f"# captured from {version}; payload after each header: {PAYLOAD!r}\n")
            f.write("\n".join(manifest) + "\n")
    finally:
        hap.terminate()
        out, _ = hap.communicate(timeout=10)
        for l in listeners:
            l.close()
    print(open(os.path.join(OUT, "manifest.txt")).read())


main()
