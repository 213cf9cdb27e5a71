"""Faults of remote MTAs: every recipient reaches exactly one final outcome, retries are
bounded, and nothing the composer was told 250 for vanishes (DESIGN.md §5, §8)."""
import collections
import subprocess

from harness import MMA, free_port, listener, wait_until



def queue(mx, extra=""):
    return (f'[[queue]]\nname = "general"\nmx = ["{mx}"]\nmax_mta = 20\nretry_delay = "20ms"\n'
            f'retry_delay_max = "100ms"\n{extra}\n')


def test_random_defers_rejects_and_drops_end_in_one_outcome_each(sink, serve):
    s = sink("--rcpt-defer", "0.1", "--rcpt-reject", "0.05", "--txn-defer", "0.05", "--drop", "0.05",
             "--seed", "7")
    port = free_port()
    srv = serve(listener(port) + queue(s.address, "max_retries = 30"))
    r = subprocess.run([MMA, "compose", "--synthetic", "1000", "--domains", "50", "--rcpts", "2", "-s",
                        f"127.0.0.1:{port}", "-n", "10", "--progress", "never", "--summary-json",
                        str(srv.tmp / "compose.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr  # every message was acknowledged
    finals = srv.wait_finals(2000, timeout=120)
    by_rcpt = collections.Counter(e["rcpt"] for e in finals)
    assert len(by_rcpt) == 2000 and set(by_rcpt.values()) == {1}  # exactly one final outcome each
    outcomes = collections.Counter(e["event"] for e in finals)
    assert outcomes["bounced"] > 0 and outcomes["delivered"] > 1500
    assert outcomes["failed"] == 0  # 30 attempts are plenty for 10% + 5% + 5%
    deferred = [e for e in srv.accounting() if e["event"] == "deferred"]
    assert deferred, "the sink deferred and dropped: some attempts must have been deferred"
    # What was delivered is at the sink, once.
    counts = wait_until(lambda: s.counts() if s.counts()["recipients"] == outcomes["delivered"] else None,
                        what="the sink to hold every delivered recipient")
    assert counts["duplicates"] == 0


def test_unreachable_destination_fails_after_max_retries(serve):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    srv = serve(listener(port) + queue(dead, "max_retries = 3\nmax_fail = 1000"))
    r = subprocess.run([MMA, "compose", "--synthetic", "5", "--domains", "5", "-s", f"127.0.0.1:{port}",
                        "-n", "1", "--progress", "never"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    finals = srv.wait_finals(5, timeout=30)
    assert {e["event"] for e in finals} == {"failed"}
    assert all(e["attempt"] == 3 for e in finals)
    assert all("Connection refused" in e["reply"] for e in finals)
    events = collections.Counter(e["event"] for e in srv.accounting())
    assert events == {"deferred": 10, "failed": 5}


def test_silent_remote_times_out_and_is_retried_elsewhere(sink, serve):
    slow = sink("--data-delay", "10s", name="slow")
    fast = sink(name="fast")
    port = free_port()
    # Two hosts of equal preference: workers that time out on the slow one retry, and the
    # connection faults move the jobs to a worker that starts at the other host.
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{slow.address}", "{fast.address}"]\n'
                f'max_mta = 4\nretry_delay = "20ms"\ntimeouts = {{ data_done = "300ms" }}\n')
    r = subprocess.run([MMA, "compose", "--synthetic", "20", "--domains", "5", "-s", f"127.0.0.1:{port}",
                        "-n", "2", "--progress", "never"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    finals = srv.wait_finals(20, timeout=60)
    assert all(e["event"] == "delivered" for e in finals)
    assert all(e["mx"] == fast.address for e in finals)
    timeouts = [e for e in srv.accounting() if e["event"] == "deferred"]
    assert timeouts and all("timed out" in e["reply"] for e in timeouts)
