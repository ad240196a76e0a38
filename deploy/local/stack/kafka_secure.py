"""The local broker with authentication and ACLs: `BROADCAST_KAFKA_SECURE=1 make up`.

What a production cluster runs, on loopback:
- clients connect over SASL_SSL with SCRAM-SHA-512; the broker's certificate is signed by a CA
  made here (openssl) for 127.0.0.1, and every client checks it;
- the KRaft standard authorizer refuses what no ACL allows; the ACLs are
  deploy/kafka_acls.py's, applied by the operator principal `admin` (a super user) once the
  broker answers;
- each principal (the four services, the platform, each request client, the operator) is a
  SCRAM user created when the storage is formatted, with a random password kept in the run
  dir (credentials.json, mode 0600): `python -m deploy.local.stack kafka-env PRINCIPAL` prints
  the variables a tool needs to speak as one of them;
- the controller listener (loopback, broker-to-controller only) uses SASL/PLAIN with its own
  principal: SCRAM credentials live in the metadata the controller serves, so they cannot
  authenticate the controller itself.

Plaintext stays the default, for `make demo` and the suite.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .component import StackError
from .config import HOST, REQUEST_CLIENTS, SERVICE_PORTS, log_file

SECURE_VARIABLE = "BROADCAST_KAFKA_SECURE"
MECHANISM = "SCRAM-SHA-512"
OPERATOR = "admin"
CONTROLLER = "controller"
PLATFORM = "platform"


def secure() -> bool:
    """Whether the stack's broker authenticates and authorises (read when used)."""
    return os.environ.get(SECURE_VARIABLE, "") == "1"


def principals(request_clients: str = REQUEST_CLIENTS) -> tuple[str, ...]:
    """Every SCRAM user of the stack: the operator, the services, the platform and the clients."""
    return (OPERATOR, *SERVICE_PORTS, PLATFORM, *sorted(json.loads(request_clients)))


@dataclass(frozen=True)
class Secrets:
    """A secure broker's files: its credentials and its TLS material, in its state dir."""

    base: Path

    @property
    def credentials_file(self) -> Path:
        return self.base / "credentials.json"

    @property
    def ca(self) -> Path:
        return self.base / "tls" / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's private key then its certificate, as Kafka's PEM keystore wants them."""
        return self.base / "tls" / "broker.pem"

    def passwords(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.credentials_file.read_text()))
        except FileNotFoundError:
            raise StackError(
                f"kafka: no credentials in {self.base}; start the stack with {SECURE_VARIABLE}=1"
            ) from None

    def ensure(self, users: Iterable[str]) -> dict[str, str]:
        """Create what is missing (passwords of new users, the CA and the broker's certificate);
        return every user's password."""
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            known = dict(json.loads(self.credentials_file.read_text()))
        except FileNotFoundError:
            known = {}
        wanted = {u: known.get(u) or secrets.token_urlsafe(24) for u in (CONTROLLER, *users)}
        if wanted != known:
            self.credentials_file.touch(mode=0o600)
            self.credentials_file.write_text(json.dumps(wanted, indent=1) + "\n")
        if not (self.ca.exists() and self.keystore.exists()):
            _make_certificates(self.ca.parent)
        return wanted

    def client_env(self, prefix: str, user: str) -> dict[str, str]:
        """The variables of a client speaking as `user`: `<prefix>KAFKA_SECURITY_PROTOCOL`..."""
        return {
            f"{prefix}KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            f"{prefix}KAFKA_SASL_MECHANISM": MECHANISM,
            f"{prefix}KAFKA_SASL_USERNAME": user,
            f"{prefix}KAFKA_SASL_PASSWORD": self.passwords()[user],
            f"{prefix}KAFKA_SSL_CAFILE": str(self.ca),
        }


def _make_certificates(tls: Path) -> None:
    """A CA, and a certificate for the broker at 127.0.0.1 signed by it (openssl)."""
    tls.mkdir(parents=True, exist_ok=True)
    names = f"subjectAltName=IP:{HOST},DNS:localhost"
    ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825"]
    broker = ["req", "-newkey", "rsa:2048", "-nodes"]
    sign = ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
    steps = [
        [*ca, "-subj", "/CN=broadcast-engine local CA", "-keyout", "ca.key", "-out", "ca.pem"],
        [*broker, "-subj", f"/CN={HOST}", "-keyout", "broker.key", "-out", "broker.csr"],
        [*sign, "-CAcreateserial", "-days", "825", "-extfile", "names.ext", "-out", "broker.crt"],
    ]
    (tls / "names.ext").write_text(names + "\n")
    log = log_file("kafka-tls")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        for step in steps:
            try:
                done = subprocess.run(
                    ["openssl", *step], cwd=tls, stdout=out, stderr=subprocess.STDOUT, check=False
                )
            except FileNotFoundError:
                raise StackError(
                    "kafka: `openssl` is not on PATH (needed by the secure broker)"
                ) from None
            if done.returncode != 0:
                raise StackError(f"kafka: making the broker's certificate failed; see {log}")
    # openssl writes PKCS#8 keys ("BEGIN PRIVATE KEY"), the form Kafka's PEM keystore reads.
    keystore = tls / "broker.pem"
    keystore.touch(mode=0o600)
    keystore.write_text((tls / "broker.key").read_text() + (tls / "broker.crt").read_text())


def listeners(broker_port: int, controller_port: int, secure_files: Secrets | None) -> str:
    """The listener block of server.properties: plaintext, or SASL_SSL and the authorizer."""
    if secure_files is None:
        return "\n".join(
            [
                f"listeners=PLAINTEXT://{HOST}:{broker_port},CONTROLLER://{HOST}:{controller_port}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{broker_port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        )
    passwords = secure_files.passwords()
    controller, operator = passwords[CONTROLLER], passwords[OPERATOR]
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return "\n".join(
        [
            f"listeners=BROKER://{HOST}:{broker_port},CONTROLLER://{HOST}:{controller_port}",
            f"advertised.listeners=BROKER://{HOST}:{broker_port}",
            "listener.security.protocol.map=BROKER:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name=BROKER",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.broker.sasl.enabled.mechanisms={MECHANISM}",
            f"listener.name.broker.{MECHANISM.lower()}.sasl.jaas.config={scram} required "
            f'username="{OPERATOR}" password="{operator}";',
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={plain} required "
            f'username="{CONTROLLER}" password="{controller}" user_{CONTROLLER}="{controller}";',
            "listener.name.broker.ssl.keystore.type=PEM",
            f"listener.name.broker.ssl.keystore.location={secure_files.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={secure_files.ca}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{OPERATOR};User:{CONTROLLER}",
            # What no ACL allows is refused, for every principal but the super users.
            "allow.everyone.if.no.acl.found=false",
        ]
    )


def format_options(passwords: Mapping[str, str]) -> list[str]:
    """StorageTool's options creating every SCRAM user (the controller's is PLAIN, not here)."""
    return [
        option
        for user, password in passwords.items()
        if user != CONTROLLER
        for option in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")
    ]
