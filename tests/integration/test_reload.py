"""SIGHUP: the configuration is reloaded without dropping a connection or a message; an
invalid one is refused with its reason and the running one stays."""
import signal
import smtplib

from harness import DEFAULT_QUEUE, free_port, listener, wait_port, wait_until


def send(c, rcpts, tag):
    c.sendmail("s@sender.test", rcpts, f"Message-ID: <{tag}@reload>\r\nSubject: {tag}\r\n\r\nbody\r\n")


def hup(srv, n):
    """Sends SIGHUP and waits for the n-th reload verdict in the log."""
    srv.process.proc.send_signal(signal.SIGHUP)
    return wait_until(lambda: (lambda lines: lines[n - 1] if len(lines) >= n else None)(
        [l for l in srv.output().splitlines() if "SIGHUP: configuration" in l]), what=f"reload verdict {n}")


def queue(name, sink, domains=None, extra=""):
    d = f'domains = {domains!r}\n'.replace("'", '"') if domains else ""
    return f'[[queue]]\nname = "{name}"\n{d}mx = ["{sink.address}"]\n{extra}'


def test_queues_added_changed_and_removed_without_dropping_a_connection_or_a_message(sink, serve):
    general, vip = sink(name="general"), sink("--paused", name="vip")
    port = free_port()
    body = listener(port)
    srv = serve(body + queue("general", general) + queue("vip", vip, ["vip.test"]))
    c = smtplib.SMTP("127.0.0.1", port, timeout=10)  # open across every reload below
    send(c, ["a@d1.test", "b@vip.test"], "before")
    wait_until(lambda: general.counts()["recipients"] == 1, what="general delivery")
    # vip's receiver is stopped: its message waits in queue vip. Now vip is removed, and a
    # new queue "big" takes big.test; general gets a smaller max_size.
    big = sink(name="big")
    srv.config_path.write_text(srv.config_path.read_text().split("[[listener]]")[0] + body +
                               queue("general", general, extra="max_size = 2000\n") +
                               queue("big", big, ["big.test"]))
    verdict = hup(srv, 1)
    assert "reloaded" in verdict, verdict
    for change in ("queue general changed", "queue big added", "queue vip removed (1 job(s) still to deliver)"):
        assert change in verdict, verdict
    # The same connection goes on: new routing, new limits.
    send(c, ["x@big.test", "y@vip.test"], "after")  # vip.test now goes to the general queue
    wait_until(lambda: big.counts()["recipients"] == 1, what="delivery by the added queue")
    wait_until(lambda: general.counts()["recipients"] == 2, what="vip.test routed to general")
    c.sendmail("s@sender.test", ["z@d1.test"], "Message-ID: <large@reload>\r\n\r\n" + ("x" * 70 + "\r\n") * 45)
    # The removed queue still delivers what it held once its receiver comes back.
    vip.process.proc.send_signal(signal.SIGUSR2)
    wait_until(lambda: vip.counts()["recipients"] == 1, what="the removed queue's backlog delivered")
    finals = srv.wait_finals(5)
    bounced = [e for e in finals if e["event"] == "bounced"]
    assert len(bounced) == 1 and bounced[0]["rcpt"] == "z@d1.test" and "5.3.4" in bounced[0]["reply"], bounced
    assert sorted(e["rcpt"] for e in finals if e["event"] == "delivered") == \
        ["a@d1.test", "b@vip.test", "x@big.test", "y@vip.test"]
    c.quit()


def test_an_invalid_configuration_is_refused_with_its_reason_and_the_old_one_stays(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + DEFAULT_QUEUE.format(mx=s.address))
    good = srv.config_path.read_text()
    srv.config_path.write_text(good.replace("max_mta = 20", "max_mta = -1"))
    verdict = hup(srv, 1)
    assert "refused" in verdict and f"{srv.config_path}:" in verdict and "max_mta" in verdict, verdict
    # A valid file that changes what only a restart can change is refused too, by name.
    srv.config_path.write_text(good.replace('[server]\n', '[server]\nthreads = 3\n', 1))
    verdict = hup(srv, 2)
    assert "refused" in verdict and "[server] threads changed, which needs a restart" in verdict, verdict
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        send(c, ["a@d1.test"], "still")
    srv.wait_finals(1)
    assert srv.process.alive()


def test_listeners_added_and_removed_on_reload(sink, serve):
    s = sink()
    old_port, new_port = free_port(), free_port()
    srv = serve(listener(old_port) + DEFAULT_QUEUE.format(mx=s.address))
    c = smtplib.SMTP("127.0.0.1", old_port, timeout=10)
    send(c, ["a@d1.test"], "one")
    srv.config_path.write_text(srv.config_path.read_text().replace(f"127.0.0.1:{old_port}", f"127.0.0.1:{new_port}"))
    verdict = hup(srv, 1)
    assert f"listener 127.0.0.1:{old_port} closed" in verdict and f"listener 127.0.0.1:{new_port} added" in verdict
    wait_port("127.0.0.1", new_port)
    with smtplib.SMTP("127.0.0.1", new_port, timeout=10) as c2:
        send(c2, ["b@d1.test"], "two")
    # The session on the closed listener was not cut: it is told to go elsewhere at its next
    # transaction (421), and nothing it had sent is lost.
    try:
        send(c, ["c@d1.test"], "three")
        raise AssertionError("a closed listener's session took a new transaction")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 421
    except smtplib.SMTPServerDisconnected:
        pass
    srv.wait_finals(2)
    assert sorted(e["rcpt"] for e in srv.finals()) == ["a@d1.test", "b@d1.test"]
