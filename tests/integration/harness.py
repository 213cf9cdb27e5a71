"""Real processes on loopback: `mma serve`, `mma sink`, and helpers to talk to them.

Every test starts its own processes on free ports and checks counts: what was acknowledged was
delivered, once.
"""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MMA = os.environ.get("MMA_BIN", str(ROOT / "build" / "release" / "mma"))
# Sanitizer builds are slower: scale every wait.
SLOW = float(os.environ.get("MMA_TEST_SLOWDOWN", "1"))


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def wait_port(host, port, timeout=10.0):
    def ok():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_until(ok, timeout, what=f"{host}:{port} to listen")


class Process:
    def __init__(self, args, log_path, **kw):
        self.args = args
        self.log_path = Path(log_path)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.args[0]} did not stop on {sig}")
        self.log.close()
        return self.proc.returncode

    def output(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None


class Sink:
    """`mma sink` on one or more addresses; counts() reads its JSON report."""

    def __init__(self, tmp, listen, *extra, name="sink"):
        self.report = Path(tmp) / f"{name}.json"
        self.address = listen[0]  # "host:port": what a queue's mx points at
        self.maildir = None
        args = [MMA, "sink", "--report", str(self.report), "--report-every", "100ms"]
        for l in listen:
            args += ["--listen", l]
        args += list(extra)
        if "--maildir" in extra:
            self.maildir = Path(extra[list(extra).index("--maildir") + 1])
        self.process = Process(args, Path(tmp) / f"{name}.log")
        # Its first report comes after it bound every address; probing the port instead would
        # count as a session.
        wait_until(lambda: self.report.exists() or not self.process.alive(), what="the sink to start")
        assert self.process.alive(), self.process.output()

    def counts(self):
        try:
            return json.loads(self.report.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"messages": 0, "recipients": 0, "listeners": {}, "domains": {}}

    def wait_messages(self, n, timeout=30.0):
        return wait_until(lambda: self.counts() if self.counts()["messages"] >= n else None,
                          timeout, what=f"{n} messages at the sink")

    def stop(self):
        self.process.stop()
        return self.counts()


DEFAULT_QUEUE = """
[[queue]]
name = "general"
mx = ["{mx}"]
max_mta = 20
retry_delay = "50ms"
retry_delay_max = "200ms"
"""


class Serve:
    """`mma serve` with a generated configuration."""

    def __init__(self, tmp, body, name="serve", listen=True, extra_args=(), wait=True, stats_interval="0s",
                 shutdown_grace="5s", server_extra=""):
        self.tmp = Path(tmp)
        self.accounting_path = self.tmp / f"{name}-accounting.jsonl"
        self.config_path = self.tmp / f"{name}.toml"
        self.config_path.write_text(
            f'[server]\naccounting_log = "{self.accounting_path}"\nstats_interval = "{stats_interval}"\n'
            f'shutdown_grace = "{shutdown_grace}"\nhostname = "mma.test"\n{server_extra}\n' + body)
        self.process = Process([MMA, "serve", "-c", str(self.config_path), *extra_args],
                               self.tmp / f"{name}.log")
        self.ports = []
        if wait:
            for line in body.splitlines():
                line = line.strip()
                if line.startswith("address") and "unix:" not in line:
                    host, port = line.split('"')[1].rsplit(":", 1)
                    wait_port(host, int(port))

    def accounting(self):
        if not self.accounting_path.exists():
            return []
        return [json.loads(l) for l in self.accounting_path.read_text().splitlines() if l.strip()]

    def finals(self):
        return [e for e in self.accounting() if e["event"] in ("delivered", "bounced", "failed")]

    def wait_finals(self, n, timeout=30.0):
        return wait_until(lambda: self.finals() if len(self.finals()) >= n else None,
                          timeout, what=f"{n} final outcomes in the accounting log")

    def stop(self, sig=signal.SIGTERM):
        return self.process.stop(sig)

    def output(self):
        return self.process.output()


def listener(port, protocol="smtp", ack="received", extra=""):
    return (f'[[listener]]\naddress = "127.0.0.1:{port}"\nprotocol = "{protocol}"\n'
            f'ack = "{ack}"\nidle_timeout = "30s"\n{extra}\n')


def smtp_session(port, lines, read_timeout=5.0, host="127.0.0.1"):
    """Sends raw bytes (pipelined, as given) and returns everything the server answered."""
    with socket.create_connection((host, port), timeout=read_timeout * SLOW) as s:
        out = b""
        s.settimeout(read_timeout * SLOW)
        out += recv_until(s, b"\r\n")
        s.sendall(lines if isinstance(lines, bytes) else lines.encode())
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        return out.decode(errors="replace")


def recv_until(s, marker):
    data = b""
    while marker not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def reply_codes(text):
    """The codes of every final reply line ("250 ..." not "250-...")."""
    return [int(l[:3]) for l in text.split("\r\n") if len(l) >= 4 and l[:3].isdigit() and l[3] == " "]
