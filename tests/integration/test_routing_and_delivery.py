"""Router → Queue → MtaWorker: routing by domain, one body shared by the jobs of a split
message, parallel outbound connections bounded by max_mta, connection reuse."""
import smtplib
import subprocess
from pathlib import Path

from harness import MMA, free_port, listener, wait_until


def two_queues(big_mx, general_mx, big_extra="", general_extra=""):
    return (f'[[queue]]\nname = "big"\ndomains = ["big.test", "*.big.test"]\nmx = ["{big_mx}"]\n'
            f'max_mta = 50\n{big_extra}\n'
            f'[[queue]]\nname = "general"\nmx = ["{general_mx}"]\nmax_mta = 200\n{general_extra}\n')


def test_routing_by_domain_and_split_message_keeps_its_body(sink, serve, tmp_path):
    port = free_port()
    sport = free_port("127.0.0.2")
    big_dir, gen_dir = tmp_path / "big", tmp_path / "general"
    big = sink("--maildir", str(big_dir), listen=[f"127.0.0.2:{sport}"], name="big")
    gen = sink("--maildir", str(gen_dir), listen=[f"127.0.0.1:{sport}"], name="general")
    srv = serve(listener(port) + two_queues(f"127.0.0.2:{sport}", f"127.0.0.1:{sport}"))
    body_text = "".join(f"line {i} of a body that must arrive intact\r\n" for i in range(2000))
    body_text += ".a line starting with a dot\r\n..two dots\r\n.\r\nnot the end\r\n"
    text = ("From: c@sender.test\r\nSubject: split\r\nMessage-ID: <split@compose.test>\r\n\r\n" + body_text)
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("c@sender.test", ["u1@big.test", "u2@x.big.test", "v@other.test"], text.encode())
        c.sendmail("c@sender.test", ["only@d1.test"], b"Message-ID: <g1@x>\r\n\r\ngeneral only\r\n")
        c.sendmail("c@sender.test", ["only@sub.big.test"], b"Message-ID: <b1@x>\r\n\r\nbig only\r\n")
    wait_until(lambda: big.counts()["recipients"] == 3 and gen.counts()["recipients"] == 2,
               what="both sinks to receive their share")
    assert set(big.counts()["domains"]) == {"big.test", "x.big.test", "sub.big.test"}
    assert set(gen.counts()["domains"]) == {"other.test", "d1.test"}
    finals = srv.wait_finals(5)
    assert {(e["rcpt"], e["queue"]) for e in finals} == {
        ("u1@big.test", "big"), ("u2@x.big.test", "big"), ("v@other.test", "general"),
        ("only@d1.test", "general"), ("only@sub.big.test", "big")}
    # The split message arrived, at both hosts, exactly as sent (after mma's Received: header).
    copies = []
    for d in (big_dir, gen_dir):
        for f in d.glob("*.eml"):
            raw = f.read_bytes()
            if b"Message-ID: <split@compose.test>" in raw:
                copies.append(raw)
    assert len(copies) == 2
    for raw in copies:
        header, _, body = raw.partition(b"\r\n\r\n")
        assert body == body_text.encode()
        assert b"Received: from " in header and b"([127.0.0.1])" in header and b"(mma)" in header


def test_parallel_connections_bounded_by_max_mta(sink, serve):
    port = free_port()
    s = sink("--data-delay", "100ms")
    mx = s.address
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{mx}"]\nmax_mta = 50\n')
    r = subprocess.run([MMA, "compose", "--synthetic", "2000", "--domains", "100", "-s", f"127.0.0.1:{port}",
                        "-n", "20", "--progress", "never"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = s.wait_messages(2000, timeout=120)
    assert counts["duplicates"] == 0
    # 2,000 queued messages, 100 ms per DATA reply: the queue grows to max_mta, never beyond.
    assert 40 <= counts["peak_sessions"] <= 50, counts["peak_sessions"]
    finals = srv.wait_finals(2000)
    assert sum(e["event"] == "delivered" for e in finals) == 2000


def test_connections_are_reused_across_jobs(sink, serve):
    port = free_port()
    s = sink()
    mx = s.address
    serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{mx}"]\nmax_mta = 2\n')
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(50):
            c.sendmail("c@sender.test", [f"r{i}@d.test"], f"Message-ID: <r{i}@x>\r\n\r\nx\r\n".encode())
    counts = s.wait_messages(50)
    assert counts["sessions"] <= 2


def test_batch_size_splits_recipients_into_transactions(sink, serve):
    port = free_port()
    s = sink()
    mx = s.address
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{mx}"]\nbatch_size = 3\n')
    rcpts = [f"r{i}@d.test" for i in range(10)]
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("c@sender.test", rcpts, b"Message-ID: <batch@x>\r\n\r\nx\r\n")
    wait_until(lambda: s.counts()["recipients"] == 10, what="10 recipients")
    assert s.counts()["messages"] == 4  # 3 + 3 + 3 + 1
    assert len(srv.wait_finals(10)) == 10


def test_idle_connections_close_and_max_jobs_recycles_them(sink, serve):
    port = free_port()
    s = sink()
    mx = s.address
    serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{mx}"]\nmax_mta = 1\nmax_jobs = 4\n'
          'timeouts = { idle = "300ms" }\n')
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(10):
            c.sendmail("c@sender.test", [f"r{i}@d.test"], f"Message-ID: <j{i}@x>\r\n\r\nx\r\n".encode())
    s.wait_messages(10)
    # One worker, a new connection every 4 jobs: 10 jobs need 3 connections.
    assert s.counts()["sessions"] == 3
    # Idle for 300 ms, the connection is closed (with QUIT).
    wait_until(lambda: s.counts()["current_sessions"] == 0, what="the idle connection to close")


def test_init_mta_workers_connect_at_start(sink, serve):
    port = free_port()
    s = sink()
    mx = s.address
    serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{mx}"]\ninit_mta = 3\n'
          'timeouts = { idle = "60s" }\n')
    counts = wait_until(lambda: s.counts() if s.counts()["current_sessions"] == 3 else None,
                        what="3 warm connections")
    assert counts["messages"] == 0
