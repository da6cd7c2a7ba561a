#!/usr/bin/env python3
"""TLS 1.2 probes for an AEAD-only server, written for tern's conformance run with the
tlsfuzzer library. tlsfuzzer's own scripts for these checks (test-downgrade-protection,
test-fallback-scsv, test-sessionID-resumption, test-session-ticket-resumption) offer only CBC
suites for TLS 1.2, which tern does not offer, so they cannot reach the behaviour under test.

Probes (each a fresh connection unless it says otherwise):
- sanity: a full TLS 1.2 handshake with the given suite, a request, its response;
- downgrade sentinel: a client offering at most TLS 1.2 gets a ServerHello whose random ends
  in "DOWNGRD\\x01" (RFC 8446 §4.1.3), since the server supports TLS 1.3;
- TLS 1.1 refused: a client offering at most TLS 1.1 gets protocol_version;
- fallback SCSV: a client offering at most TLS 1.2 with TLS_FALLBACK_SCSV gets
  inappropriate_fallback (RFC 7507), since the server supports TLS 1.3;
- session ID resumption, session ticket resumption: a second connection resumes the first
  (abbreviated handshake), by session ID and by ticket.

Same command line and output as tlsfuzzer's scripts: -h HOST -p PORT -C SUITE [-e PROBE]...
"""

import getopt
import sys
import traceback

from tlsfuzzer.expect import (ExpectAlert, ExpectApplicationData, ExpectCertificate,
                              ExpectChangeCipherSpec, ExpectClose, ExpectFinished,
                              ExpectNewSessionTicket, ExpectServerHello,
                              ExpectServerHelloDone, ExpectServerKeyExchange)
from tlsfuzzer.helpers import SIG_ALL, AutoEmptyExtension, session_ticket_ext_gen
from tlsfuzzer.messages import (AlertGenerator, ApplicationDataGenerator,
                                ChangeCipherSpecGenerator, ClientHelloGenerator,
                                ClientKeyExchangeGenerator, Close, Connect, FinishedGenerator,
                                ResetHandshakeHashes, ResetRenegotiationInfo)
from tlsfuzzer.runner import Runner
from tlsfuzzer.utils.lists import natural_sort_keys
from tlslite.constants import (AlertDescription, AlertLevel, CipherSuite, ExtensionType,
                               GroupName)
from tlslite.extensions import (SignatureAlgorithmsCertExtension,
                                SignatureAlgorithmsExtension, SupportedGroupsExtension)

REQUEST = bytearray(b"GET / HTTP/1.0\r\n\r\n")


def hello_exts(ticket=None):
    ext = {
        ExtensionType.renegotiation_info: None,
        ExtensionType.extended_master_secret: AutoEmptyExtension(),
        ExtensionType.supported_groups: SupportedGroupsExtension().create(
            [GroupName.x25519, GroupName.secp256r1]),
        ExtensionType.signature_algorithms: SignatureAlgorithmsExtension().create(SIG_ALL),
        ExtensionType.signature_algorithms_cert:
            SignatureAlgorithmsCertExtension().create(SIG_ALL),
    }
    if ticket is not None:
        ext[ExtensionType.session_ticket] = ticket
    return ext


def full_handshake(node, suite, version=(3, 3), ticket=None, max_protocol=None):
    """ClientHello to Finished; returns the last node."""
    ciphers = [suite, CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV]
    node = node.add_child(ClientHelloGenerator(ciphers, version=version,
                                               extensions=hello_exts(ticket)))
    node = node.add_child(ExpectServerHello(server_max_protocol=max_protocol))
    node = node.add_child(ExpectCertificate())
    node = node.add_child(ExpectServerKeyExchange())
    node = node.add_child(ExpectServerHelloDone())
    node = node.add_child(ClientKeyExchangeGenerator())
    node = node.add_child(ChangeCipherSpecGenerator())
    node = node.add_child(FinishedGenerator())
    if ticket is not None:
        node = node.add_child(ExpectNewSessionTicket())
    node = node.add_child(ExpectChangeCipherSpec())
    return node.add_child(ExpectFinished())


def request_and_close(node):
    node = node.add_child(ApplicationDataGenerator(REQUEST))
    node = node.add_child(ExpectApplicationData())
    node = node.add_child(AlertGenerator(AlertLevel.warning, AlertDescription.close_notify))
    node = node.add_child(ExpectAlert())
    node.next_sibling = ExpectClose()
    return node


