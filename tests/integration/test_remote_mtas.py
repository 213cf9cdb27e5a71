"""Real remote MTAs: a private Postfix instance as the receiver, with and without STARTTLS;
program MTAs (`mx = ["|program"]`): `mma serve --stdio` and Postfix's `sendmail -bs`; and a
process that runs out of descriptors."""
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import MMA, ROOT, Process, free_port, listener, wait_until

sys.path.insert(0, str(ROOT / "bench"))
import postfix_instance  # noqa: E402

needs_postfix = pytest.mark.skipif(not postfix_instance.available(), reason="needs root and Debian's postfix")


@pytest.fixture
def postfix_remote(tmp_path):
    """A Postfix that accepts mail for remote.test and discards it (counting it in its log)."""
    started = []

    def start(tls=False):
        work = Path(tempfile.mkdtemp(prefix="mma-postfix-remote-"))
        settings = {
            "relay_domains": "remote.test",
            "transport_maps": "inline:{remote.test=discard:}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_tls_loglevel": "1",
            "smtpd_peername_lookup": "no",
        }
        if tls:
            key, cert = work / "key.pem", work / "cert.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=remote.test", "-keyout", str(key), "-out", str(cert)],
                           check=True, capture_output=True)
            os.chmod(key, 0o644)
            settings.update({"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": str(cert),
                             "smtpd_tls_key_file": str(key)})
        else:
            settings["smtpd_tls_security_level"] = "none"
        pf = postfix_instance.PostfixInstance(work / "pf", free_port(), settings)
        pf.start()
        started.append((pf, work))
        return pf
    yield start
    for pf, work in started:
        pf.stop()
        shutil.rmtree(work, ignore_errors=True)


def maillog(pf):
    return pf.log.read_text(errors="replace") if pf.log.exists() else ""


@needs_postfix
@pytest.mark.parametrize("tls", [False, True])
def test_postfix_as_the_remote_mta(serve, postfix_remote, tls):
    pf = postfix_remote(tls=tls)
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["127.0.0.1:{pf.port}"]\nmax_mta = 5\n'
                f'tls = "{"required" if tls else "off"}"\n')
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(20):
            c.sendmail("bulk@sender.test", [f"u{i}@remote.test", f"v{i}@remote.test"],
                       f"From: bulk@sender.test\r\nSubject: {i}\r\nMessage-ID: <pf{i}@x>\r\n\r\nhello {i}\r\n"
                       f".a line that starts with a dot\r\nand one that does not\r\n".encode())
    finals = srv.wait_finals(40, timeout=60)
    assert all(e["event"] == "delivered" for e in finals), [e for e in finals if e["event"] != "delivered"][:2]
    assert all("queued as" in e["reply"] for e in finals)
    wait_until(lambda: maillog(pf).count("status=sent") >= 40, timeout=30, what="Postfix to take 40 recipients")
    # Postfix offers CHUNKING: every message went by BDAT. Its disconnect lines count the commands
    # of each session, once mma has closed its cached connections.
    srv.stop()
    sessions = wait_until(lambda: [l for l in maillog(pf).splitlines() if "disconnect" in l and " mail=" in l],
                          what="Postfix to log mma's sessions")
    assert all(" bdat=" in l and " data=" not in l for l in sessions), sessions
    log = maillog(pf)
    if tls:
        assert "Anonymous TLS connection established from" in log
    else:
        assert "TLS connection established" not in log


