"""The general queue resolves each recipient domain through a real DNS server (dnsmasq on a
loopback port): MX preference and fallback, implicit MX, null MX, NXDOMAIN, a silent server,
the MX cache (one query per domain, concurrent look-ups merged), and `resolve = true` queues."""
import collections
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from harness import MMA, Process, free_port, listener, wait_until

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
pytestmark = pytest.mark.skipif(not Path(DNSMASQ).exists(), reason="dnsmasq is not installed")


class Dnsmasq:
    def __init__(self, tmp, records):
        self.port = free_udp_port()
        self.log = Path(tmp) / "dnsmasq-queries.log"
        args = [DNSMASQ, f"--port={self.port}", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--keep-in-foreground", "--pid-file=", "--local=/test/", "--local-ttl=300",
                "--log-queries", f"--log-facility={self.log}", "--user=root"] + records
        self.process = Process(args, Path(tmp) / "dnsmasq.log")
        wait_until(lambda: (self.log.exists() and "started" in self.log.read_text()) or not self.process.alive(),
                   what="dnsmasq")
        assert self.process.alive(), self.process.output()

    def queries(self, name, qtype="MX"):
        text = self.log.read_text() if self.log.exists() else ""
        return len(re.findall(rf"query\[{qtype}\] {re.escape(name)} from", text))

    def stop(self):
        self.process.stop()


