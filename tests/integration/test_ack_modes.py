"""Ack modes (docs/ACK_MODES.md): `received` answers once the body is in memory; `delivered`
answers once the remote MTA has: over LMTP one reply per recipient, over SMTP one reply for all."""
import smtplib
import socket
import time

from harness import DEFAULT_QUEUE, free_port, listener, smtp_session, reply_codes, wait_until



def test_lmtp_delivered_mode_gives_each_recipient_its_own_fate(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port, protocol="lmtp", ack="delivered") + DEFAULT_QUEUE.format(mx=s.address))
    rcpts = ["ok1@d1.test", "reject-me@d1.test", "ok2@d2.test"]
    c = smtplib.LMTP("127.0.0.1", port)
    try:
        assert c.ehlo()[0] == 250  # LHLO
        assert c.mail("c@sender.test")[0] == 250
        for r in rcpts:
            assert c.rcpt(r)[0] == 250
        # smtplib reads one reply after the data; LMTP sends one per recipient (RFC 2033 §4.2).
        replies = [c.data(b"Message-ID: <lmtp-safe@x>\r\n\r\nsafe mode\r\n")]
        replies += [c.getreply() for _ in rcpts[1:]]
    finally:
        c.close()
    # The remote refused one recipient with 550: the composer hears exactly that, for that one.
    assert [code for code, _ in replies] == [250, 550, 250]
    assert b"5.1.1" in replies[1][1] and b"reject-me@d1.test" in replies[1][1]
    assert b"delivered" in replies[0][1]
    wait_until(lambda: s.counts()["recipients"] == 2, what="2 recipients at the sink")
    finals = srv.wait_finals(3)
    assert sorted((e["rcpt"], e["event"]) for e in finals) == [
        ("ok1@d1.test", "delivered"), ("ok2@d2.test", "delivered"), ("reject-me@d1.test", "bounced")]


def test_smtp_delivered_mode_replies(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port, ack="delivered") + DEFAULT_QUEUE.format(mx=s.address))
    with smtplib.SMTP("127.0.0.1", port) as c:
        # All delivered: 250 once the remote MTA said so.
        c.sendmail("c@sender.test", ["a@d1.test", "b@d1.test"], b"Message-ID: <s1@x>\r\n\r\nx\r\n")
        wait_until(lambda: s.counts()["recipients"] == 2, what="2 recipients at the sink")
        # All refused: the composer gets the permanent failure.
        try:
            c.sendmail("c@sender.test", ["reject-1@d1.test", "reject-2@d1.test"], b"Message-ID: <s2@x>\r\n\r\nx\r\n")
            raise AssertionError("expected a refusal")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 554
            assert b"reject-1@d1.test" in e.smtp_error
        # Mixed: 250 (the delivered one must not be sent again), naming what was not delivered.
        c.ehlo()
        c.mail("c@sender.test")
        c.rcpt("fine@d1.test")
        c.rcpt("reject-3@d1.test")
        code, text = c.data(b"Message-ID: <s3@x>\r\n\r\nx\r\n")
        assert code == 250
        assert b"delivered to 1 of 2" in text and b"reject-3@d1.test" in text
    finals = srv.wait_finals(6)
    assert sum(e["event"] == "delivered" for e in finals) == 3
    assert sum(e["event"] == "bounced" for e in finals) == 3


def test_delivered_mode_reports_temporary_failure_when_retries_run_out(sink, serve):
    s = sink()
    port = free_port()
    queue = DEFAULT_QUEUE.format(mx=s.address) + "max_retries = 2\n"
    srv = serve(listener(port, ack="delivered") + queue)
    with smtplib.SMTP("127.0.0.1", port) as c:
        try:
            c.sendmail("c@sender.test", ["defer-x@d1.test"], b"Message-ID: <t1@x>\r\n\r\nx\r\n")
            raise AssertionError("expected a temporary failure")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 451
    srv.wait_finals(1)
    events = [e["event"] for e in srv.accounting()]
    assert events == ["deferred", "failed"]


def test_received_mode_answers_before_delivery(sink, serve):
    # The sink waits 2 s before answering DATA; the composer must not wait with it.
    s = sink("--data-delay", "2s")
    port = free_port()
    srv = serve(listener(port) + DEFAULT_QUEUE.format(mx=s.address))
    start = time.time()
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(5):
            c.sendmail("c@sender.test", [f"r{i}@d1.test"], f"Message-ID: <q{i}@x>\r\n\r\nx\r\n".encode())
    assert time.time() - start < 1.5
    assert s.counts()["messages"] == 0
    s.wait_messages(5, timeout=30)
    assert len(srv.wait_finals(5)) == 5
