"""docker-compose.yml, the Dockerfile and the Prometheus / Grafana files agree with the code.

No Docker and no network: the files are parsed and compared with the settings classes, the
topics, the metrics the services register, and the ports of the no-Docker runner.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry

from deploy.local import stack
from deploy.postgres.credentials import (
    ADMIN_URL_VARIABLE,
    READER_ROLE,
    ROLES,
    password_variable,
    passwords_from,
)
from shared import topics
from shared.local_mode import DevelopmentSecrets

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"

SERVICES = ("targeting", "composer", "dispatcher", "tracker")
EXPECTED = {
    "kafka",
    "postgres",
    "postgres-roles",
    "mailpit",
    "sms-sink",
    *SERVICES,
    "prometheus",
    "grafana",
}
APP_PORT = 8000
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the containers must bind, asserted below
TOPIC_NAMES = {t.name for t in topics.ALL}

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def interpolate(value: Any) -> str:
    """The value Compose uses when no variable is set: every `${X}` must carry a default."""

    def default(match: re.Match[str]) -> str:
        assert match["default"] is not None, f"${{{match['name']}}} has no default"
        return match["default"]

    return _VARIABLE.sub(default, str(value))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    assert isinstance(cmd, list), "commands are lists: no shell, no word splitting"
    return [interpolate(part) for part in cmd]


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port, from the short syntax `[IP:]HOST:CONTAINER`."""
    mapping: dict[int, int] = {}
    for entry in service.get("ports", []):
        *_, host, container = str(entry).split(":")
        mapping[int(container)] = int(host)
    return mapping


def settings_class(name: str) -> Any:
    return importlib.import_module(f"services.{name}.settings").Settings


def allowed_env(name: str) -> set[str]:
    cls = settings_class(name)
    prefix = cls.model_config["env_prefix"]
    return {
        info.validation_alias
        if isinstance(info.validation_alias, str)
        else f"{prefix}{field}".upper()
        for field, info in cls.model_fields.items()
    }


