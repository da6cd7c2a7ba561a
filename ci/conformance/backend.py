#!/usr/bin/env python3
"""The conformance runs' backend: on 127.0.0.1, port 0 (printed as `port N`), answers each
connection's request head (up to a blank line, CRLF or bare LF as tlsfuzzer sends it) with one
write of a small HTTP/1.0 response, then closes. One thread per connection."""

import socket
import threading

RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


def serve(conn):
    try:
        conn.settimeout(30)
        head = b""
        while b"\n\n" not in head and b"\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        if head:
            conn.sendall(RESPONSE)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    print(f"port {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
