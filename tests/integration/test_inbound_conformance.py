"""The inbound SMTP/LMTP server role, driven by Python's smtplib and by raw pipelined bytes
(RFC 5321, RFC 2920 PIPELINING, RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 2034, RFC 2033 LMTP)."""
import smtplib
import socket
import time

import pytest

from harness import (DEFAULT_QUEUE, free_port, listener, reply_codes, smtp_session, wait_until)


def msg(i, to="a@d1.test"):
    return (f"From: c@sender.test\r\nTo: {to}\r\nSubject: t{i}\r\nMessage-ID: <t{i}@compose.test>\r\n"
            f"\r\nhello {i}\r\n.leading dot\r\n").encode()


@pytest.fixture
def relay(sink, serve):
    s = sink()
    port = free_port()
    mx = s.address
    srv = serve(listener(port, extra='max_message_size = "64K"\nmax_recipients = 100') +
                DEFAULT_QUEUE.format(mx=mx))
    return port, s, srv


def test_ehlo_advertises_extensions(relay):
    port, _, _ = relay
    with smtplib.SMTP("127.0.0.1", port) as c:
        code, _ = c.ehlo("composer.test")
        assert code == 250
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
            assert c.has_extn(ext), ext
        assert c.esmtp_features["size"] == str(64 * 1024)
        assert c.noop()[0] == 250
        assert c.verify("someone@d1.test")[0] == 252
        assert c.docmd("HELP")[0] == 214
        assert c.rset()[0] == 250
        assert c.docmd("EXPN", "list")[0] == 502


def test_multi_recipient_message_is_delivered_to_each_once(relay):
    port, s, srv = relay
    rcpts = [f"r{i}@d{i % 3}.test" for i in range(5)]
    with smtplib.SMTP("127.0.0.1", port) as c:
        refused = c.sendmail("c@sender.test", rcpts, msg(1, rcpts[0]))
        assert refused == {}
    counts = s.wait_messages(1)
    wait_until(lambda: s.counts()["recipients"] == 5, what="5 recipients")
    counts = s.counts()
    assert counts["duplicates"] == 0
    assert sorted(counts["domains"]) == ["d0.test", "d1.test", "d2.test"]
    finals = srv.wait_finals(5)
    assert sorted(e["rcpt"] for e in finals) == sorted(rcpts)
    assert all(e["event"] == "delivered" for e in finals)


def test_pipelined_commands_get_replies_in_order(relay):
    port, s, _ = relay
    wire = ("EHLO composer.test\r\nMAIL FROM:<c@sender.test>\r\nRCPT TO:<a@d1.test>\r\n"
            "RCPT TO:<bad address>\r\nRCPT TO:<b@d2.test>\r\nDATA\r\n")
    body = "Subject: p\r\nMessage-ID: <p1@x>\r\n\r\nbody\r\n.\r\n"
    second = "MAIL FROM:<c@sender.test>\r\nRCPT TO:<c@d3.test>\r\nDATA\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220")
        sock.sendall(wire.encode())
        lines = []
        while not lines or not lines[-1].startswith(b"354"):
            lines.append(f.readline())
        codes = [int(l[:3]) for l in lines if l[3:4] == b" "]
        assert codes == [250, 250, 250, 501, 250, 354]
        # The content, then the next transaction, in one write (RFC 2920 §3.1).
        sock.sendall((body + second).encode())
        codes = [int(f.readline()[:3]) for _ in range(4)]
        assert codes == [250, 250, 250, 354]
        sock.sendall(b"Message-ID: <p2@x>\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250")
        assert f.readline().startswith(b"221")
    wait_until(lambda: s.counts()["recipients"] == 3, what="3 recipients")


def test_sequence_syntax_and_unknown_commands(relay):
    port, _, _ = relay
    out = smtp_session(port, "MAIL FROM:<a@b.test>\r\nEHLO x\r\nRCPT TO:<a@d1.test>\r\nDATA\r\n"
                             "MAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nFROB\r\nMAIL FROM:<bad\r\n"
                             "RCPT TO:<@>\r\nDATA now\r\nQUIT\r\n")
    codes = reply_codes(out)
    assert codes == [220, 503, 250, 503, 503, 250, 503, 500, 503, 501, 501, 221]
    assert "5.5.1" in out and "5.5.2" in out


def test_size_limits(relay):
    port, s, _ = relay
    out = smtp_session(port, "EHLO x\r\nMAIL FROM:<a@b.test> SIZE=999999\r\nQUIT\r\n")
    assert reply_codes(out)[2] == 552
    big = "x" * 70 + "\r\n"
    out = smtp_session(port, "EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<a@d1.test>\r\nDATA\r\n" +
                       big * 1000 + ".\r\nQUIT\r\n")
    codes = reply_codes(out)
    assert codes[-2:] == [552, 221], out[-300:]
    assert "5.3.4" in out


