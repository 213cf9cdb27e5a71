"""CHUNKING (RFC 3030): mma sends a message's content as one BDAT LAST where the receiver offers it,
so the whole transaction goes in one write with no wait for a 354; the simulated internet takes
BDAT as the big mailbox providers do. The content must arrive exactly as by DATA."""
import smtplib
import socket
import threading
import time

from harness import free_port, listener, recv_until, reply_codes, smtp_session, wait_until


def bodies(sink_):
    out = {}
    for f in sink_.maildir.glob("*.eml"):
        raw = f.read_bytes()
        header, _, body = raw.partition(b"\r\n\r\n")
        for line in header.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                out[line.split(b":", 1)[1].strip().decode()] = body
    return out


def test_bdat_and_data_deliver_the_same_bytes(sink, serve, tmp_path):
    chunked = sink("--maildir", str(tmp_path / "chunked"), name="chunked")
    plain = sink("--maildir", str(tmp_path / "plain"), "--no-chunking", name="plain")
    port = free_port()
    queues = (f'[[queue]]\nname = "chunked"\ndomains = ["chunked.test"]\nmx = ["{chunked.address}"]\n'
              f'[[queue]]\nname = "general"\nmx = ["{plain.address}"]\n')
    srv = serve(listener(port) + queues, server_extra='memory_body_limit = "4M"')
    texts = {
        "dots": ".leading dot\r\n..two\r\n.\r\nline\r\n\r\n.\r\n",
        "no-final-crlf": "the last line has no CRLF",
        "big": "".join(f"line {i} .{'x' * 70}\r\n.{i}\r\n" for i in range(30000)),  # > 1 MB blocks
        # 998 octets, the most a line may have: 999 on the wire by DATA, as the dot added for
        # transparency does not count (RFC 5321 4.5.3.1.6).
        "longest-dotted": "." + "y" * 997 + "\r\nafter\r\n",
    }
    with smtplib.SMTP("127.0.0.1", port) as c:
        for name, body in texts.items():
            msg = f"Message-ID: <{name}@x>\r\nSubject: {name}\r\n\r\n{body}"
            c.sendmail("a@b.test", [f"u@chunked.test", f"u@plain.test"], msg.encode())
    finals = srv.wait_finals(2 * len(texts))
    assert all(e["event"] == "delivered" for e in finals), finals
    wait_until(lambda: chunked.counts()["messages"] == 4 and plain.counts()["messages"] == 4,
               what="both sinks to hold the four messages")
    assert chunked.counts()["messages_by_bdat"] == 4  # CHUNKING offered: BDAT used
    assert plain.counts()["messages_by_bdat"] == 0  # not offered: DATA
    by_bdat, by_data = bodies(chunked), bodies(plain)
    for name, body in texts.items():
        expected = body if body.endswith("\r\n") else body + "\r\n"
        assert by_data[f"<{name}@x>"] == expected.encode(), name
        assert by_bdat[f"<{name}@x>"] == expected.encode(), name

    # A body kept in a file (past memory_body_limit) goes by DATA: its un-stuffed size is unknown.
    port2 = free_port()
    srv2 = serve(listener(port2) + queues, name="filed", server_extra='memory_body_limit = "1K"')
    with smtplib.SMTP("127.0.0.1", port2) as c:
        c.sendmail("a@b.test", ["f@chunked.test"], f"Message-ID: <filed@x>\r\n\r\n{texts['big']}".encode())
    assert srv2.wait_finals(1)[0]["event"] == "delivered"
    wait_until(lambda: chunked.counts()["messages"] == 5, what="the filed message")
    assert chunked.counts()["messages_by_bdat"] == 4
    assert bodies(chunked)["<filed@x>"] == texts["big"].encode()


