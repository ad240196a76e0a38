"""Kafka from Maven Central's jars: one KRaft node, or with BROADCAST_KAFKA_BROKERS=3 a cluster
of three combined broker+controller nodes; and a protocol-level readiness check.

Node n of the stack listens for clients on 19092 + 2(n - 1) and for its controller on the port
after: 19092/19093 (the single node's), 19094/19095, 19096/19097. The single node is the
component `kafka` with its state in <run dir>/kafka; a cluster's are `kafka-1`..`kafka-3`, with
one cluster id in <run dir>/kafka-cluster and each node's state in node-<n> under it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import socket
import ssl
import string
import struct
import subprocess
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from shared.replication import replication_for

from . import kafka_secure
from .component import Component, StackError
from .config import (
    HOST,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    REPO,
    REQUEST_CLIENTS,
    cache_dir,
    kafka_dir,
    log_file,
    run_dir,
)
from .kafka_secure import (
    MECHANISM,
    OPERATOR,
    SECURE_VARIABLE,
    Secrets,
    format_options,
    listeners,
    principals,
)
from .readiness import ReadyCheck, tcp_answers

# One node: half of Kafka's scripts' 1 GB is plenty for the suite and the bench. Three nodes
# share the machine (2 cores here) with everything else: 384 MB each, 1.1 GB for the three.
KAFKA_HEAP_MB = 512
CLUSTER_HEAP_MB = 384
KAFKA_DEPLOY = REPO / "deploy" / "kafka"
BROKERS_VARIABLE = "BROADCAST_KAFKA_BROKERS"
CLUSTER_SIZES = (1, 3)


@dataclass(frozen=True, slots=True)
class Node:
    """One combined broker+controller node of a KRaft cluster."""

    node_id: int
    broker_port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.broker_port}"


def nodes(count: int, first_port: int = KAFKA_PORT) -> tuple[Node, ...]:
    """Nodes 1..count: node n's clients on first_port + 2(n - 1), its controller on the next."""
    return tuple(
        Node(n, first_port + 2 * (n - 1), first_port + 2 * (n - 1) + 1) for n in range(1, count + 1)
    )


def bootstrap(cluster: tuple[Node, ...]) -> str:
    """Every node's client address: a client that knows one node only loses the cluster with it."""
    return ",".join(node.address for node in cluster)


def stack_nodes() -> tuple[Node, ...]:
    """The stack's nodes, as BROADCAST_KAFKA_BROKERS (default 1) asks; read when used."""
    text = os.environ.get(BROKERS_VARIABLE, "").strip() or "1"
    if not text.isdigit() or int(text) not in CLUSTER_SIZES:
        # Two nodes are refused: two voters lose their quorum with either one, so a second node
        # would add a way to fail and no way to survive one.
        raise StackError(f"{BROKERS_VARIABLE}={text!r}: expected 1 or 3 (nodes of the cluster)")
    return nodes(int(text))


def kafka_version() -> str:
    match = re.search(
        r"<kafka\.version>([^<]+)</kafka\.version>", (KAFKA_DEPLOY / "pom.xml").read_text()
    )
    if match is None:
        raise StackError(f"kafka: no <kafka.version> in {KAFKA_DEPLOY / 'pom.xml'}")
    return match.group(1).strip()


def kafka_libs() -> Path:
    return cache_dir() / f"kafka-{kafka_version()}" / "libs"


def _kafka_jars_complete(libs: Path) -> bool:
    marker = libs.parent / "libs.complete"
    try:
        names = marker.read_text().split()
    except FileNotFoundError:
        return False
    return bool(names) and all((libs / name).is_file() for name in names)


