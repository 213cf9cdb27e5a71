"""A private Haraka (the Node.js MTA, from npm) relay in a directory of its own, for the
benchmarks: like postfix_instance.py, a tuned relay that mma is measured against.

Haraka is installed from npm into PREFIX (outside the repository) by install(); each instance is
a config directory made by `haraka -i`, into which the settings below are written, and its
outbound queue lives on disk in that directory's queue/ (as Postfix's does: a message is
written there, and fsync'ed, before its 250, then read back and delivered from there)."""
import copy
import os
import shutil
import subprocess
import time
from pathlib import Path

from postfix_instance import master_and_children, stop_session, wait_listening

VERSION = "3.3.4"
PREFIX = Path(os.environ.get("MMA_HARAKA_PREFIX", "/opt/mma-bench/haraka"))
HARAKA_JS = PREFIX / "node_modules" / "Haraka" / "bin" / "haraka"

# What a bulk sender would tune on a Haraka relay: one dict per file of the config directory
# ("main" is the part of an .ini before any [section]). Each setting is also in bench/README.md.
HARAKA_TUNING = {
    "smtp.ini": {"main": {
        # Cluster mode: one worker per core (os.cpus()), as Haraka's Performance-Tuning page
        # advises; each worker takes its share of the connections (node's cluster: the master
        # accepts and hands them round robin) and has its own outbound queue files and
        # deliveries. A node process uses one core. (nodes=1 is still master + 1 worker.)
        "nodes": "cpus",
        "inactivity_timeout": "300",          # Haraka's default; the composer never idles that long
        "force_shutdown_timeout": "5",        # the benchmark stops it; nothing to wait for
        "graceful_shutdown": "false",         # the default: stopping does not wait for the queue
    }},
    # Only what a relay needs. `skip_rdns` (ours, SKIP_RDNS_JS below): no reverse DNS of each
    # client (Postfix: smtpd_peername_lookup = no); Haraka has no setting for it, only the
    # lookup_rdns hook. `relay` grants relaying by ACL (relay_acl_allow below) and, in static
    # routing, routes every domain to the receiver (force_routing). No rcpt_to.* plugin (a
    # relaying connection's recipients are accepted without one), no queue/* plugin (relayed
    # mail goes to outbound, the on-disk queue), no tls, spf, dkim, dns-list, karma, fcrdns,
    # helo.checks, mail_from.is_resolvable, toobusy, process_title, syslog.
    "plugins": ["skip_rdns", "relay"],
    "relay.ini": {"relay": {
        "acl": "true",                         # relaying allowed by client address ...
        "force_routing": "false",              # static routing sets it (Routing.haraka_settings)
        "dest_domains": "false",
        "all": "false",
    }},
    "relay_acl_allow": ["127.0.0.0/8"],       # ... from loopback, where the composer is (Postfix's mynetworks)
    "outbound.ini": {"main": {
        # Parallel deliveries, per worker (outbound.concurrency_max is per process): 1000 in
        # all, Postfix's default_process_limit. HarakaInstance divides it by the workers.
        "concurrency_max": "1000",
        "enable_tls": "false",                 # no STARTTLS (Postfix: smtp_tls_security_level = none)
        "local_mx_ok": "true",                 # the receivers are on loopback; also skips the per-delivery
                                               # "is this MX me?" check (public IP + own host lookups)
        "inet_prefer": "v4",                   # the receivers have IPv4 addresses only
        "always_split": "false",               # one queue file per message and domain, not per recipient
        "connect_timeout": "30",               # the default
        "temp_fail_intervals": "5s,10s*20",    # retry soon (Postfix: minimal/maximal_backoff_time 5s/10s)
        "received_header": "Haraka outbound",  # the default: a Received header, as Postfix adds
    }},
    # connection.ini is left as `haraka -i` writes it (bodies in memory while received, 25 MB
    # size limit): a file written here replaces the whole default, sections and all.
    # warn: per-message lines (connect, message, queue, disconnect are notice; deliveries info)
    # would otherwise be written for every message, to the log file.
    "log.ini": {"main": {"level": "warn", "timestamps": "true", "format": "default"}},
    "me": ["relay.haraka.test"],              # its name (banner, EHLO, Received): no hostname lookup
    "host_list": [],                           # nothing is delivered locally
}

# The client's name without a lookup: the connect_init -> lookup_rdns hook answered at once.
SKIP_RDNS_JS = """'use strict'
// bench: no reverse DNS of the client (Postfix: smtpd_peername_lookup = no)
exports.hook_lookup_rdns = function (next, connection) {
    next(OK, connection.remote.ip)
}
"""


def available():
    """node present and Haraka installed."""
    return shutil.which("node") is not None and HARAKA_JS.exists()


def install(log=None):
    """npm install Haraka into PREFIX, unless it is there; returns None, or why it failed."""
    if available():
        return None
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are needed (Debian: apt-get install nodejs npm)"
    PREFIX.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", f"Haraka@{VERSION}"], cwd=PREFIX,
                       capture_output=True, text=True)
    if log:
        Path(log).write_text(r.stdout + r.stderr)
    if r.returncode != 0 or not HARAKA_JS.exists():
        return f"npm install Haraka@{VERSION} failed: {(r.stderr or r.stdout).strip()[-300:]}"
    return None


def _ini(sections):
    out = []
    for name, values in sections.items():
        if name != "main":
            out.append(f"\n[{name}]")
        out += [f"{k}={v}" for k, v in values.items()]
    return "\n".join(out) + "\n"


class HarakaInstance:
    def __init__(self, workdir, port, settings, host="127.0.0.1"):
        self.dir = Path(workdir)
        self.port = port
        self.host = host
        self.log = self.dir / "haraka.log"
        self.proc = None
        self._log = None
        subprocess.run(["node", str(HARAKA_JS), "-i", str(self.dir)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        (self.dir / "queue").mkdir(exist_ok=True)
        settings = copy.deepcopy(settings)
        main = settings["smtp.ini"]["main"]
        main["listen"] = f"{host}:{port}"
        nodes = main.get("nodes", "1")
        self.nodes = os.cpu_count() if nodes == "cpus" else int(nodes)  # 0: no cluster, one process
        out = settings["outbound.ini"]["main"]
        out["concurrency_max"] = str(max(1, int(out["concurrency_max"]) // max(self.nodes, 1)))
        cfg = self.dir / "config"
        (self.dir / "plugins" / "skip_rdns.js").write_text(SKIP_RDNS_JS)
        for name, value in settings.items():
            text = "\n".join(value) + "\n" if isinstance(value, list) else _ini(value)
            (cfg / name).write_text(text)

    def start(self, timeout=30):
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(["node", str(HARAKA_JS), "-c", str(self.dir)], cwd=self.dir,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        if wait_listening(self.host, self.port, deadline, self.proc):
            # In cluster mode the port answers once one worker listens: give the others a moment.
            while len(self.pids()) < 1 + self.nodes and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(0.5 if self.nodes > 1 else 0)
            return self
        raise RuntimeError(f"haraka did not start; see {self.log}")

    def master_pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def pids(self):
        """The master and its live children (the cluster workers)."""
        return master_and_children(self.master_pid())

    def queued(self):
        """Messages still in the outbound queue (files in queue/)."""
        try:
            return sum(1 for f in os.listdir(self.dir / "queue") if not f.startswith((".", "error.")))
        except OSError:
            return 0

    def stop(self):
        stop_session(self.proc, self._log)  # its own session: the master and its workers
