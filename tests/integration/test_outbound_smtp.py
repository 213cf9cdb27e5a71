"""The outbound SMTP client against servers that offer less: no EHLO (HELO fallback), no
PIPELINING, a SIZE limit, no SMTPUTF8; and the general queue's advice about busy domains."""
import smtplib
import subprocess
import time

from harness import MMA, DEFAULT_QUEUE, free_port, listener, wait_until


def queue(mx, extra=""):
    return f'[[queue]]\nname = "general"\nmx = ["{mx}"]\nmax_mta = 2\nretry_delay = "20ms"\n{extra}\n'


def send(port, rcpts, body=b"Message-ID: <o@x>\r\n\r\nx\r\n", options=()):
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.sendmail("a@b.test", rcpts, body, mail_options=list(options))


def test_helo_fallback_and_no_pipelining(sink, serve):
    old = sink("--no-ehlo", "--no-pipelining")
    port = free_port()
    srv = serve(listener(port) + queue(old.address))
    send(port, ["a@x.test", "b@x.test", "reject-c@x.test"])
    finals = {e["rcpt"]: e["event"] for e in srv.wait_finals(3)}
    assert finals == {"a@x.test": "delivered", "b@x.test": "delivered", "reject-c@x.test": "bounced"}
    wait_until(lambda: old.counts()["recipients"] == 2, what="2 recipients through HELO, one command at a time")


def test_the_remote_size_limit_is_respected(sink, serve):
    small = sink("--max-message-size", "2000")
    port = free_port()
    srv = serve(listener(port) + queue(small.address))
    send(port, ["big@x.test"], b"Message-ID: <big@x>\r\n\r\n" + (b"z" * 70 + b"\r\n") * 100)
    finals = srv.wait_finals(1)
    assert finals[0]["event"] == "bounced" and finals[0]["code"] == 552 and "5.3.4" in finals[0]["reply"]
    assert small.counts()["messages"] == 0 and small.counts()["sessions"] <= 1


def test_smtputf8_end_to_end(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + queue(s.address))
    send(port, ["jos\u00e9@x.test"], "Message-ID: <u@x>\r\nSubject: caf\u00e9\r\n\r\nx\r\n".encode(),
         options=["SMTPUTF8", "BODY=8BITMIME"])
    finals = srv.wait_finals(1)
    assert finals[0]["event"] == "delivered" and finals[0]["rcpt"] == "jos\u00e9@x.test"


def test_the_general_queue_advises_a_queue_for_a_busy_domain(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + queue(s.address, 'advice_window = "300ms"\nadvice_min = 20\nadvice_share = 0.5\n'))
    r = subprocess.run([MMA, "compose", "--synthetic", "400", "--domains", "10", "--big-domain", "hot.test",
                        "--big-share", "0.8", "-s", f"127.0.0.1:{port}", "-n", "2", "--progress", "never"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    srv.wait_finals(400)
    time.sleep(0.4)
    send(port, ["late@x.test"])  # the window is over: this job closes it
    line = wait_until(lambda: next((l for l in srv.output().splitlines() if "consider a queue of its own" in l), None),
                      what="the advice in the log")
    assert "hot.test" in line and 'domains = ["hot.test"]' in line