def free_udp_port():
    """A port free for both UDP and TCP: dnsmasq binds both."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                with socket.socket() as t:
                    t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


@pytest.fixture
def dnsmasq(tmp_path):
    started = []

    def start(records):
        d = Dnsmasq(tmp_path, records)
        started.append(d)
        return d
    yield start
    for d in started:
        d.stop()


def dns_config(dns_port, deliver_port, extra_queue="", extra_dns='timeout = "2s"', max_mta=100):
    return (f'[delivery]\nport = {deliver_port}\ntimeouts = {{ connect = "2s" }}\n'
            f'[dns]\nservers = ["127.0.0.1:{dns_port}"]\nipv6 = false\n{extra_dns}\n'
            f'[[queue]]\nname = "general"\nmax_mta = {max_mta}\nretry_delay = "50ms"\nretry_delay_max = "200ms"\n'
            f'{extra_queue}\n')


def compose(port, n, domains, suffix="test", rcpts=1):
    r = subprocess.run([MMA, "compose", "--synthetic", str(n), "--domains", str(domains), "--domain-suffix",
                        suffix, "--rcpts", str(rcpts), "-s", f"127.0.0.1:{port}", "-n", "10", "--progress",
                        "never"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hundreds_of_domains_resolved_once_each(sink, serve, dnsmasq):
    sport = free_port()
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    records = [f"--host-record=mx{i}.hosts.test,{ip}" for i, ip in enumerate(hosts)]
    for d in range(300):
        records.append(f"--mx-host=d{d}.test,mx{d % 3}.hosts.test,10")
    dns = dnsmasq(records)
    s = sink(listen=[f"{ip}:{sport}" for ip in hosts])
    port = free_port()
    srv = serve(listener(port) + dns_config(dns.port, sport))
    compose(port, 1200, 300)
    finals = srv.wait_finals(1200, timeout=60)
    assert collections.Counter(e["event"] for e in finals) == {"delivered": 1200}
    # Each domain's mail went to its MX host's address.
    for e in finals:
        d = int(e["domain"][1:].split(".")[0])
        assert e["mx"] == f"{hosts[d % 3]}:{sport}", e
    expected = {f"{ip}:{sport}": 400 for ip in hosts}
    wait_until(lambda: {l: v["messages"] for l, v in s.counts()["listeners"].items()} == expected,
               what="400 messages at each MX host")
    # The MX cache: every domain was looked up once, however many messages it had.
    assert all(dns.queries(f"d{d}.test") == 1 for d in range(0, 300, 7))
    # (Addresses of the exchangers are cached by libunbound: a few queries, not one per domain.)
    assert dns.queries("mx0.hosts.test", "A") < 50


def test_preference_order_and_fallback_to_the_next_exchanger(sink, serve, dnsmasq):
    sport = free_port()
    # 127.0.0.4 refuses connections (nothing listens there); the sink is the second choice.
    dns = dnsmasq(["--mx-host=pref.test,dead.hosts.test,10", "--mx-host=pref.test,live.hosts.test,20",
                   "--host-record=dead.hosts.test,127.0.0.4", "--host-record=live.hosts.test,127.0.0.1",
                   "--mx-host=order.test,first.hosts.test,5", "--mx-host=order.test,second.hosts.test,50",
                   "--host-record=first.hosts.test,127.0.0.2", "--host-record=second.hosts.test,127.0.0.1"])
    s = sink(listen=[f"127.0.0.1:{sport}", f"127.0.0.2:{sport}"])
    port = free_port()
    srv = serve(listener(port) + dns_config(dns.port, sport))
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(5):
            c.sendmail("a@b.test", [f"u{i}@pref.test", f"v{i}@order.test"], f"Message-ID: <p{i}@x>\r\n\r\nx\r\n".encode())
    finals = srv.wait_finals(10)
    assert all(e["event"] == "delivered" for e in finals)
    assert {e["mx"] for e in finals if e["domain"] == "pref.test"} == {f"127.0.0.1:{sport}"}
    assert {e["mx"] for e in finals if e["domain"] == "order.test"} == {f"127.0.0.2:{sport}"}  # the lower preference


def test_implicit_null_and_nonexistent(sink, serve, dnsmasq):
    sport = free_port()
    dns = dnsmasq(["--host-record=plain.test,127.0.0.1", "--dns-rr=null.test,15,000000",
                   "--mx-host=nohost.test,missing.hosts.test,10"])
    s = sink(listen=[f"127.0.0.1:{sport}"])
    port = free_port()
    srv = serve(listener(port) + dns_config(dns.port, sport, 'max_retries = 2\n'))
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("a@b.test", ["a@plain.test", "b@null.test", "c@nowhere.test", "d@nohost.test"],
                   b"Message-ID: <i@x>\r\n\r\nx\r\n")
    finals = {e["rcpt"]: e for e in srv.wait_finals(4, timeout=30)}
    assert finals["a@plain.test"]["event"] == "delivered"  # no MX: the domain's own address
    assert finals["b@null.test"]["event"] == "bounced" and finals["b@null.test"]["code"] == 556
    assert "5.1.10" in finals["b@null.test"]["reply"]
    assert finals["c@nowhere.test"]["event"] == "bounced" and "5.1.2" in finals["c@nowhere.test"]["reply"]
    # An MX host without an address is a temporary condition: retried, then failed.
    assert finals["d@nohost.test"]["event"] == "failed"


def test_a_silent_dns_server_defers(sink, serve):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # reads nothing, answers nothing
    try:
        sport = free_port()
        port = free_port()
        srv = serve(listener(port) + dns_config(silent.getsockname()[1], sport, "max_retries = 2\n",
                                                'timeout = "500ms"\nfailure_ttl = "10ms"'))
        import smtplib
        with smtplib.SMTP("127.0.0.1", port) as c:
            c.sendmail("a@b.test", ["x@quiet.test"], b"Message-ID: <q@x>\r\n\r\nx\r\n")
        finals = srv.wait_finals(1, timeout=30)
        assert finals[0]["event"] == "failed"
        deferred = [e for e in srv.accounting() if e["event"] == "deferred"]
        assert deferred and "4.4.3" in deferred[0]["reply"]
    finally:
        silent.close()


def test_a_resolve_queue_looks_up_its_domain_once(sink, serve, dnsmasq):
    sport = free_port()
    dns = dnsmasq(["--mx-host=big.test,mx.big.test,10", "--host-record=mx.big.test,127.0.0.2"])
    s = sink(listen=[f"127.0.0.2:{sport}"])
    port = free_port()
    srv = serve(listener(port) + dns_config(dns.port, sport) +
                f'[[queue]]\nname = "big"\ndomains = ["big.test", "*.big.test"]\nresolve = true\nmx_ttl = "1h"\n')
    wait_until(lambda: dns.queries("big.test") == 1, what="the queue to resolve big.test at start")
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        for i in range(20):
            c.sendmail("a@b.test", [f"u{i}@big.test", f"w{i}@x.big.test"], f"Message-ID: <b{i}@x>\r\n\r\nx\r\n".encode())
    finals = srv.wait_finals(40)
    assert all(e["event"] == "delivered" and e["queue"] == "big" for e in finals)
    assert dns.queries("big.test") == 1 and dns.queries("x.big.test") == 0


@pytest.mark.parametrize("max_mta,cache", [(2, 1), (1, 5)])
def test_the_connection_cache(sink, serve, dnsmasq, max_mta, cache):
    """Idle connections are kept to the `connection_cache` most recent destinations; at max_mta a
    new destination takes over the least recently used idle connection (patent §C)."""
    sport = free_port()
    # Four exchangers on one address: distinct hosts, so no connection serves two of them.
    dns = dnsmasq([f"--mx-host=c{d}.test,mx{d}.hosts.test,10" for d in range(4)] +
                  [f"--host-record=mx{d}.hosts.test,127.0.0.1" for d in range(4)])
    s = sink(listen=[f"127.0.0.1:{sport}"])
    port = free_port()
    srv = serve(listener(port) + dns_config(dns.port, sport, f'connection_cache = {cache}\ntimeouts = {{ idle = "60s" }}\n',
                                            max_mta=max_mta))
    import smtplib
    for d in range(4):
        with smtplib.SMTP("127.0.0.1", port) as c:
            c.sendmail("a@b.test", [f"u@c{d}.test"], f"Message-ID: <cc{d}@x>\r\n\r\nx\r\n".encode())
        srv.wait_finals(d + 1)
    # One connection per destination, each new; one left open: to the most recent destination.
    wait_until(lambda: (s.counts()["sessions"], s.counts()["current_sessions"]) == (4, 1),
               what="4 sessions in all and 1 still open")
    assert all(e["event"] == "delivered" for e in srv.finals())


def test_a_connection_serves_every_domain_whose_best_mx_is_its_host(sink, serve, dnsmasq):
    """Domains hosted by one provider share its MX hosts: one open connection delivers to all of
    them (connection reuse by server, as Postfix does), but never to a domain for which that
    host is only a backup MX (RFC 5321 §5.1)."""
    sport = free_port()
    records = ["--host-record=mx.provider.test,127.0.0.1", "--host-record=mx.other.test,127.0.0.2"]
    records += [f"--mx-host=p{d}.test,mx.provider.test,10" for d in range(20)]
    # b.test's best exchanger is elsewhere; the provider is only its backup.
    records += ["--mx-host=b.test,mx.other.test,10", "--mx-host=b.test,mx.provider.test,20"]
    dns = dnsmasq(records)
    s = sink(listen=[f"127.0.0.1:{sport}", f"127.0.0.2:{sport}"])
    port = free_port()
    srv = serve(listener(port) + dns_config(dns.port, sport, 'timeouts = { idle = "60s" }\n', max_mta=1))
    import smtplib
    with smtplib.SMTP("127.0.0.1", port) as c:
        for d in range(20):
            c.sendmail("a@b.test", [f"u@p{d}.test"], f"Message-ID: <p{d}@x>\r\n\r\nx\r\n".encode())
        c.sendmail("a@b.test", ["u@b.test"], b"Message-ID: <b@x>\r\n\r\nx\r\n")
    finals = srv.wait_finals(21)
    assert all(e["event"] == "delivered" for e in finals), finals
    assert [e["mx"] for e in finals if e["domain"] == "b.test"] == [f"127.0.0.2:{sport}"]
    listeners = wait_until(lambda: (lambda l: l if l.get(f"127.0.0.1:{sport}", {}).get("messages") == 20 and
                                    l.get(f"127.0.0.2:{sport}", {}).get("messages") == 1 else None)(
        s.counts()["listeners"]), what="21 messages at the receivers")
    # Twenty domains, one worker: one session to the provider's host carried all twenty.
    assert listeners[f"127.0.0.1:{sport}"]["sessions"] == 1, listeners
    assert listeners[f"127.0.0.2:{sport}"]["sessions"] == 1, listeners


@pytest.mark.parametrize("domains,rounds,extra,max_mta", [
    # connection_cache = 1: after each domain's first message only one idle connection stays.
    (10, 2, "connection_cache = 1\n", 20),
    # At max_mta a new domain used to evict the idle connection and connect anew.
    (12, 1, "", 2),
])
def test_an_idle_connection_to_a_providers_server_takes_its_other_domains(sink, serve, dnsmasq, domains,
                                                                          rounds, extra, max_mta):
    """A job for a domain without a connection of its own goes to an idle connection open to
    one of that domain's best MX hosts, rather than to a worker that would connect anew; a
    domain new to the MX cache is looked up first, so even its first message shares. (Before
    the look-up ahead, each new domain's first message opened a connection of its own.)"""
    sport = free_port()
    records = ["--host-record=mx.provider.test,127.0.0.1"]
    records += [f"--mx-host=q{d}.test,mx.provider.test,10" for d in range(domains)]
    dns = dnsmasq(records)
    s = sink(listen=[f"127.0.0.1:{sport}"])
    port = free_port()
    srv = serve(listener(port) + dns_config(dns.port, sport, extra + 'timeouts = { idle = "60s" }\n',
                                            max_mta=max_mta))
    import smtplib
    total = domains * rounds
    with smtplib.SMTP("127.0.0.1", port) as c:
        for rnd in range(rounds):
            for d in range(domains):
                c.sendmail("a@b.test", [f"u@q{d}.test"], f"Message-ID: <q{rnd}-{d}@x>\r\n\r\nx\r\n".encode())
                srv.wait_finals(rnd * domains + d + 1)  # idle when the next domain's job comes
    assert all(e["event"] == "delivered" for e in srv.finals())
    counts = wait_until(lambda: s.counts() if s.counts()["messages"] == total else None, what=f"{total} messages")
    # The first message connects; every other one, new domain or known, shares that connection.
    assert counts["sessions"] == 1, counts
    srv.process.proc.send_signal(__import__("signal").SIGUSR1)
    line = wait_until(lambda: [l for l in srv.output().splitlines() if "reused=" in l], what="statistics")[-1]
    assert int(line.split("reused=")[1].split()[0]) >= total - 1, line
