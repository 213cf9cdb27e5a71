"""`mma compose` with a real campaign: a SQLite (or CSV) subscriber database, templates, MIME
checked by Python's email package, DKIM checked by python3-dkim, bad rows reported and never
sent, the plan, and a campaign interrupted and resumed that reaches every recipient once."""
import collections
import email
import email.policy
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from harness import DEFAULT_QUEUE, MMA, SLOW, Process, free_port, listener, wait_until


def make_sample(tmp, subscribers=2000, domains=50):
    out = subprocess.run([MMA, "compose", "--make-sample", str(tmp / "campaign"), "--subscribers",
                          str(subscribers), "--domains", str(domains)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def preview(campaign, n):
    out = subprocess.run([MMA, "compose", str(campaign), "--preview", str(n)], capture_output=True)
    assert out.returncode == 0, out.stderr
    msgs = []
    for chunk in out.stdout.split(b"MAIL FROM:<")[1:]:
        envelope, rest = chunk.split(b"\n", 1)
        wire = rest[: rest.rindex(b"\r\n.\n") + 2]
        # Undo the SMTP dot-stuffing to get the message as the receiver stores it.
        data = re.sub(rb"(?m)^\.\.", b".", wire)
        msgs.append((envelope.decode(), data))
    return msgs, out.stderr.decode()


def dkim_dns(campaign):
    record = (campaign.parent / "dkim.txt").read_text()
    txt = record.split('"')[1].encode()
    return lambda name, timeout=5: txt if name == b"mma._domainkey.news.example.test." else None


def test_sample_messages_are_correct_mime_with_one_click_unsubscribe_and_a_valid_dkim_signature(tmp_path):
    import dkim
    campaign = make_sample(tmp_path)
    msgs, _ = preview(campaign, 40)
    assert len(msgs) == 40
    db = sqlite3.connect(campaign.parent / "subscribers.db")
    rows = {str(r[0]): r for r in db.execute("SELECT id, email, first_name, topics FROM subscribers")}
    for envelope, data in msgs:
        m = email.message_from_bytes(data, policy=email.policy.default)
        assert not m.defects, m.defects
        key = re.search(r"autumn-news\.(\d+)@", m["Message-ID"]).group(1)
        ident, address, first, topics = rows[key]
        # VERP: one bounce address per recipient.
        assert envelope.startswith(f"bounces+{key}@news.example.test> RCPT TO:<{address}>"), envelope
        assert m["To"].addresses[0].addr_spec == address
        assert m["Subject"] == f"{first or 'Hello'}, your autumn selection"  # RFC 2047 decoded
        assert m["List-Unsubscribe"] == (f"<https://news.example.test/u/{key}>, "
                                         f"<mailto:unsubscribe+{key}@news.example.test>")
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058
        assert m.get_content_type() == "multipart/alternative"
        text = m.get_body(("plain",)).get_content()
        html = m.get_body(("html",)).get_content()
        assert f"Hello {first or 'there'}," in text
        assert ("TRAVEL" in text) == ("travel" in (topics or "")), (topics, text)
        assert ("<h2>Travel</h2>" in html) == ("travel" in (topics or ""))
        for part in m.walk():
            assert not part.defects, part.defects
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))
        assert dkim.verify(data, dnsfunc=dkim_dns(campaign)), "DKIM signature does not verify"
        tampered = data.replace(b"autumn selection", b"autumn sElection", 1)
        assert not dkim.verify(tampered, dnsfunc=dkim_dns(campaign))


def test_html_values_are_escaped_and_header_injection_rows_are_refused(tmp_path):
    campaign = make_sample(tmp_path, subscribers=200)
    db = sqlite3.connect(campaign.parent / "subscribers.db")
    db.execute("UPDATE subscribers SET first_name = '<b>Bob & Co</b>' WHERE id = 1")
    db.execute("UPDATE subscribers SET first_name = 'Eve' || char(13) || char(10) || 'Bcc: x@y.test' WHERE id = 2")
    db.execute("UPDATE subscribers SET email = 'not an address' WHERE id = 3")
    db.commit()
    msgs, err = preview(campaign, 2)
    m = email.message_from_bytes(msgs[0][1], policy=email.policy.default)
    assert "Hello &lt;b&gt;Bob &amp; Co&lt;/b&gt;," in m.get_body(("html",)).get_content()
    assert "Hello <b>Bob & Co</b>," in m.get_body(("plain",)).get_content()
    assert "row 2 (2)" in err and "row 3 (3)" in err, err
    assert "autumn-news.4@" in msgs[1][1].decode()  # rows 2 and 3 skipped, never composed


def serve_spooled(serve, sink, tmp_path):
    port = free_port()
    srv = serve(f'[spool]\npath = "{tmp_path / "spool"}"\n' + listener(port, ack="spooled") +
                f'[[queue]]\nname = "general"\nmx = ["{sink.address}"]\nmax_mta = 50\n')
    return srv, port