def test_line_length_limits(relay):
    port, s, srv = relay
    out = smtp_session(port, "EHLO x\r\nNOOP " + "a" * 5000 + "\r\nNOOP\r\nQUIT\r\n")
    assert reply_codes(out) == [220, 250, 500, 250, 221]
    out = smtp_session(port, "EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<a@d1.test>\r\nDATA\r\n" +
                       "y" * 2000 + "\r\n.\r\nQUIT\r\n")
    assert reply_codes(out)[-2:] == [554, 221]
    assert "5.6.0" in out
    time.sleep(0.3)
    assert s.counts()["messages"] == 0
    assert srv.finals() == []


def test_unroutable_domain_is_refused_without_general_queue(sink, serve):
    s = sink()
    mx = s.address
    port = free_port()
    serve(listener(port) + f'[[queue]]\nname = "big"\ndomains = ["big.test"]\nmx = ["{mx}"]\n')
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.ehlo("x")
        c.mail("a@b.test")
        code, text = c.rcpt("someone@elsewhere.test")
        assert code == 550 and b"5.7.1" in text
        assert c.rcpt("someone@big.test")[0] == 250


def test_client_outside_allow_cannot_relay(sink, serve):
    s = sink()
    mx = s.address
    port = free_port()
    # 127.0.0.1 connects, but only 10.0.0.0/8 may relay.
    serve(listener(port, extra='allow = ["10.0.0.0/8"]') + DEFAULT_QUEUE.format(mx=mx))
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", port)
    assert e.value.smtp_code == 554
    out = smtp_session(port, "EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<a@d1.test>\r\nDATA\r\nQUIT\r\n")
    assert reply_codes(out) == [554, 503, 503, 503, 503, 221]
    time.sleep(0.3)
    assert s.counts()["messages"] == 0


def test_max_connections(sink, serve):
    s = sink()
    mx = s.address
    port = free_port()
    serve(listener(port, extra="max_connections = 2") + DEFAULT_QUEUE.format(mx=mx))
    def hold_two():
        # The harness' own probe of the port may still hold a slot for a moment.
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        if all(c.recv(100).startswith(b"220") for c in conns):
            return conns
        for c in conns:
            c.close()
        return None
    held = wait_until(hold_two, what="two sessions")
    out = smtp_session(port, "")
    assert out.startswith("421") and "4.7.0" in out
    for h in held:
        h.close()
    wait_until(lambda: smtp_session(port, "QUIT\r\n").startswith("220"), what="a free slot")


def test_idle_timeout(sink, serve):
    s = sink()
    mx = s.address
    port = free_port()
    body = listener(port).replace('idle_timeout = "30s"', 'idle_timeout = "300ms"')
    serve(body + DEFAULT_QUEUE.format(mx=mx))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO x\r\n")
        while f.readline().startswith(b"250-"):
            pass
        line = f.readline()
        assert line.startswith(b"421 4.4.2"), line
        assert f.readline() == b""  # closed


def test_lmtp_gives_one_reply_per_recipient(sink, serve):
    s = sink()
    mx = s.address
    port = free_port()
    serve(listener(port, protocol="lmtp") + DEFAULT_QUEUE.format(mx=mx))
    c = smtplib.LMTP("127.0.0.1", port)
    try:
        assert c.ehlo()[0] == 250
        c.mail("c@sender.test")
        c.rcpt("a@d1.test")
        c.rcpt("b@d2.test")
        # One reply per recipient after the data (RFC 2033 §4.2); smtplib reads the first.
        assert c.data(msg(5))[0] == 250
        code, text = c.getreply()
        assert code == 250 and b"b@d2.test" in text
    finally:
        c.quit()
    out = smtp_session(port, "EHLO x\r\nLHLO x\r\nQUIT\r\n")
    assert reply_codes(out) == [220, 500, 250, 221]
    wait_until(lambda: s.counts()["recipients"] == 2, what="2 recipients")


def test_unix_socket_listener(sink, serve, tmp_path):
    s = sink()
    mx = s.address
    path = tmp_path / "mma.sock"
    serve(f'[[listener]]\naddress = "unix:{path}"\n' + DEFAULT_QUEUE.format(mx=mx), wait=False)
    wait_until(lambda: path.exists(), what="the unix socket")
    with socket.socket(socket.AF_UNIX) as u:
        u.connect(str(path))
        f = u.makefile("rb")
        assert f.readline().startswith(b"220")
        u.sendall(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\nDATA\r\n")
        while not f.readline().startswith(b"354"):
            pass
        u.sendall(b"Message-ID: <unix@x>\r\n\r\nvia unix\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250")
    s.wait_messages(1)
