"""A private Exim relay in a directory of its own, for the benchmarks: like postfix_instance.py and
haraka_instance.py, a tuned relay that mma is measured against.

Debian's exim4 package cannot be installed beside Postfix (both are the system's MTA), so
install() unpacks exim4-daemon-light and exim4-base from Debian 12 into PREFIX (outside the
repository) with `dpkg -x`, and adds the user Exim was built to run deliveries as. Each instance
is a configuration file, a spool and a log directory; the daemon runs in the foreground (-bdf).
Exim writes each message to its spool, fsync'ed, before its 250, and then forks a delivery
process for it at once (as Postfix's cleanup and qmgr do, in one process per message)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postfix_instance import master_and_children, stop_session, wait_listening

VERSION = "4.96 (Debian 12)"
PREFIX = Path(os.environ.get("MMA_EXIM_PREFIX", "/opt/mma-bench/exim"))
EXIM = PREFIX / "usr" / "sbin" / "exim4"
USER = "Debian-exim"  # compiled into Debian's build

# What a bulk sender would tune on an Exim relay. Each setting is also in bench/README.md.
EXIM_TUNING = {
    # Deliver every message at once, however many a connection brings (the default queues all
    # after the tenth of a connection for a queue runner, which would then be the bottleneck).
    "smtp_accept_queue_per_connection": "0",
    # Any number of messages in one connection (the default refuses the 1,001st with 421).
    "smtp_accept_max_per_connection": "0",
    "smtp_accept_max": "500",
    "smtp_accept_max_per_host": "0",
    "smtp_connect_backlog": "1024",
    # Parallel deliveries of one message to several hosts (one recipient each here: no effect).
    "remote_max_parallel": "20",
    # The queue runner (for deferred mail) may start this many deliveries at a time.
    "queue_run_max": "50",
    # What a relay does not need: a per-message log file, ident and reverse look-ups of clients.
    "message_logs": "false",
    "rfc1413_hosts": "",
    "host_lookup": "",
    # Thousands of messages in one directory slow down the spool.
    "split_spool_directory": "true",
}


# Exim double-forks each delivery, which the init process then reaps: its CPU time would be
# nobody's. So the daemon runs under this small reaper, a child subreaper (prctl
# PR_SET_CHILD_SUBREAPER) that the deliveries are handed to instead and that waits for them all:
# their CPU time then counts in the reaper's, as a Postfix master's children count in its.
REAPER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
daemon = os.fork()
if daemon == 0:
    os.execv(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGTERM, lambda *_: os.kill(daemon, signal.SIGTERM))
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def available():
    return EXIM.exists() and _user_exists()


def _user_exists():
    try:
        import pwd
        pwd.getpwnam(USER)
        return True
    except KeyError:
        return False


def install(log=None):
    """Unpacks Debian's Exim into PREFIX unless it is there; returns None, or why it failed."""
    if available():
        return None
    steps = []

    def run(argv, **kw):
        r = subprocess.run(argv, capture_output=True, text=True, **kw)
        steps.append(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}")
        return r

    if not _user_exists():
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER])
    # Its one library that a Postfix machine may lack (the rest are GnuTLS, BDB, PCRE2, ...).
    run(["apt-get", "install", "-y", "-q", "libidn12"])
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # apt's download user must write there
        r = run(["apt-get", "download", "exim4-daemon-light", "exim4-base"], cwd=tmp)
        debs = sorted(Path(tmp).glob("*.deb"))
        if r.returncode != 0 or len(debs) < 2:
            reason = f"apt-get download exim4-daemon-light exim4-base failed: {(r.stderr or r.stdout).strip()[-300:]}"
        else:
            PREFIX.mkdir(parents=True, exist_ok=True)
            for deb in debs:
                run(["dpkg", "-x", str(deb), str(PREFIX)])
            reason = None
    if log:
        Path(log).write_text("\n".join(steps))
    if reason:
        return reason
    if not available():
        return f"Exim is not usable from {PREFIX} (see {log or 'the install steps'})"
    r = subprocess.run([str(EXIM), "-bV"], capture_output=True, text=True)
    if "Exim version" not in r.stdout:
        return f"{EXIM} -bV: {(r.stderr or r.stdout).strip()[-300:]}"
    return None


def config_text(workdir, port, routing, host="127.0.0.1"):
    """routing: ("static", "host:port") to send everything there, or ("dns", None) for MX look-ups
    (through the system's resolver) to port 25."""
    lines = ["primary_hostname = exim.bench.test",
             f"spool_directory = {workdir}/spool",
             f"log_file_path = {workdir}/log/%slog",
             f"exim_path = {EXIM}",
             f"daemon_smtp_ports = {port}",
             f"local_interfaces = {host}",
             "keep_environment =",
             "acl_smtp_rcpt = acl_check_rcpt"]
    lines += [f"{k} = {v}" for k, v in EXIM_TUNING.items()]
    lines += ["begin acl", "acl_check_rcpt:", "  accept", "begin routers"]
    if routing[0] == "static":
        relay_host, relay_port = routing[1].rsplit(":", 1)
        lines += ["to_receiver:", "  driver = manualroute", "  domains = *", "  transport = remote_smtp",
                  f"  route_list = * {relay_host}::{relay_port}", "  self = send"]
    else:
        # The receiver's addresses are loopback ones, which Exim would take for itself.
        lines += ["by_mx:", "  driver = dnslookup", "  domains = *", "  transport = remote_smtp",
                  "  self = send"]
    lines += ["begin transports", "remote_smtp:", "  driver = smtp", "  hosts_avoid_tls = *",
              "  allow_localhost", "begin retry", "*   *   F,2h,15s"]
    return "\n".join(lines) + "\n"


class EximInstance:
    def __init__(self, workdir, port, routing, host="127.0.0.1"):
        self.dir = Path(workdir)
        self.port = port
        self.host = host
        self.proc = None
        self._log = None
        for d in ("spool", "log"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
            shutil.chown(self.dir / d, user=USER)
        # Exim works as its own user part of the time: it must reach them (a temporary
        # directory is 0700).
        for up in (self.dir, self.dir.parent):
            os.chmod(up, os.stat(up).st_mode | 0o111)
        self.config = self.dir / "exim.conf"
        self.config.write_text(config_text(self.dir, port, routing, host))

    def start(self, timeout=30):
        self._log = open(self.dir / "exim.out", "ab")
        # -bdf: the daemon in the foreground; -q5s: a queue runner for deferred mail.
        self.proc = subprocess.Popen([sys.executable, "-c", REAPER, str(EXIM), "-C", str(self.config), "-bdf",
                                      "-q5s"], cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if wait_listening(self.host, self.port, time.time() + timeout, self.proc):
            return self
        raise RuntimeError(f"exim did not start; see {self.dir / 'log' / 'paniclog'} and {self.dir / 'exim.out'}")

    def master_pid(self):
        """The reaper's: the daemon and the deliveries are its children."""
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def pids(self):
        """The daemon and the live deliveries (not the reaper, a Python process that is no part
        of Exim's memory; its CPU time is counted through master_pid())."""
        return master_and_children(self.master_pid())[1:]

    def stop(self):
        stop_session(self.proc, self._log)