@needs_postfix
def test_postfix_takes_pipelined_transactions(serve, postfix_remote):
    """Postfix's smtpd offers PIPELINING and CHUNKING: over one connection, the mail that waits
    for it goes several transactions to a write (docs/DELIVERY.md), and every message arrives."""
    pf = postfix_remote()
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["127.0.0.1:{pf.port}"]\nmax_mta = 1\n'
                'tls = "off"\npipeline_within = "10s"\n')
    r = subprocess.run([MMA, "compose", "--synthetic", "300", "--big-domain", "remote.test", "--big-share", "1",
                        "-s", f"127.0.0.1:{port}", "-n", "10", "--progress", "never"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    finals = srv.wait_finals(300, timeout=120)
    assert all(e["event"] == "delivered" for e in finals), [e for e in finals if e["event"] != "delivered"][:2]
    wait_until(lambda: maillog(pf).count("status=sent") >= 300, timeout=60, what="Postfix to take 300 messages")
    srv.process.proc.send_signal(signal.SIGUSR1)
    line = wait_until(lambda: next((l for l in srv.output().splitlines() if "queue general:" in l), None),
                      what="statistics in the log")
    stats = dict(kv.split("=", 1) for kv in line.split("queue general: ", 1)[1].split())
    assert int(stats["pipelined"]) > 0, stats
    assert stats["connections"] == "1", stats


def test_a_program_mta_mma_serve_stdio(sink, serve, tmp_path):
    """The fallback of the patent: a program that speaks SMTP on stdin/stdout; here mma itself."""
    s = sink()
    inner = tmp_path / "inner.toml"
    inner.write_text(f'[server]\naccounting_log = "{tmp_path}/inner.jsonl"\nhostname = "inner.test"\n'
                     f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    port = free_port()
    srv = serve(listener(port) +
                f'[[queue]]\nname = "general"\nmx = ["|{MMA} serve --config {inner} --stdio"]\nmax_mta = 2\n'
                f'max_jobs = 5\n')
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(12):
            c.sendmail("a@b.test", [f"p{i}@x.test"], f"Message-ID: <prog{i}@x>\r\n\r\nvia a program\r\n".encode())
    finals = srv.wait_finals(12)
    assert all(e["event"] == "delivered" for e in finals)
    assert all(e["mx"].startswith("|") for e in finals)
    wait_until(lambda: s.counts()["messages"] == 12, what="the inner mma to deliver all 12")
    assert s.counts()["duplicates"] == 0


@needs_postfix
def test_a_program_mta_postfix_sendmail_bs(serve, postfix_remote):
    pf = postfix_remote()
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\n'
                f'mx = ["|/usr/sbin/sendmail -C {pf.etc} -bs"]\nmax_mta = 2\n')
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(5):
            c.sendmail("a@b.test", [f"s{i}@remote.test"], f"Message-ID: <sbs{i}@x>\r\n\r\nspooled\r\n".encode())
    finals = srv.wait_finals(5)
    assert all(e["event"] == "delivered" for e in finals), finals
    # Postfix queued them to disk (maildrop, then its queue) and delivers them on its own.
    wait_until(lambda: maillog(pf).count("status=sent") >= 5, timeout=60, what="Postfix to deliver the spooled mail")


def test_out_of_descriptors_is_logged_and_survived(sink, tmp_path):
    s = sink("--data-delay", "300ms")
    port = free_port()
    cfg = tmp_path / "fd.toml"
    acct = tmp_path / "fd.jsonl"
    cfg.write_text(f'[server]\naccounting_log = "{acct}"\nstats_interval = "0s"\n' + listener(port) +
                   f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\nmax_mta = 500\n')

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    serve = Process([MMA, "serve", "-c", str(cfg)], tmp_path / "fd.log", preexec_fn=low_limit)
    try:
        wait_until(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                                          capture_output=True).returncode == 0, what="mma to listen")
        r = subprocess.run([MMA, "compose", "--synthetic", "300", "--domains", "10", "-s", f"127.0.0.1:{port}",
                            "-n", "4", "--progress", "never"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(lambda: acct.exists() and sum('"event":"delivered"' in l for l in acct.read_text().splitlines()) == 300,
                   timeout=120, what="all 300 delivered despite the descriptor limit")
        log = serve.output()
        assert "cannot open another connection" in log and "descriptors open of 64 allowed" in log
        assert s.counts()["duplicates"] == 0
    finally:
        serve.stop()
