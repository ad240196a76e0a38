"""The Kubernetes manifests (deploy/kubernetes/) against the schemas of their kinds, vendored in
deploy/kubernetes/schemas/ (its README says where from), and against the code: the image's
commands, the probes' paths, the settings each variable names, the topics' partitions.

Offline: PyYAML and jsonschema only. `kubectl kustomize`, where installed, also renders each
kustomization once.
"""

import copy
import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from faststream.kafka.subscriber.usecase import LogicSubscriber
from jsonschema import Draft202012Validator

from shared import topics
from shared.kafka import GRACEFUL_TIMEOUT_SECONDS
from shared.kafka_security import ToolKafkaSettings
from shared.requesters import VARIABLE as REQUEST_CLIENTS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
SCHEMAS = K8S / "schemas"
STEPS = ("config", "jobs", "services")
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/app.py"))
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|SIGNING_KEY|DATABASE_URL|ADMIN_URL")
# What KEDA v2.20.2's Kafka scaler reads from a trigger's metadata (pkg/scalers/kafka_scaler.go),
# `FromEnv` variants included; anything else is ignored by KEDA, so a typo would pass silently.
KAFKA_TRIGGER_KEYS = {
    *(f"{k}{s}" for k in ("bootstrapServers", "consumerGroup", "topic") for s in ("", "FromEnv")),
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "partitionLimitation",
    "scaleToZeroOnInvalidOffset",
    "sasl",
    "tls",
    "version",
}

Manifest = dict[str, Any]


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def step(name: str) -> list[Manifest]:
    kustomization = load(K8S / name / "kustomization.yaml")[0]
    return [doc for file in kustomization["resources"] for doc in load(K8S / name / file)]


def everything() -> list[Manifest]:
    return [doc for name in STEPS for doc in step(name)] + load(K8S / "secrets.example.yaml")


