"""The accounting log (JSON lines, one per final outcome or deferral): what bulk senders feed to
their bounce processing, so its fields and their format are part of mma's interface."""
import datetime
import re
import smtplib
import time

from harness import free_port, listener


def test_each_delivery_is_one_json_line_with_its_fields(sink, serve):
    s = sink()
    port = free_port()
    srv = serve(listener(port) + f'[[queue]]\nname = "general"\nmx = ["{s.address}"]\n')
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    with smtplib.SMTP("127.0.0.1", port) as c:
        # A quoted local part with a backslash and a quote: escaped in the JSON, not mangled.
        c.sendmail('"odd\\\\ \\"one\\""@sender.test', ["u1@d1.test", "u2@d2.test"],
                   b"Message-ID: <acct@x>\r\n\r\nbody\r\n")
    finals = srv.wait_finals(2)
    time.sleep(0.01)
    after = datetime.datetime.now(datetime.timezone.utc)
    assert sorted(e["rcpt"] for e in finals) == ["u1@d1.test", "u2@d2.test"]
    for e in finals:
        assert e["event"] == "delivered" and e["code"] == 250 and e["attempt"] == 1
        assert e["from"] == '"odd\\\\ \\"one\\""@sender.test'
        assert e["message_id"] == "<acct@x>" and e["queue"] == "general" and e["mx"] == s.address
        assert e["domain"] == e["rcpt"].split("@")[1]
        assert isinstance(e["queue_ms"], int) and isinstance(e["delivery_ms"], int)
        # RFC 3339, UTC, to the millisecond.
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]), e["ts"]
        ts = datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        assert before <= ts <= after
