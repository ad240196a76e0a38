"""The SMTP relay, pipelined, against Postfix's real smtpd (not smtp-sink): a private Postfix
instance of the test's own (its own config, queue and log under a temporary directory, loopback
only, a free port, every message handed to the `discard` transport), so nothing of the machine's
mail system or of the stack is touched. Needs `/usr/sbin/postfix` (Debian package `postfix`) and
root, which Postfix's master requires; skipped otherwise."""

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import pytest

from services.dispatcher.smtp import SmtpRelay
from tests.unit.rendered import rendered

POSTFIX = Path("/usr/sbin/postfix")

pytestmark = pytest.mark.skipif(
    not POSTFIX.exists() or os.geteuid() != 0,
    reason="needs Postfix (/usr/sbin/postfix) and root to run a private instance",
)

MESSAGES = 300
REFUSED = "refused@example.org"

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
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
mail_owner = postfix
myhostname = pipelining.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.org
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{ {refused} = 550 5.1.1 no such user }} }}
default_transport = discard:
relay_transport = discard:
"""


@dataclass(frozen=True)
class Postfix:
    port: int
    maillog: Path

    def delivered(self) -> dict[str, str]:
        """Queue id -> recipient of every message the discard transport took."""
        text = self.maillog.read_text() if self.maillog.exists() else ""
        return dict(re.findall(r"discard\[\d+\]: (\w+): to=<([^>]+)>.*status=sent", text))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    # Not pytest's tmp_path: Postfix's daemons run as `postfix` and must reach the queue.
    root = Path(tempfile.mkdtemp(prefix="postfix-pipelining-"))
    root.chmod(0o755)
    port = free_port()
    for directory in ("etc", "queue"):
        (root / directory).mkdir()
    (root / "etc" / "main.cf").write_text(MAIN_CF.format(root=root, refused=REFUSED))
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


async def test_postfix_takes_every_pipelined_message_exactly_once(postfix: Postfix) -> None:
    probe = aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.port, timeout=10)
    await probe.connect()
    await probe.ehlo()
    assert probe.supports_extension("pipelining")  # so the relay pipelines
    await probe.quit()

    relay = SmtpRelay(host="127.0.0.1", port=postfix.port, size=8, timeout=10.0)
    addresses = [f"user{i}@example.org" for i in range(MESSAGES)]
    # A leading dot on a line and a body without a final CRLF on the way.
    messages = [rendered("email", a, f"Subject: {a}\r\n\r\n.{a}\r\nend") for a in addresses]
    refused = [rendered("email", REFUSED) for _ in range(3)]
    try:
        attempts = await asyncio.gather(*(relay.send(m) for m in [*messages, *refused]))
    finally:
        await relay.close()

    assert [(a.verdict, a.code) for a in attempts[MESSAGES:]] == [("permanent", 550)] * 3
    assert {(a.verdict, a.code) for a in attempts[:MESSAGES]} == {("accepted", 250)}
    sent = zip(attempts[:MESSAGES], addresses, strict=True)
    queued = {a.detail.rsplit(" ", 1)[-1]: address for a, address in sent}
    assert len(queued) == MESSAGES
    deadline = time.monotonic() + 30
    while len(postfix.delivered()) < MESSAGES and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # anything more would be a message taken twice
    assert postfix.delivered() == queued
    assert "improper command pipelining" not in postfix.maillog.read_text()