def resumption(host, port, suite, by_ticket):
    """A full handshake, then a second connection that must resume it."""
    conversation = Connect(host, port)
    ticket = AutoEmptyExtension() if by_ticket else None
    node = full_handshake(conversation, suite, ticket=ticket)
    node = node.add_child(AlertGenerator(AlertLevel.warning, AlertDescription.close_notify))
    node = node.add_child(ExpectAlert())
    close = ExpectClose()
    node.next_sibling = close
    node = node.add_child(ExpectClose())
    node = node.add_child(Close())
    node = node.add_child(Connect(host, port))
    close.add_child(node)
    node = node.add_child(ResetHandshakeHashes())
    node = node.add_child(ResetRenegotiationInfo())
    ciphers = [suite, CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV]
    ext = hello_exts(session_ticket_ext_gen() if by_ticket else None)
    node = node.add_child(ClientHelloGenerator(ciphers, extensions=ext))
    node = node.add_child(ExpectServerHello(resume=True))
    if by_ticket:
        # rustls sends a fresh ticket with a resumption by ticket.
        node = node.add_child(ExpectNewSessionTicket())
    node = node.add_child(ExpectChangeCipherSpec())
    node = node.add_child(ExpectFinished())
    node = node.add_child(ChangeCipherSpecGenerator())
    node = node.add_child(FinishedGenerator())
    request_and_close(node)
    return conversation


def conversations(host, port, suite):
    convs = {}

    c = Connect(host, port)
    request_and_close(full_handshake(c, suite))
    convs["sanity"] = c

    c = Connect(host, port)
    request_and_close(full_handshake(c, suite, max_protocol=(3, 4)))
    convs["downgrade sentinel in a TLS 1.2 ServerHello"] = c

    c = Connect(host, port)
    node = c.add_child(ClientHelloGenerator(
        [suite, CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV], version=(3, 2),
        extensions=hello_exts()))
    node = node.add_child(ExpectAlert(AlertLevel.fatal, AlertDescription.protocol_version))
    node.add_child(ExpectClose())
    convs["TLS 1.1 refused with protocol_version"] = c

    c = Connect(host, port)
    node = c.add_child(ClientHelloGenerator(
        [suite, CipherSuite.TLS_FALLBACK_SCSV, CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV],
        extensions=hello_exts()))
    node = node.add_child(ExpectAlert(AlertLevel.fatal,
                                      AlertDescription.inappropriate_fallback))
    node.add_child(ExpectClose())
    convs["TLS_FALLBACK_SCSV with TLS 1.2 refused with inappropriate_fallback"] = c

    convs["session ID resumption"] = resumption(host, port, suite, by_ticket=False)
    convs["session ticket resumption"] = resumption(host, port, suite, by_ticket=True)
    return convs


def main():
    host, port, suite = "localhost", 4433, CipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    exclude, run_only = set(), None
    opts, args = getopt.getopt(sys.argv[1:], "h:p:e:C:n:")  # -n: all probes always run
    for opt, arg in opts:
        if opt == "-h":
            host = arg
        elif opt == "-p":
            port = int(arg)
        elif opt == "-e":
            exclude.add(arg)
        elif opt == "-C":
            suite = getattr(CipherSuite, arg)
    if args:
        run_only = set(args)

    convs = conversations(host, port, suite)
    names = [n for n in sorted(convs, key=natural_sort_keys)
             if n != "sanity" and n not in exclude and (run_only is None or n in run_only)]
    good, failed = 0, []
    for name in ["sanity"] + names + ["sanity"]:
        print("{0} ...".format(name))
        try:
            Runner(convs[name]).run()
        except Exception:
            print("Error while processing")
            print(traceback.format_exc())
            failed.append(name)
        else:
            good += 1
            print("OK\n")

    print("Test end")
    print("=" * 20)
    print("TOTAL: {0}".format(good + len(failed)))
    print("SKIP: {0}".format(len(exclude)))
    print("PASS: {0}".format(good))
    print("XFAIL: 0")
    print("FAIL: {0}".format(len(failed)))
    print("XPASS: 0")
    print("=" * 20)
    if failed:
        print("FAILED:")
        for name in failed:
            print("\t{0!r}".format(name))
        sys.exit(1)


if __name__ == "__main__":
    main()
