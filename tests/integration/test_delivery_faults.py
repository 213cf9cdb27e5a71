"""Every way a remote MTA can fail, at every phase (DESIGN.md §8, patent Figs. 7-8): the worker
notices, the job goes back to its queue and reaches the other host; a broken worker frees its
slot; every recipient ends delivered, once."""
import collections
import subprocess

import pytest

from harness import MMA, free_port, listener, wait_until

# data_done leaves the good host's 150 ms answer (below) a wide margin on a loaded machine: a
# timeout there would send the message again, a duplicate.
TIMEOUTS = 'timeouts = { connect = "1s", banner = "400ms", command = "400ms", data = "400ms", data_done = "1500ms" }'


def two_hosts(bad, good, extra=""):
    return (f'[[queue]]\nname = "general"\nmx = ["{bad}", "{good}"]\nmax_mta = 4\nretry_delay = "20ms"\n'
            f'retry_delay_max = "50ms"\nmax_retries = 20\n{TIMEOUTS}\n{extra}\n')


def inject(port, n):
    r = subprocess.run([MMA, "compose", "--synthetic", str(n), "--domains", "5", "-s", f"127.0.0.1:{port}",
                        "-n", "2", "--progress", "never"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("phase,kind", [
    (p, k) for p in ("banner", "ehlo", "mail", "rcpt", "data", "dot") for k in ("timeout", "drop", "421", "garbled")
] + [("mail", "truncated"), ("dot", "truncated")])
def test_fault_at_each_phase_is_survived(sink, serve, phase, kind):
    bad = sink("--fault", f"{phase}:{kind}", name="bad")
    # The good host takes 150 ms per message: its workers are busy while the 12 arrive, so the
    # idle ones at the bad host get jobs and meet the fault (with instant answers, the good
    # host's workers, parked last, could take every job on a loaded machine).
    good = sink("--data-delay", "150ms", name="good")
    port = free_port()
    # Four warm workers start at alternate hosts (two at the bad one).
    srv = serve(listener(port) + two_hosts(bad.address, good.address, "init_mta = 4"))
    inject(port, 12)
    finals = srv.wait_finals(12, timeout=60)
    assert collections.Counter(e["event"] for e in finals) == {"delivered": 12}
    assert all(e["mx"] == good.address for e in finals)
    counts = wait_until(lambda: good.counts() if good.counts()["messages"] >= 12 else None, what="12 at the good host")
    assert (counts["messages"], counts["duplicates"]) == (12, 0), (counts, srv.accounting())
    assert bad.counts()["messages"] == 0
    if phase not in ("banner", "ehlo"):
        # The fault broke a transaction: it is in the accounting log as a deferral.
        deferred = [e for e in srv.accounting() if e["event"] == "deferred"]
        assert deferred, "a broken transaction must show as deferred"
        assert all(e["code"] in (421, 451) for e in deferred)
        # "The remote MTA may have it" only where it may: after the content went out by BDAT,
        # unless the server had refused the envelope first.
        may_have_it = [e for e in deferred if "may have it" in e["reply"]]
        if (phase, kind) == ("mail", "421"):
            assert not may_have_it, [e["reply"] for e in deferred]
        if phase == "dot" and kind in ("drop", "timeout"):
            assert may_have_it, deferred


def test_temporary_and_permanent_refusals(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\nmax_retries = 3\n'
                'retry_delay = "20ms"\n')
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("a@b.test", ["ok@x.test", "reject-me@x.test", "defer-me@x.test"], b"Message-ID: <r@x>\r\n\r\nx\r\n")
    finals = {e["rcpt"]: e for e in srv.wait_finals(3, timeout=30)}
    assert finals["ok@x.test"]["event"] == "delivered"
    assert finals["reject-me@x.test"]["event"] == "bounced" and finals["reject-me@x.test"]["attempt"] == 1
    assert finals["defer-me@x.test"]["event"] == "failed" and finals["defer-me@x.test"]["attempt"] == 3
    events = [e["event"] for e in srv.accounting() if e["rcpt"] == "defer-me@x.test"]
    assert events == ["deferred", "deferred", "failed"]


def test_a_dead_destination_goes_to_the_retry_queue(sink, serve):
    fallback = sink(name="fallback")
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    srv = serve(listener(port) +
                f'[[queue]]\nname = "general"\nmx = ["{dead}"]\nmax_fail = 3\nretry = "fallback"\nretry_delay = "20ms"\n'
                f'[[queue]]\nname = "fallback"\ndomains = ["fallback.invalid"]\nmx = ["{fallback.address}"]\n')
    inject(port, 30)
    finals = srv.wait_finals(30, timeout=60)
    assert collections.Counter((e["event"], e["queue"]) for e in finals) == {("delivered", "fallback"): 30}
    handed = [e for e in srv.accounting() if e["event"] == "deferred" and "handed to queue fallback" in e["reply"]]
    assert len(handed) == 30
    assert "is down after 3 consecutive connection failures" in srv.output()
    assert fallback.counts()["messages"] == 30 or wait_until(lambda: fallback.counts()["messages"] == 30)


def test_without_a_retry_queue_a_dead_destination_fails_and_delivered_mode_says_so(serve):
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    srv = serve(listener(port, ack="delivered") +
                f'[[queue]]\nname = "general"\nmx = ["{dead}"]\nmax_fail = 2\nretry_delay = "20ms"\n')
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        try:
            c.sendmail("a@b.test", ["x@y.test"], b"Message-ID: <d@x>\r\n\r\nx\r\n")
            raise AssertionError("expected a failure reply")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 451 and b"destination down" in e.smtp_error
    finals = srv.wait_finals(1)
    assert finals[0]["event"] == "failed"


def test_a_server_that_takes_few_recipients_per_transaction(sink, serve):
    # The sink answers 452 beyond 3 recipients: the rest go in the next transactions, no attempt lost.
    s = sink("--max-recipients", "3")
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\nmax_retries = 1\n')
    import smtplib
    rcpts = [f"r{i}@x.test" for i in range(10)]
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("a@b.test", rcpts, b"Message-ID: <m@x>\r\n\r\nx\r\n")
    finals = srv.wait_finals(10)
    assert all(e["event"] == "delivered" and e["attempt"] == 1 for e in finals)
    assert s.counts()["messages"] == 4 or wait_until(lambda: s.counts()["messages"] == 4)


def test_broken_starttls_falls_back_to_clear_when_opportunistic(sink, serve):
    s = sink("--starttls", "broken")
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\ntls = "opportunistic"\n')
    inject(port, 5)
    finals = srv.wait_finals(5)
    assert all(e["event"] == "delivered" for e in finals)
    # With tls = "required" the same server is no place to deliver: deferred until failed.
    port2 = free_port()
    srv2 = serve(listener(port2) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\ntls = "required"\n'
                 'max_retries = 2\nretry_delay = "20ms"\nmax_fail = 100\n', name="required")
    inject(port2, 2)
    finals = srv2.wait_finals(2)
    assert all(e["event"] == "failed" and "TLS with" in e["reply"] for e in finals)
