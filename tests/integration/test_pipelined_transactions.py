"""Pipelined transactions (RFC 2920 §3.1, RFC 3030 §4.2): where a server offers PIPELINING and
CHUNKING and answers quickly, mail waiting for it goes in the same write as the job in hand, each
transaction's MAIL, RCPT and BDAT LAST with its content, and their replies are read after; one
round trip for several messages. A transaction the server holds open (its BDAT refused) must
neither make those pipelined behind it bounce nor swallow their recipients: an RSET goes before
each MAIL but the first."""
import re
import signal
import smtplib
import socket
import subprocess
import threading

from harness import MMA, free_port, listener, wait_until


def queue_stats(srv):
    """The queue's statistics line, asked for by SIGUSR1, as a dict."""
    srv.process.proc.send_signal(signal.SIGUSR1)
    line = wait_until(lambda: next((l for l in srv.output().splitlines() if "queue general:" in l), None),
                      what="statistics in the log")
    return dict(kv.split("=", 1) for kv in line.split("queue general: ", 1)[1].split())


def test_mail_waiting_for_a_quick_server_goes_several_transactions_to_a_write(sink, serve):
    s = sink()
    port = free_port()
    # One connection: what the composer sends meanwhile waits for it, and goes pipelined.
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\nmax_mta = 1\n'
                'pipeline_within = "10s"\n')  # a quick server, however slow the test machine
    r = subprocess.run([MMA, "compose", "--synthetic", "400", "--domains", "4", "-s", f"127.0.0.1:{port}",
                        "-n", "10", "--progress", "never"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    finals = srv.wait_finals(400, timeout=60)
    assert all(e["event"] == "delivered" for e in finals), [e for e in finals if e["event"] != "delivered"][:2]
    wait_until(lambda: s.counts()["messages"] == 400, what="400 messages at the sink")
    assert s.counts()["messages_by_bdat"] == 400
    stats = queue_stats(srv)
    assert int(stats["pipelined"]) > 0, stats
    assert stats["connections"] == "1", stats  # all of it over the one connection
    assert len({e["id"] for e in finals}) == 400  # each once


class HoldingServer:
    """An SMTP server offering PIPELINING and CHUNKING that refuses the BDAT of a transaction
    for hold@ and keeps that transaction open (RFC 3030 lets it; Postfix does after "554 no valid
    recipients"): a MAIL behind it gets "503 nested MAIL" while the RCPTs and the content after
    it go into the open transaction, until an RSET."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.delivered = []  # recipients of the messages it took
        self.held = 0  # MAILs refused as nested
        self.resets = 0
        self.gate = threading.Event()  # first@'s message is answered once it is set
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 holder.test ESMTP\r\n")
        tx = None  # the open transaction's recipients
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-holder.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
            elif verb == b"MAIL":
                if tx is not None:
                    self.held += 1
                    conn.sendall(b"503 5.5.1 nested MAIL command\r\n")
                else:
                    tx = []
                    conn.sendall(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                if tx is None:  # (into the open transaction, if one was held)
                    conn.sendall(b"503 5.5.1 need MAIL\r\n")
                else:
                    tx.append(re.search(rb"<(.*)>", line).group(1).decode())
                    conn.sendall(b"250 2.1.5 ok\r\n")
            elif verb == b"BDAT":
                f.read(int(line.split()[1]))
                if tx is None or not tx:
                    conn.sendall(b"503 5.5.1 no transaction\r\n")
                elif any(r.startswith("hold@") for r in tx):
                    conn.sendall(b"554 5.6.0 not this one\r\n")  # and the transaction stays open
                else:
                    if "first@x.test" in tx:
                        self.gate.wait(10)
                    self.delivered.extend(tx)
                    tx = None
                    conn.sendall(b"250 2.0.0 taken\r\n")
            elif verb == b"RSET":
                self.resets += 1
                tx = None
                conn.sendall(b"250 2.0.0 reset\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                conn.sendall(b"500 5.5.2 what\r\n")

    def close(self):
        self.stop = True
        self.sock.close()


def relay_to(serve, holder):
    """mma serve with one connection to `holder`, counted as quick however slow the machine;
    returns the relay and its port."""
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["127.0.0.1:{holder.port}"]\n'
                'max_mta = 1\npipeline_within = "10s"\nretry_delay = "50ms"\n')
    return srv, port


def send_first_and_hold(c):
    """first@'s message, which the server answers once its gate opens, then hold@'s: the
    connection's next write begins with the one whose BDAT the server refuses and holds."""
    c.sendmail("a@b.test", ["first@x.test"], b"Subject: first\r\n\r\nfirst\r\n")
    c.sendmail("a@b.test", ["hold@x.test"], b"Subject: hold\r\n\r\nheld\r\n")


def test_mail_pipelined_behind_a_transaction_the_server_held_open_is_neither_bounced_nor_swallowed(serve):
    holder = HoldingServer()
    srv, port = relay_to(serve, holder)
    try:
        with smtplib.SMTP("127.0.0.1", port) as c:
            send_first_and_hold(c)  # and, in the same write, these behind it
            for i in range(5):
                c.sendmail("a@b.test", [f"after{i}@x.test"], f"Subject: {i}\r\n\r\nafter\r\n".encode())
        holder.gate.set()
        finals = srv.wait_finals(7, timeout=30)
        by_rcpt = {e["rcpt"]: e for e in finals}
        assert by_rcpt["hold@x.test"]["event"] == "bounced", by_rcpt["hold@x.test"]
        assert "not this one" in by_rcpt["hold@x.test"]["reply"]
        for i in range(5):
            assert by_rcpt[f"after{i}@x.test"]["event"] == "delivered", by_rcpt[f"after{i}@x.test"]
        # Each taken once, in a transaction of its own.
        assert sorted(holder.delivered) == sorted(["first@x.test"] + [f"after{i}@x.test" for i in range(5)])
        stats = queue_stats(srv)
        assert int(stats["pipelined"]) > 0, stats  # the case was met: some went behind the held one
        assert holder.resets > 0 and holder.held == 0
    finally:
        holder.close()


def test_a_held_transaction_last_written_is_reset_though_one_refused_here_came_after(serve):
    """The last transaction written, not the last of the group, decides the closing RSET: an
    8-bit message to a server without 8BITMIME is refused before a word is sent, and the next
    write's first MAIL must not meet the transaction the server still holds."""
    holder = HoldingServer()
    srv, port = relay_to(serve, holder)
    try:
        with smtplib.SMTP("127.0.0.1", port) as c:
            send_first_and_hold(c)
            c.sendmail("a@b.test", ["eight@x.test"], "Subject: 8\r\n\r\ncaf\u00e9\r\n".encode(),
                       mail_options=["BODY=8BITMIME"])
            holder.gate.set()
            wait_until(lambda: len(srv.finals()) >= 3, what="the first three outcomes")
            c.sendmail("a@b.test", ["next@x.test"], b"Subject: next\r\n\r\nnext\r\n")
        finals = srv.wait_finals(4, timeout=30)
        by_rcpt = {e["rcpt"]: e for e in finals}
        assert by_rcpt["hold@x.test"]["event"] == "bounced"
        assert by_rcpt["eight@x.test"]["event"] == "bounced" and "8BITMIME" in by_rcpt["eight@x.test"]["reply"]
        assert by_rcpt["next@x.test"]["event"] == "delivered", by_rcpt["next@x.test"]
        assert holder.held == 0
        assert int(queue_stats(srv)["pipelined"]) > 0
    finally:
        holder.close()
