"""Bad input gets its reply or a clean close; the daemon keeps serving; nothing acknowledged is
lost (over-long lines, megabytes of garbage, commands out of order, a client gone mid-DATA)."""
import os
import random
import smtplib
import socket
import time

from harness import DEFAULT_QUEUE, free_port, listener, reply_codes, smtp_session, wait_until



def send_ok(port, n, tag):
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(n):
            c.sendmail("c@sender.test", [f"{tag}{i}@d1.test"], f"Message-ID: <{tag}{i}@x>\r\n\r\nok\r\n".encode())


def test_hostile_clients_do_not_hurt_the_daemon(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + DEFAULT_QUEUE.format(mx=s.address))
    send_ok(port, 5, "before")

    # 10 MB of garbage, with and without line breaks: replies, then a clean close (421).
    rnd = random.Random(42)
    garbage = bytes(rnd.getrandbits(8) for _ in range(1 << 20)) * 10
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.recv(100)
        try:
            c.sendall(garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed first: fine
        data = b""
        try:
            while chunk := c.recv(65536):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"421" in data or b"500" in data

    # One endless line without CRLF: 500 once, then the connection still works.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"A" * 300000 + b"\r\nNOOP\r\n")
        assert f.readline().startswith(b"500")
        assert f.readline().startswith(b"250")

    # Commands out of order.
    out = smtp_session(port, "DATA\r\nRCPT TO:<a@d1.test>\r\nEHLO x\r\nDATA\r\nQUIT\r\n")
    assert reply_codes(out) == [220, 503, 503, 250, 503, 221]

    # A client that vanishes mid-DATA: nothing was acknowledged, nothing is delivered.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<vanish@d1.test>\r\nDATA\r\n")
        while not f.readline().startswith(b"354"):
            pass
        c.sendall(b"Message-ID: <vanish@x>\r\n\r\nhalf a mess")
    # NUL bytes and other controls in commands.
    out = smtp_session(port, "EHLO x\r\nNO\x00OP\r\nQUIT\r\n")
    assert reply_codes(out) == [220, 250, 500, 221]

    send_ok(port, 5, "after")
    counts = s.wait_messages(10)
    time.sleep(0.5)
    counts = s.counts()
    assert counts["messages"] == 10 and counts["duplicates"] == 0
    finals = srv.finals()
    assert sorted(e["rcpt"] for e in finals) == sorted(
        [f"before{i}@d1.test" for i in range(5)] + [f"after{i}@d1.test" for i in range(5)])
    assert srv.process.alive()


def test_many_concurrent_clients_and_abrupt_disconnects(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + DEFAULT_QUEUE.format(mx=s.address))
    socks = []
    for i in range(200):
        c = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            c.sendall(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\n")
        socks.append(c)
    for c in socks:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        c.close()
    send_ok(port, 3, "still")
    s.wait_messages(3)
    assert srv.process.alive()
