"""The disk cache: bodies above [server] memory_body_limit are written to a file as they
arrive, sent from it, and removed when their last recipient is done; in spooled mode they
survive a SIGKILL with the spool. A body directory is one instance's alone."""
import os
import signal
import smtplib
import subprocess

import pytest

from harness import MMA, Process, free_port, listener, wait_port, wait_until


def big_message(tag, lines=40000):
    """~3 MB with dot-lines, long lines and 8-bit-free text: what must come out unchanged."""
    out = [f"Message-ID: <{tag}@big>".encode(), b"Subject: large", b""]
    for i in range(lines):
        out.append(b"." if i % 997 == 0 else b".leading dot %d" % i if i % 13 == 0 else
                   b"line %d " % i + b"x" * (i % 120))
    return b"\r\n".join(out) + b"\r\n"


def delivered(sink, tag):
    for p in sink.maildir.glob("*.eml"):
        data = p.read_bytes()
        if f"<{tag}@big>".encode() in data:
            return data
    return None


def queue(sink):
    return f'[[queue]]\nname = "general"\nmx = ["{sink.address}"]\n'


def test_a_large_body_goes_through_a_file_and_arrives_unchanged(sink, serve, tmp_path):
    s = sink("--maildir", str(tmp_path / "maildir"), "--paused")
    bodies = tmp_path / "bodies"
    port = free_port()
    srv = serve(listener(port) + queue(s), server_extra=f'memory_body_limit = "64K"\nbody_dir = "{bodies}"')
    msg = big_message("one")
    small = b"Message-ID: <small@big>\r\n\r\nsmall stays in memory\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.sendmail("s@sender.test", ["a@d1.test", "b@d2.test"], msg)
        c.sendmail("s@sender.test", ["a@d1.test"], small)
    files = list(bodies.glob("*.body"))
    # One file for the large message (shared by both recipients), none for the small one.
    assert len(files) == 1, files
    assert 0 < files[0].stat().st_size - len(msg) < 10000  # the wire form: stuffed, plus Received:
    s.process.proc.send_signal(signal.SIGUSR2)  # the receiver resumes
    srv.wait_finals(3, timeout=60)
    got = delivered(s, "one")
    assert got is not None and got.endswith(msg), "the body changed on its way through the file"
    assert b"Received: from " in got
    wait_until(lambda: not list(bodies.glob("*.body")), what="the body file removed after delivery")


def test_spooled_large_bodies_survive_a_sigkill_and_are_removed_once_delivered(sink, tmp_path):
    s = sink("--maildir", str(tmp_path / "maildir"), "--paused")
    spool = tmp_path / "spool"
    port = free_port()
    cfg = tmp_path / "spooled.toml"
    cfg.write_text(f'[server]\nhostname = "mma.test"\naccounting_log = "{tmp_path}/acct.jsonl"\n'
                   f'memory_body_limit = "64K"\n[spool]\npath = "{spool}"\n' +
                   listener(port, ack="spooled") + queue(s))
    first = Process([MMA, "serve", "-c", str(cfg)], tmp_path / "first.log")
    wait_port("127.0.0.1", port)
    msgs = {f"k{i}": big_message(f"k{i}", lines=8000 + i) for i in range(4)}
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        for tag, m in msgs.items():
            c.sendmail("s@sender.test", [f"{tag}@d1.test"], m)  # each 250 means: on disk
    assert len(list((spool / "bodies").glob("*.body"))) == 4
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    second = Process([MMA, "serve", "-c", str(cfg)], tmp_path / "second.log")
    try:
        # The port is bound before the spool is read (privileges are dropped in between).
        wait_until(lambda: "spool: recovered" in second.output(), what="the recovery's report")
        assert "recovered 4 recipient(s) of 4 message(s)" in second.output()
        s.process.proc.send_signal(signal.SIGUSR2)
        for tag, m in msgs.items():
            got = wait_until(lambda: delivered(s, tag), timeout=60, what=f"{tag} delivered")
            assert got.endswith(m), f"{tag}: the recovered body differs"
        wait_until(lambda: not list((spool / "bodies").glob("*.body")), timeout=20,
                   what="body files removed with their last recipient")
    finally:
        second.stop()


def test_a_body_directory_serves_one_instance(serve, sink, tmp_path):
    s = sink()
    bodies = tmp_path / "bodies"
    serve(listener(free_port()) + queue(s), server_extra=f'body_dir = "{bodies}"')
    second = serve(listener(free_port()) + queue(s), name="second", wait=False,
                   server_extra=f'body_dir = "{bodies}"')
    assert second.process.proc.wait(timeout=20) != 0
    assert "in use by another mma" in second.output()


def test_a_body_that_cannot_be_written_gets_452_and_small_mail_still_flows(sink, serve, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(bodies)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        s = sink("--maildir", str(tmp_path / "maildir"))
        port = free_port()
        srv = serve(listener(port) + queue(s), server_extra=f'memory_body_limit = "64K"\nbody_dir = "{bodies}"')
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            with pytest.raises(smtplib.SMTPDataError) as e:
                c.sendmail("s@sender.test", ["a@d1.test"], big_message("toobig"))  # 3 MB > 1 MB
            assert e.value.smtp_code == 452 and b"4.3.1" in e.value.smtp_error
            # The session goes on; a message that fits in memory is taken.
            c.sendmail("s@sender.test", ["a@d1.test"], b"Message-ID: <fits@big>\r\n\r\nok\r\n")
        srv.wait_finals(1)
        assert "writing its body to" in srv.output() and "No space left" in srv.output()
        assert not list(bodies.glob("*.body")), "the partial file was not removed"
    finally:
        subprocess.run(["umount", "-l", str(bodies)])