def one(kind: str, name: str) -> Manifest:
    found = [d for d in everything() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container(deployment: Manifest) -> Manifest:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def config() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap", "broadcast-config")["data"]
    return data


def secret_keys(name: str) -> set[str]:
    return set(one("Secret", name)["stringData"])


# --- schemas ---------------------------------------------------------------------------------


@cache
def kubernetes_definitions() -> dict[str, Any]:
    defs: dict[str, Any] = json.loads((SCHEMAS / "kubernetes-v1.32.0-strict.json").read_text())[
        "$defs"
    ]
    return defs


def strict(schema: Any) -> Any:
    """A CRD's schema refusing unknown fields, as the strict Kubernetes schemas do."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    result = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def validators() -> dict[tuple[str, str], Draft202012Validator]:
    """(apiVersion, kind) -> its validator, for every kind the vendored schemas hold."""
    found = {}
    for name, definition in kubernetes_definitions().items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            schema = {"$ref": f"#/$defs/{name}", "$defs": kubernetes_definitions()}
            found[(api, gvk["kind"])] = Draft202012Validator(schema)
    for crd_file in SCHEMAS.glob("keda-*.yaml"):
        crd = load(crd_file)[0]
        for version in crd["spec"]["versions"]:
            schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            api = f"{crd['spec']['group']}/{version['name']}"
            found[(api, crd["spec"]["names"]["kind"])] = Draft202012Validator(schema)
    return found


OBJECT_META = Draft202012Validator(
    {
        "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "$defs": kubernetes_definitions(),
    }
)


def schema_errors(doc: Manifest) -> Iterator[str]:
    validator = validators().get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if validator is None:
        yield f"no vendored schema for {doc.get('apiVersion')} {doc.get('kind')}"
        return
    # A CRD's schema says only `metadata: object`: hold its metadata to ObjectMeta too.
    errors = [*validator.iter_errors(doc), *OBJECT_META.iter_errors(doc.get("metadata", {}))]
    for error in errors:
        where = "/".join(str(p) for p in error.absolute_path)
        yield f"{doc['kind']} {doc['metadata'].get('name')}: {where}: {error.message}"


def test_every_manifest_is_valid_against_the_schema_of_its_kind() -> None:
    problems = [p for doc in everything() for p in schema_errors(doc)]
    assert problems == []


def test_the_validation_refuses_a_misspelt_field() -> None:
    deployment = copy.deepcopy(one("Deployment", "dispatcher"))
    container(deployment)["livenessProbe"]["httpGet"]["paht"] = "/health"
    scaled = copy.deepcopy(one("ScaledObject", "dispatcher"))
    scaled["spec"]["maxReplicas"] = 8
    assert len(list(schema_errors(deployment))) == 1
    assert len(list(schema_errors(scaled))) == 1


def test_every_file_is_in_its_kustomization() -> None:
    for name in STEPS:
        listed = set(load(K8S / name / "kustomization.yaml")[0]["resources"])
        assert listed == {p.name for p in (K8S / name).glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", STEPS)
def test_each_kustomization_renders_to_valid_objects(name: str) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S / name)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert len(docs) == len(step(name))
    assert [p for doc in docs for p in schema_errors(doc)] == []


# --- the services ----------------------------------------------------------------------------


def compose_command(service: str) -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command: list[str] = compose["services"][service]["command"]
    return command


def exposed_port() -> int:
    exposed = re.findall(r"^EXPOSE (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert len(exposed) == 1
    return int(exposed[0])


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_runs_as_docker_compose_runs_it(service: str) -> None:
    spec = one("Deployment", service)["spec"]
    app = container(one("Deployment", service))
    assert app["image"] == "broadcast-engine"
    assert app["command"] == compose_command(service)
    assert app["ports"] == [{"name": "http", "containerPort": exposed_port()}]
    assert app["command"][-2:] == ["--port", str(exposed_port())]
    scrape = spec["template"]["metadata"]["annotations"]
    assert (scrape["prometheus.io/port"], scrape["prometheus.io/path"]) == (
        str(exposed_port()),
        "/metrics",
    )
    # The ScaledObject owns the count: a replicas field would reset it at every apply.
    assert "replicas" not in spec
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > GRACEFUL_TIMEOUT_SECONDS


@pytest.mark.parametrize("service", SERVICES)
def test_probes_ask_health_and_ready_on_the_http_port(service: str) -> None:
    app = container(one("Deployment", service))
    for probe, path in (
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
    ):
        assert app[probe]["httpGet"] == {"path": path, "port": "http"}
    # /ready waits up to 5 s for PostgreSQL and 10 s for Kafka (shared/readiness.py).
    assert app["readinessProbe"]["timeoutSeconds"] > 15
    assert app["livenessProbe"]["timeoutSeconds"] > 5  # the broker ping's own timeout
    assert set(app["resources"]["requests"]) == set(app["resources"]["limits"]) == {"cpu", "memory"}


def settings_fields(service: str) -> set[str]:
    settings = importlib.import_module(f"services.{service}.settings").Settings
    prefix = settings.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reads_its_secret_and_the_config_and_nothing_inline(service: str) -> None:
    app = container(one("Deployment", service))
    assert "env" not in app
    assert app["envFrom"] == [
        {"configMapRef": {"name": "broadcast-config"}},
        {"secretRef": {"name": f"broadcast-{service}"}},
    ]
    prefix = f"{service.upper()}_"
    keys = secret_keys(f"broadcast-{service}")
    assert {f"{prefix}DATABASE_URL", f"{prefix}KAFKA_SASL_PASSWORD"} <= keys
    assert keys <= settings_fields(service), "a key names no setting"
    assert {k for k in config() if k.startswith(prefix)} <= settings_fields(service)


def test_no_secret_value_is_written_in_a_manifest() -> None:
    tool_variables = {f"BROADCAST_{name}".upper() for name in ToolKafkaSettings.model_fields}
    assert set(config()) <= {
        *(field for service in SERVICES for field in settings_fields(service)),
        *tool_variables,
        REQUEST_CLIENTS,
        "ACLS_BOOTSTRAP_SERVERS",  # the ACL job's argument
    }
    assert not [k for k in config() if SECRET_NAME.search(k)]
    for name in STEPS:
        docs = step(name)
        assert "Secret" not in {doc["kind"] for doc in docs}
        for doc in docs:
            if doc["kind"] in ("Deployment", "Job"):
                inline = {e["name"] for e in container(doc).get("env", []) if "value" in e}
                assert not {n for n in inline if SECRET_NAME.search(n)}, doc["metadata"]
    for secret in load(K8S / "secrets.example.yaml"):
        assert all("<" in value for value in secret["stringData"].values()), secret["metadata"]
    # Without it a service refuses the development secrets; it must never be set here.
    assert "BROADCAST_LOCAL_MODE" not in json.dumps(everything())


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_and_the_budget_select_the_deployments_pods(service: str) -> None:
    deployment = one("Deployment", service)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service", service)["spec"]["selector"].items() <= labels.items()
    budget = one("PodDisruptionBudget", service)["spec"]
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["maxUnavailable"] == 1


def subscriptions(service: str) -> set[tuple[str, str]]:
    """(group, topic) of every subscriber of the service's app."""
    module = importlib.import_module(f"services.{service}.app")
    settings = importlib.import_module(f"services.{service}.settings").Settings
    broker = module.create_app(settings()).broker
    return {
        (s.group_id or "", topic)
        for s in broker.subscribers
        if isinstance(s, LogicSubscriber)
        for topic in s.topic_names
    }


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_scales_on_the_lag_of_a_group_it_consumes(service: str) -> None:
    spec = one("ScaledObject", service)["spec"]
    assert spec["scaleTargetRef"] == {"name": service}
    assert spec["minReplicaCount"] >= 2
    partitions = {t.name: t.partitions for t in topics.ALL}
    for trigger in spec["triggers"]:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert set(meta) <= KAFKA_TRIGGER_KEYS
        assert (meta["consumerGroup"], meta["topic"]) in subscriptions(service)
        # A consumer beyond the partition count would have nothing to read.
        assert spec["maxReplicaCount"] <= partitions[meta["topic"]]
        assert meta["bootstrapServersFromEnv"] == f"{service.upper()}_KAFKA_BOOTSTRAP_SERVERS"
        assert meta["bootstrapServersFromEnv"] in config()
        assert meta["offsetResetPolicy"] == "earliest"  # as shared.kafka.batch_consumer
        assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
        assert trigger["authenticationRef"] == {"name": f"{service}-kafka"}


@pytest.mark.parametrize("service", SERVICES)
def test_kedas_credentials_are_the_services_own(service: str) -> None:
    spec = one("TriggerAuthentication", f"{service}-kafka")["spec"]
    for ref in spec["secretTargetRef"]:
        assert ref["key"] in secret_keys(ref["name"])
    for ref in spec["configMapTargetRef"]:
        assert ref["name"] == "broadcast-config" and ref["key"] in config()
    parameters = {r["parameter"]: r["key"] for r in spec["secretTargetRef"]}
    parameters |= {r["parameter"]: r["key"] for r in spec["configMapTargetRef"]}
    assert parameters == {
        "username": f"{service.upper()}_KAFKA_SASL_USERNAME",
        "password": f"{service.upper()}_KAFKA_SASL_PASSWORD",
        "ca": "ca.crt",
    }


def test_the_ingress_publishes_only_the_public_paths() -> None:
    rules = one("Ingress", "broadcast-public")["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"] for rule in rules for p in rule["http"]["paths"]}
    assert routes == {
        "/unsubscribe": {"name": "targeting", "port": {"name": "http"}},
        "/webhooks": {"name": "dispatcher", "port": {"name": "http"}},
    }


# --- the jobs --------------------------------------------------------------------------------


def copied_by_the_dockerfile() -> list[str]:
    return re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


@pytest.mark.parametrize(
    ("job", "module"),
    [
        ("broadcast-postgres-roles", "deploy.postgres.roles"),
        ("broadcast-kafka-acls", "deploy.kafka_acls"),
    ],
)
def test_a_job_runs_a_module_the_image_holds(job: str, module: str) -> None:
    command = container(one("Job", job))["command"]
    assert command[:3] == ["python", "-m", module]
    source = module.replace(".", "/")
    assert any(
        source + ".py" == c or f"{source}/".startswith(c) for c in copied_by_the_dockerfile()
    ), f"the Dockerfile copies no {source}"
    importlib.import_module(module)