def received_keys(maildir):
    keys = collections.Counter()
    for p in maildir.glob("*.eml"):
        m = re.search(rb"Message-ID: <autumn-news\.([^@]+)@", p.read_bytes())
        keys[m.group(1).decode()] += 1
    return keys


def good_keys(campaign):
    db = sqlite3.connect(campaign.parent / "subscribers.db")
    return {str(r[0]) for r in db.execute("SELECT id, email, first_name FROM subscribers")
            if re.fullmatch(r"[^@\s]+@[^@\s]+", r[1]) and "\n" not in (r[2] or "")}


def test_a_campaign_interrupted_twice_reaches_every_recipient_exactly_once(sink, serve, tmp_path):
    campaign = make_sample(tmp_path, subscribers=10000, domains=200)
    s = sink("--maildir", str(tmp_path / "maildir"), "--data-delay", "2ms")
    srv, port = serve_spooled(serve, s, tmp_path)
    want = good_keys(campaign)
    args = [MMA, "compose", str(campaign), "-s", f"127.0.0.1:{port}", "-n", "8", "--progress", "never"]
    db = sqlite3.connect(campaign.parent / "subscribers.db")

    def accepted():
        try:
            return db.execute("SELECT COUNT(*) FROM mma_sent").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
    for stop_at in (2000, 6000):
        c = Process(args, tmp_path / f"compose-{stop_at}.log")
        wait_until(lambda: accepted() >= stop_at, timeout=120, what=f"{stop_at} accepted")
        c.proc.send_signal(signal.SIGINT)  # Ctrl-C: the transactions in flight finish
        assert c.proc.wait(60 * SLOW) == 130, c.output()
        assert "interrupted" in c.output()
    last = subprocess.run(args, capture_output=True, text=True, timeout=300 * SLOW)
    assert last.returncode == 0, last.stdout + last.stderr
    assert "already accepted" in last.stderr and "resuming campaign autumn-news" in last.stderr
    wait_until(lambda: sum(received_keys(tmp_path / "maildir").values()) >= len(want), timeout=120,
               what="every recipient at the receiver")
    got = received_keys(tmp_path / "maildir")
    assert set(got) == want
    assert [k for k, n in got.items() if n > 1] == []  # exactly once
    # The summary counts the bad rows of the sample, reported and not sent.
    assert "bad rows not sent" in last.stdout and "bad row" in last.stdout


def test_a_killed_composer_loses_nothing_and_resends_at_most_what_was_in_flight(sink, serve, tmp_path):
    campaign = make_sample(tmp_path, subscribers=5000, domains=100)
    s = sink("--maildir", str(tmp_path / "maildir"))
    srv, port = serve_spooled(serve, s, tmp_path)
    args = [MMA, "compose", str(campaign), "-s", f"127.0.0.1:{port}", "-n", "8", "--progress", "never"]
    c = Process(args, tmp_path / "compose-killed.log")
    wait_until(lambda: s.counts()["messages"] >= 1500, timeout=120, what="1500 delivered")
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    assert subprocess.run(args, capture_output=True, timeout=300 * SLOW).returncode == 0
    want = good_keys(campaign)
    wait_until(lambda: sum(received_keys(tmp_path / "maildir").values()) >= len(want), timeout=120,
               what="every recipient at the receiver")
    got = received_keys(tmp_path / "maildir")
    assert set(got) == want
    twice = [k for k, n in got.items() if n > 1]
    print(f"\n{len(twice)} recipient(s) received twice after the SIGKILL (in flight)")
    assert len(twice) <= 8  # at most one per connection (RFC 1047)


def test_csv_recipients_resume_from_a_state_file_beside_them(sink, serve, tmp_path):
    campaign = make_sample(tmp_path, subscribers=10)
    csv = campaign.parent / "list.csv"
    csv.write_text('id,email,first_name,topics\n1,a@x.test,Ann,travel\n2,"b@y.test","Bo, Jr.",\n'
                   '3,bad-address,Cy,\n4,d@x.test,"Dee ""D""",sport\n')
    text = campaign.read_text().replace('source = "subscribers.db"', 'source = "list.csv"')
    campaign.write_text(re.sub(r'query = .*\n', "", text))
    s = sink("--maildir", str(tmp_path / "maildir"))
    srv, port = serve_spooled(serve, s, tmp_path)
    args = [MMA, "compose", str(campaign), "-s", f"127.0.0.1:{port}", "--progress", "never"]
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "row 3 (3)" in first.stderr
    assert sorted((campaign.parent / "list.csv.autumn-news.sent").read_text().split()) == ["1", "2", "4"]
    again = subprocess.run(args, capture_output=True, text=True)
    assert "0 composed" in again.stdout and "3 already accepted" in again.stdout, again.stdout
    wait_until(lambda: s.counts()["messages"] >= 3, what="3 messages")
    time.sleep(0.3)
    assert sorted(received_keys(tmp_path / "maildir")) == ["1", "2", "4"]