def ensure_kafka_jars() -> Path:
    """Download Kafka's runtime classpath with Maven unless the cache already holds it."""
    libs = kafka_libs()
    if _kafka_jars_complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("kafka: `mvn` is not on PATH; it is needed once to fetch the jars")
    partial = libs.parent / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log = log_file("kafka-download")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"kafka: downloading jars with Maven into {libs} (once)", flush=True)
    with log.open("ab") as out:
        try:
            result = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-f",
                    str(KAFKA_DEPLOY / "pom.xml"),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={partial}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=900,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"kafka: jar download timed out; see {log}") from None
    jars = sorted(p.name for p in partial.glob("*.jar"))
    if result.returncode != 0 or not jars:
        raise StackError(f"kafka: jar download failed (mvn exit {result.returncode}); see {log}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    # Written last, so an interrupted download is retried rather than trusted.
    (libs.parent / "libs.complete").write_text("\n".join(jars) + "\n")
    return libs


def _mode(secure: bool) -> str:
    return "sasl_ssl" if secure else "plaintext"


def _java_command(libs: Path, heap_mb: int = KAFKA_HEAP_MB) -> list[str]:
    return [
        "java",
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
    ]


def _new_cluster_id() -> str:
    # Same format as `kafka-storage random-uuid` (url-safe base64 of a UUID), without paying a
    # JVM start; Kafka also avoids a leading '-' so the id is not read as a CLI flag.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def ensure_cluster_id(id_file: Path) -> None:
    """Write a new cluster id unless one is there; nodes prepared at once all get the first."""
    if id_file.exists():
        return
    draft = id_file.with_name(f"{id_file.name}.{uuid.uuid4().hex}")
    draft.write_text(_new_cluster_id() + "\n")
    # A hard link appears whole or not at all, and fails if another node's came first.
    with contextlib.suppress(FileExistsError):
        os.link(draft, id_file)
    draft.unlink()


@dataclass(frozen=True)
class NodeLayout:
    """Where a node keeps its state, and the cluster it belongs to."""

    node: Node
    cluster: tuple[Node, ...]
    base: Path  # the node's config, secrets and data
    cluster_id_file: Path  # one id for every node of the cluster
    name: str  # the component's, naming its log

    def properties(self, listener_block: str) -> str:
        replication = replication_for(len(self.cluster))
        template = string.Template((KAFKA_DEPLOY / "server.properties.template").read_text())
        return template.substitute(
            node_id=self.node.node_id,
            voters=",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.cluster),
            listeners=listener_block,
            log_dirs=self.base / "data",
            replication_factor=replication.factor,
            min_insync=replication.min_insync,
        )


def _prepare_kafka(layout: NodeLayout, secure: bool, clients: str) -> None:
    libs = ensure_kafka_jars()
    base = layout.base
    data = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    # The SCRAM users are written when the storage is formatted: a broker formatted in one mode
    # cannot simply be restarted in the other.
    mode_file = base / "mode"
    formatted = (data / "meta.properties").exists()
    if formatted and mode_file.exists() and mode_file.read_text().strip() != _mode(secure):
        raise StackError(
            f"kafka: {data} was formatted {mode_file.read_text().strip()}, not {_mode(secure)}; "
            f"`make down` and remove {base} to switch"
        )
    files = Secrets(base) if secure else None
    passwords = files.ensure(principals(clients)) if files else {}
    node = layout.node
    props = base / "server.properties"
    props.write_text(layout.properties(listeners(node.broker_port, node.controller_port, files)))
    props.chmod(0o600)  # a secure broker's holds the operator's and the controller's passwords
    id_file = layout.cluster_id_file
    ensure_cluster_id(id_file)
    if formatted:
        return
    mode_file.write_text(_mode(secure) + "\n")
    log = log_file(layout.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            result = subprocess.run(
                [
                    *_java_command(libs),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    id_file.read_text().strip(),
                    "-c",
                    str(props),
                    *format_options(passwords),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        except FileNotFoundError:
            raise StackError("kafka: `java` is not on PATH (Java 17+ is needed)") from None
    if result.returncode != 0:
        raise StackError(f"kafka: formatting storage failed; see {log}")


def kafka_answers(
    port: int = KAFKA_PORT, timeout: float = 2.0, tls: ssl.SSLContext | None = None
) -> bool:
    """True when a broker on `port` answers an ApiVersions request without error; over TLS
    with `tls` (a SASL_SSL listener answers ApiVersions before authentication).

    Stronger than a TCP connect: the broker only serves requests once it has joined the
    KRaft quorum and is unfenced.
    """
    client_id = b"deploy.local.stack"
    correlation_id = 7
    # Request header v1: api_key 18 (ApiVersions), api_version 0, correlation id, client id.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection((HOST, port), timeout=timeout))
            if tls is not None:
                sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=HOST))
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 10)  # size, correlation id, error code
    except OSError:
        return False
    _, got_correlation, error_code = struct.unpack(">iih", header)
    return bool(got_correlation == correlation_id and error_code == 0)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _apply_acls(broker_port: int, files: Secrets, clients: str) -> None:
    """Create the topics and the ACLs as the operator (deploy/kafka_acls.py)."""
    # The venv's (pydantic, aiokafka): `make down` imports this module without them.
    from deploy.kafka_acls import apply, rules
    from shared import partitions, requesters
    from shared.kafka_security import KafkaSecurity

    operator = KafkaSecurity(
        protocol="SASL_SSL",
        mechanism=MECHANISM,
        username=OPERATOR,
        password=files.passwords()[OPERATOR],
        cafile=files.ca,
    )
    held = requesters.parse(clients)
    asyncio.run(
        apply(
            f"{HOST}:{broker_port}",
            operator,
            rules(held),
            partitions.parse(os.environ.get(partitions.VARIABLE)).every_topic(held),
        )
    )


def kafka(
    broker_port: int = KAFKA_PORT,
    controller_port: int = KAFKA_CONTROLLER_PORT,
    *,
    secure: bool | None = None,
    clients: str = REQUEST_CLIENTS,
    name: str = "kafka",
    base: Path | None = None,
) -> Component:
    """The single-node broker; `secure` (default: BROADCAST_KAFKA_SECURE=1) authenticates every
    client and authorises by the ACLs of deploy/kafka_acls.py for the request `clients` (JSON).
    A test starts another broker beside the stack's with its own `name`, ports and `base`."""
    base = base or kafka_dir()
    secure = kafka_secure.secure() if secure is None else secure
    files = Secrets(base) if secure else None
    node = Node(1, broker_port, controller_port)
    layout = NodeLayout(node, (node,), base, base / "cluster.id", name)

    def ready() -> bool:
        # The CA is made by `prepare`: read when checking, after it.
        tls = ssl.create_default_context(cafile=files.ca) if files else None
        return kafka_answers(broker_port, tls=tls)

    return replace(
        _node(layout, KAFKA_HEAP_MB, ready, stop_timeout=30.0),
        prepare=lambda: _prepare_kafka(layout, secure, clients),
        after_start=(lambda: _apply_acls(broker_port, files, clients)) if files else None,
    )


def kafka_cluster(
    cluster: tuple[Node, ...],
    *,
    base: Path | None = None,
    name: str = "kafka",
    heap_mb: int = CLUSTER_HEAP_MB,
) -> tuple[Component, ...]:
    """One component per node, `<name>-<node id>`, in start order; plaintext only. A test starts
    a cluster beside the stack's with its own ports (`nodes`), `base` and `name`."""
    if kafka_secure.secure():
        raise StackError(
            f"kafka: {SECURE_VARIABLE}=1 runs a single node; unset it or {BROKERS_VARIABLE}"
        )
    base = base or run_dir() / "kafka-cluster"
    return tuple(
        _cluster_node(
            NodeLayout(
                node,
                cluster,
                base / f"node-{node.node_id}",
                base / "cluster.id",
                f"{name}-{node.node_id}",
            ),
            heap_mb,
        )
        for node in cluster
    )


def _cluster_node(layout: NodeLayout, heap_mb: int) -> Component:
    node, cluster = layout.node, layout.cluster

    def ready() -> bool:
        # Without a majority of the voters running no node can serve a client, so a node started
        # before the others is ready once its controller listens; from the majority on, when it
        # answers as a broker.
        running = sum(tcp_answers(n.controller_port) for n in cluster)
        if running <= len(cluster) // 2:
            return tcp_answers(node.controller_port)
        if running < len(cluster):
            return kafka_answers(node.broker_port)
        # Every voter runs: the cluster is ready when every node serves clients, the ones taken
        # as ready before the quorum included (a service started earlier meets a node that is
        # the leader of some partitions and does not answer yet).
        return all(kafka_answers(n.broker_port) for n in cluster)

    # The last node to stop has no quorum left to acknowledge its controlled shutdown and waits
    # for it in vain: killed sooner, it recovers its logs on the next start.
    return _node(layout, heap_mb, ready, stop_timeout=10.0)


def _node(layout: NodeLayout, heap_mb: int, ready: ReadyCheck, stop_timeout: float) -> Component:
    """A plaintext node's component; the secure broker adds its secrets and ACLs."""
    node = layout.node
    return Component(
        name=layout.name,
        command=[
            *_java_command(kafka_libs(), heap_mb),
            "kafka.Kafka",
            str(layout.base / "server.properties"),
        ],
        ports=(node.broker_port, node.controller_port),
        ready=ready,
        prepare=lambda: _prepare_kafka(layout, False, REQUEST_CLIENTS),
        cwd=layout.base,
        start_timeout=120.0,
        stop_timeout=stop_timeout,
    )


def stack_kafka() -> tuple[Component, ...]:
    """The stack's Kafka: `kafka`, or with BROADCAST_KAFKA_BROKERS=3 `kafka-1`..`kafka-3`."""
    cluster = stack_nodes()
    return (kafka(),) if len(cluster) == 1 else kafka_cluster(cluster)
