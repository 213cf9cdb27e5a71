"""Running as a service: binding a privileged port as root, then running unprivileged
([server] user), and the systemd unit."""
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import MMA, ROOT, DEFAULT_QUEUE, free_port, listener, wait_until


def privileged_port():
    for port in range(587, 1024):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def proc_ids(pid):
    """Real, effective, saved and filesystem ids, and the supplementary groups."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(v) for v in value.split()]
    return fields


@pytest.mark.skipif(os.geteuid() != 0, reason="binding below 1024 and changing user need root")
def test_binds_a_privileged_port_as_root_then_runs_as_the_configured_user(sink, serve):
    nobody = pwd.getpwnam("nobody")
    s = sink()
    port = privileged_port()
    # The unprivileged process must reach its spool: not under pytest's private (0700) tmp.
    base = Path(tempfile.mkdtemp(prefix="mma-user-"))
    try:
        base.chmod(0o755)
        spool = base / "spool"
        sock = base / "lmtp.sock"
        srv = serve(f'[spool]\npath = "{spool}"\n' + listener(port, ack="spooled") +
                    f'[[listener]]\naddress = "unix:{sock}"\nprotocol = "lmtp"\n' +
                    DEFAULT_QUEUE.format(mx=s.address), server_extra='user = "nobody"')
        # The port listens once bound, a moment before the process gives up root: wait for that.
        wait_until(lambda: "running as user nobody" in srv.output(), what="the drop to nobody")
        ids = proc_ids(srv.process.proc.pid)
        assert ids["Uid"] == [nobody.pw_uid] * 4, ids
        assert ids["Gid"] == [nobody.pw_gid] * 4, ids
        assert 0 not in ids["Groups"], ids  # root's supplementary groups are gone too

        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.sendmail("c@sender.test", ["a@d1.test", "b@d2.test"],
                       "Message-ID: <priv@x>\r\nSubject: unprivileged\r\n\r\nhello\r\n")
        wait_until(lambda: s.counts()["recipients"] == 2, what="2 recipients at the sink")
        # What it writes from now on, it writes as nobody: the spool, the socket, the log.
        for p in [spool, *spool.iterdir(), sock, srv.accounting_path]:
            assert p.lstat().st_uid == nobody.pw_uid, f"{p} is owned by uid {p.lstat().st_uid}"
        assert srv.stop() == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_unknown_user_is_a_config_error_naming_file_line_and_key(tmp_path):
    cfg = tmp_path / "user.toml"
    cfg.write_text('[server]\nhostname = "mma.test"\nuser = "no-such-user-mma"\n' + listener(2525) +
                   DEFAULT_QUEUE.format(mx="127.0.0.1:2526"))
    r = subprocess.run([MMA, "serve", "-c", str(cfg), "--check"], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{cfg}:3: key 'user' in [server]" in r.stderr and "no such user" in r.stderr, r.stderr


def test_changing_user_without_root_is_refused_with_the_reason(tmp_path):
    cfg_dir = Path(tempfile.mkdtemp(prefix="mma-user-"))
    try:
        cfg_dir.chmod(0o755)
        cfg = cfg_dir / "user.toml"
        cmd = [MMA, "serve", "-c", str(cfg)]
        if os.geteuid() == 0:  # become an ordinary user first, then ask to be root
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
            target = "root"
        else:
            target = "nobody" if pwd.getpwuid(os.geteuid()).pw_name != "nobody" else "root"
        cfg.write_text(f'[server]\nhostname = "mma.test"\naccounting_log = "/dev/null"\n'
                       f'user = "{target}"\n' + listener(free_port()) + DEFAULT_QUEUE.format(mx="127.0.0.1:2526"))
        cfg.chmod(0o644)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert "only root can become another user" in r.stderr + r.stdout, r.stderr + r.stdout
    finally:
        shutil.rmtree(cfg_dir, ignore_errors=True)


def test_the_shipped_example_configuration_is_valid(tmp_path):
    # The `mma` system user of the example may not exist here: check with one that does.
    cfg = tmp_path / "mma.toml"
    cfg.write_text((ROOT / "dist" / "mma.toml").read_text().replace('user = "mma"', 'user = "nobody"'))
    r = subprocess.run([MMA, "serve", "-c", str(cfg), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_verifies(tmp_path):
    unit = tmp_path / "mma.service"
    unit.write_text((ROOT / "dist" / "mma.service").read_text().replace("/usr/local/bin/mma", MMA))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_install_puts_the_binary_unit_and_example_config_in_place(tmp_path):
    build = Path(MMA).parent
    r = subprocess.run(["cmake", "--install", str(build)], env={**os.environ, "DESTDIR": str(tmp_path)},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rel in ("usr/local/bin/mma", "etc/systemd/system/mma.service", "etc/mma/mma.toml"):
        assert (tmp_path / rel).exists(), rel
    # A second install keeps the operator's configuration.
    (tmp_path / "etc/mma/mma.toml").write_text("# mine\n")
    subprocess.run(["cmake", "--install", str(build)], env={**os.environ, "DESTDIR": str(tmp_path)}, check=True,
                   capture_output=True)
    assert (tmp_path / "etc/mma/mma.toml").read_text() == "# mine\n"