def test_the_sink_reads_every_chunk_even_refused_ones(sink, tmp_path):
    s = sink("--maildir", str(tmp_path / "m"))
    host, port = s.address.rsplit(":", 1)
    body = b".dot line\r\nBDAT 5 LAST\r\n"  # looks like a command; it is content
    session = (b"EHLO c.test\r\n"
               b"BDAT 4 LAST\r\nQUIT"  # no transaction: 503, and its 4 octets are not a command
               b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n"
               b"BDAT 10\r\n" + body[:10] + b"BDAT " + str(len(body) - 10).encode() + b" LAST\r\n" + body[10:] +
               b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nBDAT ten LAST\r\n")
    text = smtp_session(int(port), session, read_timeout=2.0)
    # The greeting, EHLO, the refused BDAT, MAIL, RCPT, the first chunk, the last, MAIL, RCPT, the unreadable BDAT.
    assert reply_codes(text) == [220, 250, 503, 250, 250, 250, 250, 250, 250, 501], text
    assert "CHUNKING" in text
    assert "10 octets received" in text
    wait_until(lambda: s.counts()["messages"] == 1, what="the chunked message")
    assert s.counts()["messages_by_bdat"] == 1
    (stored,) = s.maildir.glob("*.eml")
    assert stored.read_bytes().endswith(b"\r\n" + body)


def test_mma_serve_takes_bdat_as_it_takes_data(sink, serve, tmp_path):
    s = sink("--maildir", str(tmp_path / "m"))
    port = free_port()
    # A small memory_body_limit: the chunked content moves to a body file as it arrives.
    srv = serve(listener(port, extra='max_message_size = "64K"') +
                f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n', server_extra='memory_body_limit = "2K"')
    small = b"Message-ID: <bdat1@x>\r\n\r\n.dot\r\nBDAT 3 LAST\r\nend"
    large = b"Message-ID: <bdat2@x>\r\n\r\n" + b"".join(b".%05d filler line\r\n" % i for i in range(500))
    session = (b"EHLO c.test\r\n"
               b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\n"
               b"BDAT 20\r\n" + small[:20] + b"BDAT " + str(len(small) - 20).encode() + b" LAST\r\n" + small[20:] +
               b"MAIL FROM:<a@b.test>\r\nRCPT TO:<v@d1.test>\r\nBDAT " + str(len(large)).encode() + b" LAST\r\n" +
               large +
               b"MAIL FROM:<a@b.test>\r\nRCPT TO:<w@d1.test>\r\nDATA\r\n")  # DATA still works after
    text = smtp_session(port, session + b"Message-ID: <data3@x>\r\n\r\nby DATA\r\n.\r\nQUIT\r\n")
    codes = reply_codes(text)
    assert "CHUNKING" in text
    # greeting, EHLO, (MAIL, RCPT, chunk, last), (MAIL, RCPT, last), (MAIL, RCPT, 354, final), QUIT
    assert codes == [220, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 354, 250, 221], text
    assert srv.wait_finals(3)[0]["event"] == "delivered"
    wait_until(lambda: s.counts()["messages"] == 3, what="the three messages")
    # mma sends on by BDAT what it holds in memory; the large one, in its body file, by DATA.
    assert s.counts()["messages_by_bdat"] == 2
    got = bodies(s)
    assert got["<bdat1@x>"] == b".dot\r\nBDAT 3 LAST\r\nend\r\n"
    assert got["<bdat2@x>"] == large.partition(b"\r\n\r\n")[2]
    assert got["<data3@x>"] == b"by DATA\r\n"


def test_mma_serve_refuses_bad_chunks_and_stays_in_step(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port, extra='max_message_size = "1K"') +
                f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    too_big = b"x" * 70 + b"\r\n"
    bare_cr = b"a\rb\r\n"
    text = smtp_session(port, b"EHLO c.test\r\n"
                        b"BDAT 6 LAST\r\nQUIT\r\n"  # no transaction: 503, its 6 octets are content
                        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\n"
                        b"BDAT %d LAST\r\n%s" % (len(bare_cr), bare_cr) +
                        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\n"
                        b"BDAT %d LAST\r\n" % (len(too_big) * 20) + too_big * 20 +
                        b"MAIL FROM:<a@b.test>\r\nDATA\r\nBDAT x\r\n")  # no RCPT; an unreadable BDAT
    assert reply_codes(text) == [220, 250, 503, 250, 250, 554, 250, 250, 552, 250, 503, 501], text
    assert "bare CR" in text and "5.3.4" in text
    time.sleep(0.3)
    assert srv.finals() == [] and s.counts()["messages"] == 0


def test_a_chunk_past_the_size_limit_is_refused_as_it_comes(sink, serve):
    """RFC 3030 §2: a server may refuse any chunk, and the client then sends no more. Past the
    size limit, mma serve and mma sink say 552 to the chunk that crossed it (not 250 until the
    last); a chunk already on its way gets 552 as well, and an RSET starts afresh."""
    s = sink("--max-message-size", "1024")
    port = free_port()
    srv = serve(listener(port, extra='max_message_size = "1K"') +
                f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    line = b"x" * 70 + b"\r\n"  # 72 octets
    session = (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\n"
               b"BDAT 720\r\n" + line * 10 +  # 720 octets: within 1K
               b"BDAT 720\r\n" + line * 10 +  # crosses it
               b"BDAT 72 LAST\r\n" + line +  # pipelined before the 552 could be read
               b"RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\nBDAT 72 LAST\r\n" + line +
               b"QUIT\r\n")
    host, sink_port = s.address.rsplit(":", 1)
    for target in (port, int(sink_port)):
        text = smtp_session(target, session)
        assert reply_codes(text) == [220, 250, 250, 250, 250, 552, 552, 250, 250, 250, 250, 221], text
    assert srv.wait_finals(1)[0]["event"] == "delivered"
    wait_until(lambda: s.counts()["messages"] == 2, what="the two small messages")


def test_mma_serve_ends_a_session_cleanly_with_input_still_coming(sink, serve):
    """A session mma serve ends (here: a BDAT whose size cannot be read) ends with its reply and
    end of file, and what the client still sends (the rest of its chunk) is read and dropped for
    a moment: closing with input unread makes the kernel send a reset, and some stacks let it
    destroy the reply before the client reads it."""
    s = sink()
    port = free_port()
    serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\nBDAT ten LAST\r\n" +
                  b"y" * 100000)
        data = b""
        while b"501" not in data:
            data += c.recv(65536)
        c.sendall(b"y" * 300000)  # BrokenPipeError or ConnectionResetError after a reset
        while True:
            got = c.recv(65536)
            if not got:
                break
            data += got
    assert reply_codes(data.decode()) == [220, 250, 250, 250, 501], data


def test_lmtp_does_not_offer_chunking(sink, serve):
    s = sink()
    port = free_port()
    serve(listener(port, protocol="lmtp") + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    text = smtp_session(port, b"LHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\nBDAT 3 LAST\r\nQUIT\r\n")
    assert "CHUNKING" not in text
    assert reply_codes(text)[-2:] == [502, 221]  # "3 LAST" unread: the next line is still QUIT


def test_replies_go_out_before_mma_serve_waits_for_the_rest_of_a_chunk(sink, serve):
    s = sink()
    port = free_port()
    serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        recv_until(c, b"\r\n")
        c.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\nBDAT 13 LAST\r\nhalf ")
        # RFC 2920 §3.2: the server flushes its replies before it waits for more input.
        got = recv_until(c, b"250 2.1.5")
        assert reply_codes(got.decode()) == [250, 250, 250]
        c.sendall(b"the rest")
        assert reply_codes(recv_until(c, b"\r\n").decode()) == [250]
    wait_until(lambda: s.counts()["messages"] == 1, what="the message")


def test_mail_and_rcpt_replies_do_not_wait_for_a_delivered_mode_outcome(sink, serve):
    s = sink("--data-delay", "2s")
    port = free_port()
    serve(listener(port, ack="delivered") + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        recv_until(c, b"\r\n")
        body = b"Message-ID: <slow@x>\r\n\r\nwaits for its outcome\r\n"
        c.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\n"
                  b"BDAT %d LAST\r\n%s" % (len(body), body))
        # The final reply waits the sink's 2 s; MAIL's and RCPT's, which a client reads under their
        # own (shorter) time-outs, must not.
        start = time.time()
        got = recv_until(c, b"250 2.1.5")
        assert time.time() - start < 1.5, got
        assert reply_codes(got.decode()) == [250, 250, 250]
        final = recv_until(c, b"\r\n")
        assert time.time() - start >= 1.5
        assert reply_codes(final.decode()) == [250]


def test_chunking_can_be_turned_off_on_each_side(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port, extra="chunking = false") +
                f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\nchunking = false\n')
    text = smtp_session(port, b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d1.test>\r\nBDAT 3 LAST\r\nQUIT\r\n")
    assert "CHUNKING" not in text  # the listener does not offer it ...
    assert reply_codes(text)[-2:] == [502, 221]
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("a@b.test", ["u@d1.test"], b"Message-ID: <off@x>\r\n\r\nby DATA\r\n")
    assert srv.wait_finals(1)[0]["event"] == "delivered"
    wait_until(lambda: s.counts()["messages"] == 1, what="the message")
    assert s.counts()["messages_by_bdat"] == 0  # ... and the queue does not use the sink's


def test_a_refusal_sent_before_the_server_hung_up_is_read_though_the_chunk_write_failed(serve):
    """A server that refuses MAIL may close at once, before the chunk pipelined behind it is
    written (a big one cannot be): its 550 is still read, and the message bounces with it instead
    of waiting for retries as if the connection had merely broken."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    said = []

    def refuser():
        conn, _ = lsock.accept()
        with conn:
            conn.sendall(b"220 refuser.test ESMTP\r\n")
            f = conn.makefile("rb")
            said.append(f.readline())  # EHLO
            conn.sendall(b"250-refuser.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
            said.append(f.readline())  # MAIL
            conn.sendall(b"550 5.7.1 not from you\r\n")
            f.close()
        # Closed with the rest unread: the kernel answers mma's chunk with a reset.

    t = threading.Thread(target=refuser, daemon=True)
    t.start()
    port = free_port()
    srv = serve(listener(port, extra='max_message_size = "64M"') +
                f'[[queue]]\nname = "general"\nmx = ["127.0.0.1:{lsock.getsockname()[1]}"]\n',
                server_extra='memory_body_limit = "64M"')
    body = b"Message-ID: <big@x>\r\n\r\n" + b"".join(b"%07d %s\r\n" % (i, b"z" * 90) for i in range(300000))
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("a@b.test", ["u@refused.test"], body)  # ~30 MB, more than the sockets hold
    (final,) = srv.wait_finals(1)
    t.join(5)
    lsock.close()
    assert said[1].startswith(b"MAIL FROM:<a@b.test>"), said
    assert final["event"] == "bounced", final
    assert "not from you" in final["reply"], final
