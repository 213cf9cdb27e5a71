"""Peers that are not our code: Postfix's smtp-source injecting and smtp-sink receiving, and
swaks. Every test checks counts: what was acknowledged was delivered, once."""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import MMA, Process, SLOW, free_port, listener, wait_port, wait_until

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"



def queue(mx, max_mta=50):
    return f'[[queue]]\nname = "general"\nmx = ["{mx}"]\nmax_mta = {max_mta}\nretry_delay = "100ms"\n'


@pytest.mark.skipif(not Path(SMTP_SOURCE).exists(), reason="Postfix smtp-source is not installed")
def test_smtp_source_10000_messages_at_concurrency_20(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + queue(s.address))
    # -s 20 sessions, -m 10000 messages, -l 2000 bytes each, 5 recipients spread as %d@ addresses.
    r = subprocess.run([SMTP_SOURCE, "-s", "20", "-m", "10000", "-l", "2000", "-f", "composer@sender.test",
                        "-t", "rcpt@peer.test", "-M", "composer.test", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=300 * SLOW)
    assert r.returncode == 0, r.stderr
    counts = s.wait_messages(10000, timeout=120)
    # smtp-source gives every message the same recipient but no Message-ID; count recipients.
    assert counts["recipients"] == 10000
    finals = srv.wait_finals(10000, timeout=60)
    assert len(finals) == 10000 and all(e["event"] == "delivered" for e in finals)


@pytest.mark.skipif(not Path(SMTP_SINK).exists(), reason="Postfix smtp-sink is not installed")
def test_postfix_smtp_sink_as_receiver(serve, tmp_path):
    # smtp-sink drops privileges (to nobody, when run as root): its dump directory must be
    # reachable by that user, which pytest's private tmp_path is not.
    dump = Path(tempfile.mkdtemp(prefix="mma-smtp-sink-"))
    os.chmod(dump, 0o777)
    sport = free_port()
    args = [SMTP_SINK, "-d", f"{dump}/%M.", "-c", f"127.0.0.1:{sport}", "256"]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "nobody"]
    receiver = Process(args, tmp_path / "smtp-sink.log")
    try:
        wait_port("127.0.0.1", sport)
        port = free_port()
        srv = serve(listener(port) + queue(f"127.0.0.1:{sport}", max_mta=10))
        r = subprocess.run([MMA, "compose", "--synthetic", "500", "--domains", "20", "-s", f"127.0.0.1:{port}",
                            "-n", "5", "--progress", "never"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        finals = srv.wait_finals(500, timeout=60)
        assert all(e["event"] == "delivered" for e in finals)
        def dumped():
            files = [p for p in dump.rglob("*") if p.is_file()]
            return files if len(files) >= 500 else None
        files = wait_until(dumped, timeout=30, what="500 dumped messages")
        ids = set()
        for f in files:
            m = re.search(rb"Message-ID: (<[^>]+>)", f.read_bytes())
            assert m, f
            ids.add(m.group(1))
        assert len(ids) == 500  # each once
    finally:
        receiver.stop()
        shutil.rmtree(dump, ignore_errors=True)


@pytest.mark.skipif(not Path(SWAKS).exists(), reason="swaks is not installed")
def test_swaks_with_pipelining(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + queue(s.address))
    r = subprocess.run([SWAKS, "--server", f"127.0.0.1:{port}", "--pipeline", "--from", "c@sender.test",
                        "--to", "a@d1.test,b@d2.test", "--header", "Message-ID: <swaks@x>",
                        "--body", "hello from swaks"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PIPELINING" in r.stdout
    wait_until(lambda: s.counts()["recipients"] == 2, what="2 recipients")
    assert {e["rcpt"] for e in srv.wait_finals(2)} == {"a@d1.test", "b@d2.test"}
    # And swaks as an LMTP client of an LMTP listener.
    lport = free_port()
    srv2 = serve(listener(lport, protocol="lmtp") + queue(s.address), name="lmtp")
    r = subprocess.run([SWAKS, "--server", f"127.0.0.1:{lport}", "--protocol", "LMTP", "--from", "c@sender.test",
                        "--to", "c@d3.test", "--header", "Message-ID: <swaks-lmtp@x>"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(srv2.wait_finals(1)) == 1