def test_the_plan_counts_domains_and_suggests_queues_that_mma_serve_accepts(tmp_path):
    campaign = make_sample(tmp_path, subscribers=20000, domains=300)
    out = subprocess.run([MMA, "compose", str(campaign), "--plan", "--top", "8"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "20000 rows: 19998 recipients to send, 2 bad rows" in out.stdout, out.stdout
    first = re.search(r"^\s+(\d+)\s+([\d.]+)%\s+(\S+)$", out.stdout, re.M)
    assert first.group(3) == "gmail.test" and 18 < float(first.group(2)) < 22
    queues = out.stdout[out.stdout.index("[[queue]]"):]
    assert queues.count("[[queue]]") == 5  # the five big providers, each above 2%
    cfg = tmp_path / "mma.toml"
    cfg.write_text(listener(free_port()) + queues + '\n[[queue]]\nname = "general"\nmx = ["127.0.0.1:2526"]\n')
    check = subprocess.run([MMA, "serve", "-c", str(cfg), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_campaign_errors_name_the_file_line_and_key_or_column(tmp_path):
    campaign = make_sample(tmp_path, subscribers=5)
    good = campaign.read_text()
    campaign.write_text(good.replace("verp = true", "verp = true\nhtlm = \"news.html\""))
    out = subprocess.run([MMA, "compose", str(campaign), "--preview", "1"], capture_output=True, text=True)
    assert out.returncode == 1 and re.search(r"campaign\.toml:8: key 'htlm': unknown key", out.stderr), out.stderr
    campaign.write_text(good)
    (campaign.parent / "news.txt").write_text("Hello {{first_name}},\n\n{{#travel}}\nno end\n")
    out = subprocess.run([MMA, "compose", str(campaign), "--preview", "1"], capture_output=True, text=True)
    assert out.returncode == 1 and re.search(r"news\.txt:3:1: .*travel", out.stderr), out.stderr


def test_a_source_that_breaks_midway_stops_the_campaign_with_its_reason_and_keeps_what_was_accepted(sink, serve, tmp_path):
    campaign = make_sample(tmp_path, subscribers=10)
    csv = campaign.parent / "list.csv"
    rows = "".join(f"{i},u{i}@x.test,N{i},\n" for i in range(1, 301))
    csv.write_text("id,email,first_name,topics\n" + rows + '301,"u301@x.test,broken quote\n')
    text = campaign.read_text().replace('source = "subscribers.db"', 'source = "list.csv"')
    campaign.write_text(re.sub(r'query = .*\n', "", text))
    s = sink()
    srv, port = serve_spooled(serve, s, tmp_path)
    out = subprocess.run([MMA, "compose", str(campaign), "-s", f"127.0.0.1:{port}", "--progress", "never"],
                         capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "source failed" in out.stderr and "list.csv" in out.stderr and "302" in out.stderr, out.stderr
    assert len((campaign.parent / "list.csv.autumn-news.sent").read_text().split()) == 300


def test_a_refused_greeting_is_retried_after_a_pause_not_at_once(sink, serve):
    # A relay at max_connections greets the composer's extra connections with 421. Each of them
    # waits before it tries again, as after a refused connect: no storm of connections, and
    # its attempts last as long as the campaign, not a few milliseconds.
    s = sink()
    port = free_port()
    serve(listener(port, extra="max_connections = 1") + DEFAULT_QUEUE.format(mx=s.address))
    r = subprocess.run([MMA, "compose", "--synthetic", "100", "--domains", "5", "-s", f"127.0.0.1:{port}",
                        "-n", "4", "--progress", "never", "--reconnects", "1000"],
                       capture_output=True, text=True, timeout=120 * SLOW)
    assert r.returncode == 0, r.stderr[-2000:]
    refused = [l for l in r.stderr.splitlines() if "greeted with 421" in l]
    assert refused, r.stderr[-2000:]
    # Retried at once, the three extra connections were refused ~280 times in the campaign's
    # second; 0.5 s apart, a few times each.
    assert len(refused) < 3 * 20 * SLOW, f"{len(refused)} refused greetings"


def test_connections_are_spread_round_robin_over_every_server_given(sink, tmp_path):
    # -s given twice, before the campaign file (which a greedy -s would take for a third
    # server): a cluster of relays (here two addresses of one sink), each connection to the
    # next one, every message sent once.
    campaign = make_sample(tmp_path, subscribers=100, domains=5)
    a, b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    s = sink(listen=[a, b])
    r = subprocess.run([MMA, "compose", "-s", a, "-s", b, str(campaign), "-n", "4", "--progress", "never"],
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    sent = int(re.search(r"(\d+) accepted", r.stdout).group(1))
    assert sent > 50, r.stdout
    s.wait_messages(sent)
    time.sleep(0.3)  # any duplicate would arrive after the count was reached
    counts = s.counts()
    assert counts["messages"] == sent and counts["duplicates"] == 0
    listeners = counts["listeners"]
    assert listeners[a]["sessions"] == 2 and listeners[b]["sessions"] == 2, listeners
    assert listeners[a]["messages"] > 0 and listeners[b]["messages"] > 0, listeners
