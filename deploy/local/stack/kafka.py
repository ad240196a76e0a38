"""Kafka: a single KRaft node from Maven Central's jars, and a protocol-level readiness check."""

from __future__ import annotations

import base64
import re
import shutil
import socket
import string
import struct
import subprocess
import uuid
from pathlib import Path

from .component import Component, StackError
from .config import HOST, KAFKA_CONTROLLER_PORT, KAFKA_PORT, REPO, cache_dir, log_file, run_dir

KAFKA_HEAP = ("-Xms512m", "-Xmx512m")
KAFKA_DEPLOY = REPO / "deploy" / "kafka"


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


def _kafka_dirs() -> tuple[Path, Path]:
    """(state dir holding config and cluster id; log.dirs)."""
    base = run_dir() / "kafka"
    return base, base / "data"


def _java_command(libs: Path) -> list[str]:
    return [
        "java",
        *KAFKA_HEAP,
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


def _prepare_kafka() -> None:
    libs = ensure_kafka_jars()
    base, data = _kafka_dirs()
    base.mkdir(parents=True, exist_ok=True)
    template = string.Template((KAFKA_DEPLOY / "server.properties.template").read_text())
    props = base / "server.properties"
    props.write_text(
        template.substitute(
            node_id=1, broker_port=KAFKA_PORT, controller_port=KAFKA_CONTROLLER_PORT, log_dirs=data
        )
    )
    id_file = base / "cluster.id"
    if not id_file.exists():
        id_file.write_text(_new_cluster_id() + "\n")
    if (data / "meta.properties").exists():
        return
    log = log_file("kafka")
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


def kafka_answers(port: int = KAFKA_PORT, timeout: float = 2.0) -> bool:
    """True when a broker on `port` answers an ApiVersions request without error.

    Stronger than a TCP connect: the broker only serves requests once it has joined the
    KRaft quorum and is unfenced.
    """
    client_id = b"deploy.local.stack"
    correlation_id = 7
    # Request header v1: api_key 18 (ApiVersions), api_version 0, correlation id, client id.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
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


def kafka() -> Component:
    base, _ = _kafka_dirs()
    return Component(
        name="kafka",
        command=[*_java_command(kafka_libs()), "kafka.Kafka", str(base / "server.properties")],
        ports=(KAFKA_PORT, KAFKA_CONTROLLER_PORT),
        ready=kafka_answers,
        prepare=_prepare_kafka,
        cwd=base,
        start_timeout=120.0,
        stop_timeout=30.0,
    )
