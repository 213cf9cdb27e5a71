"""A private Postfix instance in a directory of its own: for the benchmarks (as a tuned relay,
the MTA mma must beat) and for tests (as a real remote MTA). Needs root: Postfix's master runs
as root and drops to the `postfix` user, as installed by Debian's postfix package."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

# What a bulk sender would tune on a Postfix relay (each line is in bench/RESULTS.md).
RELAY_TUNING = {
    "default_process_limit": "1000",              # enough smtpd and smtp processes
    "smtpd_client_connection_count_limit": "0",   # the composer opens as many as it likes
    "smtpd_client_connection_rate_limit": "0",
    "smtpd_client_message_rate_limit": "0",
    "in_flow_delay": "0",                         # no inbound throttling when the queue is busy
    "smtpd_peername_lookup": "no",                # no reverse DNS of the composer
    "default_destination_concurrency_limit": "500",
    "smtp_destination_concurrency_limit": "500",  # parallel deliveries to the (static) next hop
    "initial_destination_concurrency": "50",      # skip the slow start
    "default_destination_recipient_limit": "100",
    "qmgr_message_active_limit": "100000",
    "qmgr_message_recipient_limit": "100000",
    "smtp_connection_cache_on_demand": "yes",
    "smtp_dns_support_level": "disabled",         # static routes, as mma's `mx`
    "smtp_host_lookup": "native",
    "smtpd_tls_security_level": "none",
    "smtp_tls_security_level": "none",
    "receive_override_options": "no_address_mappings,no_header_body_checks,no_unknown_recipient_checks",
    "biff": "no",
    "smtpd_delay_reject": "no",
    "smtp_skip_5xx_greeting": "no",
    "maximal_backoff_time": "10s",
    "minimal_backoff_time": "5s",
    "queue_run_delay": "5s",
}


def master_and_children(master):
    """`master` and the live processes whose parent it is (from /proc), or [] without a master."""
    if master is None:
        return []
    pids = [master]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def wait_listening(host, port, deadline, proc=None):
    """Whether something listens on host:port before `deadline` (time.time()); False as soon as
    `proc`, the relay being started, has exited."""
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_session(proc, log=None):
    """SIGTERM to `proc`'s session (started with start_new_session: the relay and all its
    processes), SIGKILL after 20 s; closes its log."""
    if not proc:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if log:
        log.close()


class PostfixInstance:
    def __init__(self, workdir, port, settings, host="127.0.0.1"):
        self.dir = Path(workdir)
        self.port = port
        self.host = host
        self.etc = self.dir / "etc"
        self.queue = self.dir / "queue"
        self.data = self.dir / "data"
        self.log = self.dir / "maillog"
        self.proc = None
        for d in (self.etc, self.queue, self.data):
            d.mkdir(parents=True, exist_ok=True)
        # Postfix's daemons run as `postfix`: every directory above ours must let it through
        # (mkdtemp makes them 0700).
        for parent in [self.dir, *self.dir.parents]:
            st = parent.stat()
            if st.st_uid == os.geteuid() and not st.st_mode & 0o001:
                os.chmod(parent, st.st_mode | 0o711)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "relay.postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "postfix.test",
            "mydestination": "",
            "inet_interfaces": host,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.dir.parent),
            "alias_maps": "",
            "alias_database": "",
        }
        main.update(settings)
        (self.etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        master = Path("/etc/postfix/master.cf").read_text().splitlines()
        out = []
        for line in master:
            parts = line.split()
            if line.startswith("smtp      inet"):
                line = f"{host}:{port} inet n - n - - smtpd"
            elif line and len(parts) >= 8 and not line[0].isspace() and not line.startswith("#") and parts[4] == "y":
                # No chroot: the private queue is not set up as a chroot jail.
                parts[4] = "n"
                line = "  ".join(parts)
            out.append(line)
        (self.etc / "master.cf").write_text("\n".join(out) + "\n")
        env = self._env()
        subprocess.run(["/usr/lib/postfix/sbin/post-install", f"config_directory={self.etc}",
                        f"queue_directory={self.queue}", f"data_directory={self.data}",
                        "meta_directory=/etc/postfix", "create-missing"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.chown(self.data, "postfix", "postfix")

    def _env(self):
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG": str(self.etc)}

    def start(self, timeout=20):
        self.proc = subprocess.Popen(["postfix", "-c", str(self.etc), "start-fg"], env=self._env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if wait_listening(self.host, self.port, time.time() + timeout):
            return self
        raise RuntimeError(f"postfix did not start; see {self.log}")

    def master_pid(self):
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self):
        """The master and its live children."""
        return master_and_children(self.master_pid())

    def stop(self):
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], env=self._env(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if self.proc:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def available():
    return os.geteuid() == 0 and Path("/usr/lib/postfix/sbin/master").exists()
