"""`mma sink`, the simulated internet, is a test instrument: its counts, reports and delays
must be right for any other test to mean anything."""
import json
import signal
import smtplib
import socket
import time

from harness import MMA, Process, free_port, wait_until


def test_reports_on_request_and_on_exit_and_counts_duplicates(tmp_path):
    port = free_port()
    report = tmp_path / "r.json"
    p = Process([MMA, "sink", "--listen", f"127.0.0.1:{port}", "--report", str(report)], tmp_path / "s.log")
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                return True
            except OSError:
                return False
        wait_until(listening, what="the sink")
        p.proc.send_signal(signal.SIGUSR1)
        empty = wait_until(lambda: json.loads(report.read_text()) if report.exists() else None,
                           what="the first report")
        assert empty["messages"] == 0 and "last_message_at" not in empty
        report.unlink()
        with smtplib.SMTP("127.0.0.1", port) as c:
            msg = b"Message-ID: <same@x>\r\n\r\nhi\r\n"
            c.sendmail("a@b.test", ["x@one.test", "y@two.test"], msg)
            before_last = time.time()
            c.sendmail("a@b.test", ["x@one.test"], msg)  # the same Message-ID and recipient again
            after_last = time.time()
        p.proc.send_signal(signal.SIGUSR1)
        counts = wait_until(lambda: json.loads(report.read_text()) if report.exists() else None,
                            what="the report")
        assert counts["messages"] == 2 and counts["recipients"] == 3
        # When the last message was accepted, by the wall clock: benchmarks end their runs there.
        assert before_last <= counts["last_message_at"] <= after_last
        assert counts["duplicates"] == 1
        assert counts["domains"]["one.test"] == {"messages": 2, "recipients": 2}
        assert counts["listeners"][f"127.0.0.1:{port}"]["messages"] == 2
    finally:
        assert p.stop() == 0
    final = json.loads(report.read_text())
    assert final["messages"] == 2 and final["current_sessions"] == 0


def test_delays_and_scripted_refusals(tmp_path):
    port = free_port()
    p = Process([MMA, "sink", "--listen", f"127.0.0.1:{port}", "--reply-delay", "200ms", "--data-delay",
                 "300ms", "--report", str(tmp_path / "r.json"), "--report-every", "100ms"], tmp_path / "s.log")
    try:
        wait_until(lambda: (tmp_path / "r.json").exists(), what="the sink")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            start = time.time()
            c.noop()
            assert time.time() - start >= 0.2
            c.ehlo("client.test")
            c.mail("a@b.test")
            assert c.rcpt("reject-1@x.test")[0] == 550
            assert c.rcpt("defer-1@x.test")[0] == 451
            assert c.rcpt("ok@x.test")[0] == 250
            start = time.time()
            assert c.data(b"Message-ID: <d@x>\r\n\r\nx\r\n")[0] == 250
            assert time.time() - start >= 0.7  # DATA's 354 and the final reply: 2 x 200 + 300 ms
    finally:
        p.stop()