@functools.cache
def exported_metric_names() -> frozenset[str]:
    """The names a service exposes on /metrics, from a registry filled by its own broker."""
    from services.composer.metrics import ComposerMetrics
    from services.dispatcher.metrics import DispatcherMetrics
    from services.targeting.settings import Settings
    from services.tracker.metrics import TrackerMetrics
    from shared.service import Runtime

    registry = CollectorRegistry()
    Runtime("targeting", Settings(), registry=registry)  # builds the broker; connects nothing
    for domain in (ComposerMetrics, DispatcherMetrics, TrackerMetrics):
        domain(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    assert any(n.startswith("faststream_") for n in names), names
    return frozenset(names)


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_is_compose_spec(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert set(compose["services"]) == EXPECTED


def test_images(services: dict[str, dict[str, Any]]) -> None:
    assert re.fullmatch(r"apache/kafka:4(\.\d+){1,2}", services["kafka"]["image"])
    assert re.fullmatch(r"postgres:15(\.\d+)?", services["postgres"]["image"])
    assert re.fullmatch(r"axllent/mailpit(:.+)?", services["mailpit"]["image"])
    assert re.fullmatch(r"prom/prometheus(:.+)?", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana(:.+)?", services["grafana"]["image"])


@pytest.mark.parametrize("name", [*SERVICES, "sms-sink"])
def test_built_from_the_dockerfile(services: dict[str, dict[str, Any]], name: str) -> None:
    build = services[name]["build"]
    context = REPO / build["context"]
    assert context.resolve() == REPO
    assert (context / build.get("dockerfile", "Dockerfile")).is_file()


@pytest.mark.parametrize("name", SERVICES)
def test_service_command_runs_its_factory(services: dict[str, dict[str, Any]], name: str) -> None:
    cmd = command(services[name])
    factory = f"services.{name}.app:create_app"
    assert cmd[:3] == ["faststream", "run", "--factory"]
    assert cmd[3] == factory
    assert cmd[cmd.index("--host") + 1] == ALL_INTERFACES
    assert int(cmd[cmd.index("--port") + 1]) == APP_PORT
    module, _, attr = factory.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("name", SERVICES)
def test_service_environment_is_settings_fields(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = environment(services[name])
    prefix = settings_class(name).model_config["env_prefix"]
    unknown = set(env) - allowed_env(name)
    assert not unknown, f"{name}: not settings fields of services/{name}/settings.py: {unknown}"
    assert f"{prefix}KAFKA_BOOTSTRAP_SERVERS" in env
    assert f"{prefix}DATABASE_URL" in env


@pytest.mark.parametrize("name", SERVICES)
def test_service_environment_validates(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(services[name])
    prefix = settings_class(name).model_config["env_prefix"]
    assert env["BROADCAST_LOCAL_MODE"] == "1"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_class(name)()
    # Every address points at a service of this compose file, on a port it listens on.
    host, _, port = settings.kafka_bootstrap_servers.partition(":")
    assert host == "kafka" and f"PLAINTEXT://kafka:{port}" in kafka_env(services)[
        "KAFKA_ADVERTISED_LISTENERS"
    ].split(",")
    db = urlsplit(settings.database_url.get_secret_value())
    assert db.hostname == "postgres" and db.port == 5432
    pg = environment(services["postgres"])
    roles = environment(services["postgres-roles"])
    # Its own role, with the password the provisioning gave it.
    assert (db.username, db.password, db.path) == (
        name,
        roles[password_variable(name)],
        "/" + pg["POSTGRES_DB"],
    )
    # On the development defaults, in local mode only (docs/ARCHITECTURE.md, "Secrets").
    settings.refuse_development_secrets()
    monkeypatch.setenv("BROADCAST_LOCAL_MODE", "0")
    with pytest.raises(DevelopmentSecrets, match=f"{prefix}DATABASE_URL"):
        settings_class(name)().refuse_development_secrets()


def test_postgres_roles_are_provisioned_by_the_administrator(
    services: dict[str, dict[str, Any]],
) -> None:
    provisioning = services["postgres-roles"]
    assert provisioning["build"] == services["targeting"]["build"]
    assert command(provisioning) == ["python", "-m", "deploy.postgres.roles"]
    assert provisioning["restart"] == "no"  # a one-shot job: the services wait for it to end
    env = environment(provisioning)
    assert set(passwords_from(env)) == set(ROLES)
    admin = urlsplit(env[ADMIN_URL_VARIABLE])
    pg = environment(services["postgres"])
    assert (admin.hostname, admin.port, admin.username, admin.password, admin.path) == (
        "postgres",
        5432,
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )
    assert provisioning["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_dispatcher_providers(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in environment(services["dispatcher"]).items():
        monkeypatch.setenv(key, value)
    settings = settings_class("dispatcher")()
    assert (settings.smtp_host, settings.smtp_port) == ("mailpit", 1025)
    sms = urlsplit(settings.sms_gateway_url)
    assert sms.hostname == "sms-sink" and sms.path == "/v1/messages"
    sink = command(services["sms-sink"])
    assert sink[:3] == ["python", "-m", "deploy.local.sms_sink"]
    assert sink[sink.index("--host") + 1] == ALL_INTERFACES
    assert int(sink[sink.index("--port") + 1]) == sms.port == stack.SMS_PORT
    # The sink checks the token the dispatcher sends.
    assert sink[sink.index("--token") + 1] == settings.sms_gateway_token.get_secret_value()


def test_sms_sink_accepts_the_compose_flags(services: dict[str, dict[str, Any]]) -> None:
    cmd = command(services["sms-sink"])
    flags = {part for part in cmd if part.startswith("--")}
    usage = subprocess.run(
        [sys.executable, "-m", "deploy.local.sms_sink", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert flags and all(flag in usage for flag in flags), (flags, usage)


def kafka_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return environment(services["kafka"])


def listeners(value: str) -> dict[str, tuple[str, int]]:
    result = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def test_kafka_kraft_single_node(services: dict[str, dict[str, Any]]) -> None:
    env = kafka_env(services)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    controller = listeners(env["KAFKA_LISTENERS"])[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@kafka:{controller[1]}"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert "healthcheck" in services["kafka"]


def test_kafka_host_listener_matches_the_local_runner(services: dict[str, dict[str, Any]]) -> None:
    env = kafka_env(services)
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    host_facing = [name for name, (_, port) in advertised.items() if port == stack.KAFKA_PORT]
    assert len(host_facing) == 1, advertised
    name = host_facing[0]
    assert advertised[name][0] in {"127.0.0.1", "localhost"}
    assert bound[name][1] == stack.KAFKA_PORT
    assert published_ports(services["kafka"])[stack.KAFKA_PORT] == stack.KAFKA_PORT
    # Containers reach the broker on its own listener, not through the host's.
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]][0] == "kafka"
    assert set(bound) == set(protocols) and set(advertised) <= set(bound)


def test_host_ports_match_the_local_runner(services: dict[str, dict[str, Any]]) -> None:
    for name, port in stack.SERVICE_PORTS.items():
        assert published_ports(services[name]) == {APP_PORT: port}, name
    assert published_ports(services["postgres"]) == {5432: stack.POSTGRES_PORT}
    assert published_ports(services["sms-sink"]) == {stack.SMS_PORT: stack.SMS_PORT}
    assert published_ports(services["mailpit"]) == {8025: 8025}
    assert published_ports(services["prometheus"]) == {9090: 9090}
    assert published_ports(services["grafana"]) == {3000: 3000}


def test_postgres(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["postgres"])
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"]) == (stack.POSTGRES_USER, stack.POSTGRES_DB)
    assert env["POSTGRES_PASSWORD"] == stack.POSTGRES_PASSWORD  # the default, like the runner
    assert "pg_isready" in json.dumps(services["postgres"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", SERVICES)
def test_service_health_and_start_order(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    check = " ".join(map(str, service["healthcheck"]["test"]))
    assert f"127.0.0.1:{APP_PORT}/health" in check
    depends = dict(service["depends_on"])
    assert {"kafka", "postgres"} <= set(depends)
    # A service starts once its role exists and owns its schema.
    assert depends.pop("postgres-roles") == {"condition": "service_completed_successfully"}
    for dependency, spec in depends.items():
        assert spec["condition"] == "service_healthy", (name, dependency)
        assert "healthcheck" in services[dependency], dependency
    if name == "dispatcher":
        assert {"mailpit", "sms-sink"} <= set(depends)


def test_bind_mounts_exist(services: dict[str, dict[str, Any]]) -> None:
    mounts = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                mounts += 1
                assert (REPO / source).exists(), f"{name}: {source}"
    assert mounts >= 4


def container_to_repo(service: dict[str, Any], container_path: str) -> Path:
    """The repository path a container path of `service` comes from, through its bind mounts."""
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith(".") and (
            container_path == target or container_path.startswith(target.rstrip("/") + "/")
        ):
            return REPO / source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted from the repository")


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"pip install \.(\s|$)", text)
    assert not re.search(r"^(ENV|ARG)\s+.*(PASSWORD|TOKEN|SECRET)", text, re.MULTILINE)


def test_dockerignore_lets_the_copied_paths_through() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    sources = [
        src
        for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.MULTILINE)
        for src in line.split()[:-1]
    ]
    assert "pyproject.toml" in sources and "deploy/local/" in sources
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    for src in sources:
        assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"
        assert (REPO / src).exists(), src


# --- Prometheus -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "targets"),
    [
        ("prometheus.yml", {name: f"{name}:{APP_PORT}" for name in SERVICES}),
        ("prometheus.local.yml", {n: f"127.0.0.1:{p}" for n, p in stack.SERVICE_PORTS.items()}),
    ],
)
def test_prometheus_scrapes_the_four_services(filename: str, targets: dict[str, str]) -> None:
    config = load_yaml(PROMETHEUS_DIR / filename)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    for name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
        scraped = [t for static in job["static_configs"] for t in static["targets"]]
        assert scraped == [targets[name]]
    assert config["rule_files"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file


def test_compose_mounts_the_prometheus_config(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    config_flag = next(c for c in prometheus["command"] if c.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert container_to_repo(prometheus, config_path) == PROMETHEUS_DIR / "prometheus.yml"
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    for rule_file in config["rule_files"]:
        in_container = str(Path(config_path).parent / rule_file)
        assert container_to_repo(prometheus, in_container).is_file()
    for name in SERVICES:
        assert f"{name}:{APP_PORT}" in json.dumps(config["scrape_configs"])


def expressions_are_about_real_series(exprs: list[str]) -> None:
    metrics = exported_metric_names() | {"up"}
    for expr in exprs:
        used = set(re.findall(r"\bfaststream_[a-z_]+", expr))
        assert used <= metrics, f"not exported: {used - metrics} in {expr}"
        for label in ("handler", "destination"):
            for value in re.findall(rf'\b{label}="([^"]+)"', expr):
                assert value in TOPIC_NAMES, f"{label}={value!r} is not a topic"
        for value in re.findall(r'\bjob=~?"([^"$]+)"', expr):
            assert set(value.split("|")) <= set(SERVICES), value
        assert expr.count("(") == expr.count(")"), expr


def test_alert_rules() -> None:
    rules = [
        rule
        for group in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
        for rule in group["rules"]
    ]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) >= 3
    for rule in rules:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
    exprs = [rule["expr"] for rule in rules]
    expressions_are_about_real_series(exprs)
    joined = "\n".join(exprs)
    assert re.search(r"\bup\b", joined)
    assert 'status="error"' in joined
    assert 'handler="broadcast.messages"' in joined
    assert 'destination="broadcast.deliveries"' in joined


# --- Grafana --------------------------------------------------------------------------------


def provisioning(kind: str) -> list[dict[str, Any]]:
    files = sorted((GRAFANA_DIR / "provisioning" / kind).glob("*.y*ml"))
    assert files, kind
    return [load_yaml(f) for f in files]


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows hold theirs
    return found


def dashboards() -> list[Path]:
    files = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    assert files
    return files


def test_grafana_datasources(services: dict[str, dict[str, Any]]) -> None:
    (config,) = provisioning("datasources")
    sources = {s["uid"]: s for s in config["datasources"]}
    assert set(sources) == {"prometheus", "tracker"}
    prometheus = sources["prometheus"]
    assert prometheus["type"] == "prometheus"
    url = urlsplit(prometheus["url"])
    assert url.hostname in services
    assert url.port in published_ports(services[url.hostname])
    tracker = sources["tracker"]
    assert tracker["type"] == "grafana-postgresql-datasource"
    host, _, port = tracker["url"].partition(":")
    assert host in services and int(port) == 5432
    postgres = environment(services["postgres"])
    assert tracker["jsonData"]["database"] == postgres["POSTGRES_DB"]
    assert tracker["user"] == READER_ROLE
    # The password is never written down: Grafana reads it from its environment.
    variable = password_variable(READER_ROLE)
    assert tracker["secureJsonData"]["password"] == f"${variable}"
    assert (
        environment(services["grafana"])[variable]
        == environment(services["postgres-roles"])[variable]
    )


def test_grafana_dashboard_provider_loads_the_repository_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    assert container_to_repo(grafana, "/etc/grafana/provisioning") == GRAFANA_DIR / "provisioning"
    providers = [p for config in provisioning("dashboards") for p in config["providers"]]
    assert providers
    for provider in providers:
        folder = container_to_repo(grafana, provider["options"]["path"])
        assert folder.resolve() == (GRAFANA_DIR / "dashboards").resolve()
    env = environment(grafana)
    assert container_to_repo(grafana, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert (
        grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-admin}"
    )


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    assert "${DS_" not in path.read_text(encoding="utf-8")
    uids = {
        source["uid"] for config in provisioning("datasources") for source in config["datasources"]
    }
    panels = panels_of(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    exprs = []
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 5
    for panel in graphs:
        targets = [
            t
            for t in panel.get("targets", [])
            if t.get("expr", "").strip() or t.get("rawSql", "").strip()
        ]
        assert targets, f"panel {panel['title']!r} has no query"
        for ref in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
            assert ref is None or ref["uid"] in uids, ref
        exprs += [t["expr"] for t in targets if "expr" in t]
    expressions_are_about_real_series(exprs)
    for variable in dashboard.get("templating", {}).get("list", []):
        if "datasource" in variable:
            assert variable["datasource"]["uid"] in uids
