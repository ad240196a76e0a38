"""A private Postfix instance for integration tests: its own config, queue and log under a
temporary directory, loopback only, on a free port, so nothing of the machine's mail system or
of the stack is touched. Needs `/usr/sbin/postfix` (Debian package `postfix`) and root, which
Postfix's master requires: `needs_postfix` skips a test module otherwise."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTFIX = Path("/usr/sbin/postfix")

needs_postfix = pytest.mark.skipif(
    not POSTFIX.exists() or os.geteuid() != 0,
    reason="needs Postfix (/usr/sbin/postfix) and root to run a private instance",
)

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
smtp unix - - n - - smtp
local unix - n n - - local
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

# What every instance has; each test adds its routing (mydestination, transports, restrictions).
MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
mail_owner = postfix
myhostname = {hostname}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
"""


@dataclass(frozen=True)
class Postfix:
    port: int
    maillog: Path

    def log(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def private_postfix(hostname: str, routing: str) -> Iterator[Postfix]:
    """A running instance named `hostname`, its main.cf completed by `routing`, stopped and
    removed on exit."""
    # Not pytest's tmp_path: Postfix's daemons run as `postfix` and must reach the queue.
    root = Path(tempfile.mkdtemp(prefix="postfix-test-"))
    root.chmod(0o755)
    port = free_port()
    for directory in ("etc", "queue"):
        (root / directory).mkdir()
    main_cf = MAIN_CF.format(root=root, hostname=hostname) + routing
    (root / "etc" / "main.cf").write_text(main_cf)
    (root / "etc" / "master.cf").write_text(MASTER_CF.format(port=port))
    (root / "data").mkdir()
    shutil.chown(root / "data", "postfix")
    postfix = [str(POSTFIX), "-c", str(root / "etc")]
    try:
        subprocess.run([*postfix, "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, "Postfix's smtpd did not start"
            time.sleep(0.1)
        yield Postfix(port, root / "maillog")
    finally:
        subprocess.run([*postfix, "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
