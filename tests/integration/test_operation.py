"""Running it: --check, the configuration reference, --stdio (the patent's pipe input),
statistics on SIGUSR1, and a clean SIGTERM."""
import signal
import subprocess
from pathlib import Path

from harness import MMA, ROOT, DEFAULT_QUEUE, SLOW, free_port, listener, wait_until



def test_check_accepts_a_good_config_and_names_file_line_and_key(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(listener(2525) + DEFAULT_QUEUE.format(mx="127.0.0.1:2526"))
    r = subprocess.run([MMA, "serve", "-c", str(good), "--check"], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[listener]]\naddress = "127.0.0.1:2525"\n\n[[queue]]\nname = "g"\nmx = ["127.0.0.1:2526"]\n'
                   'max_mta = -3\n')
    r = subprocess.run([MMA, "serve", "-c", str(bad), "--check"], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{bad}:7: key 'max_mta' in [[queue]] \"g\"" in r.stderr
    r = subprocess.run([MMA, "serve", "-c", str(tmp_path / "missing.toml"), "--check"], capture_output=True, text=True)
    assert r.returncode != 0 and "missing.toml" in r.stderr


def test_the_configuration_reference_is_current():
    r = subprocess.run([MMA, "config-reference"], capture_output=True, text=True, check=True)
    assert (ROOT / "docs" / "CONFIG.md").read_text() == r.stdout, \
        "docs/CONFIG.md is stale: regenerate it with `mma config-reference > docs/CONFIG.md`"


def test_stdio_session_delivers_then_exits(sink, tmp_path):
    s = sink()
    cfg = tmp_path / "stdio.toml"
    acct = tmp_path / "acct.jsonl"
    cfg.write_text(f'[server]\naccounting_log = "{acct}"\nhostname = "mma.test"\n' +
                   DEFAULT_QUEUE.format(mx=s.address))
    session = ("EHLO composer\r\nMAIL FROM:<c@sender.test>\r\nRCPT TO:<a@d1.test>\r\nRCPT TO:<b@d2.test>\r\n"
               "DATA\r\nMessage-ID: <stdio@x>\r\n\r\nthrough a pipe\r\n.\r\nQUIT\r\n")
    r = subprocess.run([MMA, "serve", "-c", str(cfg), "--stdio"], input=session.encode(), capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    codes = [l[:3] for l in r.stdout.decode().split("\r\n") if l[3:4] == " "]
    assert codes == ["220", "250", "250", "250", "250", "354", "250", "221"]
    # It exited only after delivering what it had acknowledged.
    wait_until(lambda: s.counts()["recipients"] == 2, what="2 recipients")
    assert sum('"event":"delivered"' in l for l in acct.read_text().splitlines()) == 2


def test_sigusr1_logs_queue_statistics_and_sigterm_exits_cleanly(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + DEFAULT_QUEUE.format(mx=s.address))
    r = subprocess.run([MMA, "compose", "--synthetic", "50", "--domains", "5", "-s", f"127.0.0.1:{port}",
                        "-n", "2", "--progress", "never"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    srv.wait_finals(50)
    srv.process.proc.send_signal(signal.SIGUSR1)
    line = wait_until(lambda: next((l for l in srv.output().splitlines() if "queue general:" in l), None),
                      what="statistics in the log")
    for field in ("msg_count=50", "workers=", "ready=", "queued=0", "peak_mtas=", "peak_msgs=", "delivered=50"):
        assert field in line, line
    # Connections opened: each worker opened its one and kept it for all its jobs.
    stat = dict(kv.split("=", 1) for kv in line.split("queue general: ", 1)[1].split())
    assert 1 <= int(stat["connections"]) <= int(stat["peak_mtas"]), line
    assert srv.stop() == 0
    assert "all queues are empty" in srv.output()


def test_statistics_include_the_spool_group_commits(sink, serve, tmp_path):
    s = sink()
    port = free_port()
    srv = serve(f'[spool]\npath = "{tmp_path / "spool"}"\n' + listener(port, ack="spooled") +
                DEFAULT_QUEUE.format(mx=s.address))
    r = subprocess.run([MMA, "compose", "--synthetic", "200", "--domains", "5", "-s", f"127.0.0.1:{port}",
                        "-n", "8", "--progress", "never"], capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stderr
    srv.wait_finals(200)
    srv.process.proc.send_signal(signal.SIGUSR1)
    line = wait_until(lambda: next((l for l in srv.output().splitlines() if "spool: stored=" in l), None),
                      what="spool statistics in the log")
    f = dict(kv.split("=") for kv in line.split("spool: ", 1)[1].split())
    assert f["stored"] == "200" and f["recipients"] == "200" and f["refused"] == "0", line
    groups = int(f["groups"])
    # Every message was synced, in at most one group each, and 8 sessions could share a sync.
    assert 1 <= groups <= 200 and int(f["syncs"]) == groups, line
    assert abs(float(f["per_group"]) - 200 / groups) < 0.1, line
    assert float(f["commit_ms"]) <= float(f["commit_max_ms"]), line

    def all_removed():
        srv.process.proc.send_signal(signal.SIGUSR1)
        return "removed=200 " in srv.output()
    wait_until(all_removed, interval=0.2, what="every delivered recipient removed from the spool")


def test_statistics_are_logged_at_the_interval(sink, serve):
    s = sink()
    srv = serve(listener(free_port()) + DEFAULT_QUEUE.format(mx=s.address), stats_interval="200ms")
    wait_until(lambda: srv.output().count("queue general:") >= 3, what="three periodic statistics lines")


def test_sigterm_refuses_new_mail_and_every_acknowledged_recipient_keeps_one_outcome(sink, serve):
    import collections
    import smtplib
    import threading
    s = sink("--data-delay", "400ms")  # slower than the composer: mail piles up in the queue
    port = free_port()
    srv = serve(listener(port) + DEFAULT_QUEUE.format(mx=s.address).replace("max_mta = 20", "max_mta = 2"),
                shutdown_grace="1s")
    acked, refused = [], []

    def composer():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                for i in range(10000):
                    c.sendmail("a@b.test", [f"r{i}@x.test"], f"Message-ID: <t{i}@x>\r\n\r\nx\r\n".encode())
                    acked.append(f"r{i}@x.test")
        except smtplib.SMTPSenderRefused as e:
            refused.append(e.smtp_code)
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            pass

    t = threading.Thread(target=composer)
    t.start()
    wait_until(lambda: len(acked) >= 20, what="20 acknowledged messages")
    srv.process.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert srv.process.proc.wait(30) == 0
    assert refused == [421]  # RFC 5321 §3.8: the next MAIL after SIGTERM
    finals = collections.Counter(e["rcpt"] for e in srv.finals())
    # Every acknowledged recipient has exactly one final outcome: delivered, or failed at shutdown.
    assert all(finals[r] == 1 for r in acked), [r for r in acked if finals[r] != 1][:5]
    failed = [e for e in srv.finals() if e["event"] == "failed"]
    assert failed and all("mma stopped before delivering it" in e["reply"] for e in failed)
    assert "logged as failed" in srv.output()
