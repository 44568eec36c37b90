"""docker-compose.yml, the Dockerfiles and the nginx routes agree with the code."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from orderflow_devstack.config import (
    DEFAULT_PORTS,
    EXPORT_WORKER_BASE_PORT,
    ROLE_PORTS,
    ROLE_PROCESSES,
    SERVICES,
    find_repo_root,
)
from orderflow_shared.settings import ServiceSettings

ROOT = find_repo_root()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
NGINX_TEMPLATE = (ROOT / "deploy" / "nginx" / "orderflow.conf.template").read_text()
APP_CONTAINERS = {
    "draft-api": "draft-api",
    "export-service": "export-service",
    "audit-service": "audit-service",
    "draft-api-relay": "draft-api",
    "draft-api-consumer": "draft-api",
    "export-service-relay": "export-service",
    "export-service-consumer": "export-service",
    "export-worker": "export-service",
    "audit-service-ingest": "audit-service",
    "draft-api-migrate": "draft-api",
    "export-service-migrate": "export-service",
    "audit-service-migrate": "audit-service",
    "topics": None,
}


def settings_class(service: str | None) -> type[ServiceSettings]:
    """The service's settings class (a ServiceSettings subclass in <pkg>.settings)."""
    if service is None:
        return ServiceSettings
    try:
        module = importlib.import_module(f"{SERVICES[service]}.settings")
    except ModuleNotFoundError:
        return ServiceSettings
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ServiceSettings)
        and obj is not ServiceSettings
        and obj.__module__ == module.__name__
    ]
    return found[0] if found else ServiceSettings


def dockerfiles() -> list[Path]:
    paths = []
    for spec in COMPOSE["services"].values():
        build = spec.get("build")
        if build:
            paths.append(ROOT / build.get("context", ".") / build["dockerfile"])
    return sorted(set(paths))


def test_every_dockerfile_compose_names_exists() -> None:
    assert dockerfiles()
    for path in dockerfiles():
        assert path.is_file(), path


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_every_file_a_dockerfile_copies_exists(dockerfile: Path) -> None:
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            args = line.split()[1:]
            if any(a.startswith("--from=") for a in args):
                continue  # from an earlier build stage, not the build context
            *sources, _target = [a for a in args if not a.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile.name}: {source}"


def test_every_bind_mount_source_exists() -> None:
    for name, spec in COMPOSE["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"


@pytest.mark.parametrize(("container", "service"), APP_CONTAINERS.items())
def test_every_env_var_of_an_app_container_is_a_setting(
    container: str, service: str | None
) -> None:
    fields = set(settings_class(service).model_fields)
    env = COMPOSE["services"][container]["environment"]
    unknown = sorted(key for key in env if key.lower() not in fields)
    assert unknown == [], f"{container}: not settings of {service}: {unknown}"


@pytest.mark.parametrize("service", list(SERVICES))
def test_ports_agree_between_compose_dockerfile_gateway_and_dev_defaults(service: str) -> None:
    port = DEFAULT_PORTS[service]
    spec = COMPOSE["services"][service]
    assert spec["environment"]["HTTP_PORT"] == str(port)
    assert f"{port}:{port}" in " ".join(spec["ports"])
    assert f"127.0.0.1:{port}/readyz" in " ".join(spec["healthcheck"]["test"])
    dockerfile = (ROOT / spec["build"]["dockerfile"]).read_text()
    assert f"HTTP_PORT={port}" in dockerfile
    assert f'-m", "{SERVICES[service]}", "serve"' in dockerfile
    gateway_env = COMPOSE["services"]["gateway"]["environment"]
    placeholder = service.upper().replace("-", "_") + "_ADDR"
    assert gateway_env[placeholder] == f"{service}:{port}"
    assert "${" + placeholder + "}" in NGINX_TEMPLATE


def test_gateway_uses_the_local_stack_routes_file_and_port() -> None:
    gateway = COMPOSE["services"]["gateway"]
    mounts = [v.split(":")[0] for v in gateway["volumes"]]
    assert "./deploy/nginx/orderflow.conf.template" in mounts
    assert gateway["environment"]["GATEWAY_LISTEN"] == str(DEFAULT_PORTS["gateway"])
    assert f"{DEFAULT_PORTS['gateway']}:{DEFAULT_PORTS['gateway']}" in gateway["ports"]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", NGINX_TEMPLATE))
    assert placeholders == set(gateway["environment"])


def test_services_wait_for_healthy_dependencies_and_their_migrations() -> None:
    for service in SERVICES:
        depends = COMPOSE["services"][service]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["kafka"] == {"condition": "service_healthy"}
        assert depends[f"{service}-migrate"] == {"condition": "service_completed_successfully"}
    long_running = {n for n, s in COMPOSE["services"].items() if s.get("restart") != "no"}
    processes = {*SERVICES, *ROLE_CONTAINERS}
    infra = {"postgres", "redis", "kafka", "kafka-2", "kafka-3", "sftp", "gateway"}
    assert long_running == {*infra, *processes}
    for name in long_running:
        assert "healthcheck" in COMPOSE["services"][name], name


#: compose container -> the devstack process it is (export-worker: EXPORT_WORKERS of them)
ROLE_CONTAINERS = {
    **{name: name for name in ROLE_PROCESSES},
    "export-worker": "export-worker-1",
}


def test_every_process_role_is_its_own_container_of_its_service_image() -> None:
    for container, process in ROLE_CONTAINERS.items():
        service, role = {**ROLE_PROCESSES, "export-worker-1": ("export-service", "worker")}[process]
        spec = COMPOSE["services"][container]
        assert spec["command"] == ["python", "-m", SERVICES[service], role], container
        assert spec["build"]["dockerfile"] == f"deploy/docker/{service}.Dockerfile"
        assert spec["image"] == COMPOSE["services"][service]["image"]
        # its own /metrics, /readyz listener: the devstack's port for that role
        port = ROLE_PORTS.get(process, EXPORT_WORKER_BASE_PORT + 1)
        assert spec["environment"]["HTTP_PORT"] == str(port), container
        assert "HTTP_PORT" in " ".join(spec["healthcheck"]["test"]), container
        assert spec["depends_on"][f"{service}-migrate"] == {
            "condition": "service_completed_successfully"
        }
    for service in SERVICES:
        assert COMPOSE["services"][service]["command"][-1] == "serve"
    assert COMPOSE["services"]["export-worker"]["deploy"]["replicas"] == "${EXPORT_WORKERS:-2}"


def test_every_image_name_comes_from_a_variable() -> None:
    for name, spec in COMPOSE["services"].items():
        assert re.fullmatch(r"\$\{[A-Z_]+_IMAGE:-[^}]+\}", spec["image"]), (name, spec["image"])


SECRET = re.compile(r"(PASSWORD|SECRET|ENCRYPTION_KEY)")


def test_no_secret_has_a_default_in_the_repository() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{([A-Z_]+)(:[?-])?([^}]*)\}", text)
    secrets = [(name, op) for name, op, _ in uses if SECRET.search(name)]
    assert {name for name, _ in secrets} >= {
        "JWT_SECRET",
        "EXPORT_ENCRYPTION_KEY",
        "POSTGRES_PASSWORD",
        "DRAFT_API_DB_PASSWORD",
    }
    assert [s for s in secrets if s[1] != ":?"] == []
    generator = (ROOT / "deploy" / "kafka" / "compose-env.sh").read_text()
    for name, _ in secrets:
        assert name in generator, f"compose-env.sh does not generate {name}"


def test_migrations_run_as_the_schema_owner_of_each_service() -> None:
    init_sql = (ROOT / "deploy" / "postgres" / "init-orderflow.sh").read_text()
    for schema, owner in (
        ("draft", "draft_api"),
        ("export", "export_service"),
        ("audit", "audit_owner"),
    ):
        assert f"CREATE SCHEMA {schema} AUTHORIZATION {owner};" in init_sql
    audit = COMPOSE["services"]["audit-service"]["environment"]
    assert "//audit_owner:" in audit["MIGRATION_DATABASE_URL"]
    assert "//audit_service:" in audit["DATABASE_URL"]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    joined = dockerfile.read_text().replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_service_image_runs_as_a_fixed_non_root_user(service: str) -> None:
    dockerfile = ROOT / COMPOSE["services"][service]["build"]["dockerfile"]
    instructions = _instructions(dockerfile)
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, f"{dockerfile.name}: no USER (the image would run as root)"
    # the last USER is the one the container runs as: numeric uid:gid, neither root
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), f"{dockerfile.name}: USER {users[-1]} not numeric"
    assert int(uid) >= 1000 and int(gid) >= 1000, f"{dockerfile.name}: USER {users[-1]}"
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert [k for k, _ in instructions[last_user:]].count("RUN") == 0, "RUN after USER"
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert f"useradd --system --uid {uid} --gid {gid}" in runs, dockerfile.name
    assert "--shell /usr/sbin/nologin" in runs
    for keyword, args in instructions:
        assert keyword != "COPY" or "--chown" not in args, "code must stay root-owned"


#: the one directory each service may write, and the container of its that mounts it
WRITABLE = {
    "export-service": ("EXPORT_STORAGE_DIR", "export-service"),
    "audit-service": ("AUDIT_ARCHIVE_DIR", "audit-service-retention"),
}


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_service_writes_only_its_own_volume(service: str) -> None:
    """export-service its artifact store, audit-service its retention archive, draft-api
    nothing: each the one directory its image makes over to its user, on a volume."""
    spec = COMPOSE["services"][service]
    runs = " ".join(
        args
        for keyword, args in _instructions(ROOT / spec["build"]["dockerfile"])
        if keyword == "RUN"
    )
    chowned = re.findall(r"chown (\d+:\d+) (\S+)", runs)
    if service not in WRITABLE:
        assert chowned == [], f"{service} needs no writable directory"
        return
    setting, container = WRITABLE[service]
    directory = spec["environment"][setting]
    assert chowned == [("10001:10001", directory)]
    assert f"chmod 0750 {directory}" in runs
    mounts = COMPOSE["services"][container]["volumes"]
    assert any(volume.endswith(f":{directory}") for volume in mounts)


KAFKA_SCRIPT = (ROOT / "deploy" / "kafka" / "compose-entrypoint.sh").read_text()
REQUIRED = re.compile(r"^\$\{[A-Z_]+:\?[^}]+\}$")  # set in .env, no default in the repo


@pytest.mark.parametrize(("container", "service"), APP_CONTAINERS.items())
def test_every_app_container_logs_in_to_kafka_as_its_own_principal(
    container: str, service: str | None
) -> None:
    from orderflow_shared.messaging.acls import ADMIN, SERVICE_PRINCIPALS

    env = COMPOSE["services"][container]["environment"]
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_USERNAME"] == (SERVICE_PRINCIPALS[service] if service else ADMIN)
    assert REQUIRED.match(env["KAFKA_PASSWORD"]), env["KAFKA_PASSWORD"]
    principal = env["KAFKA_USERNAME"].upper().replace("-", "_")
    assert f"KAFKA_{principal}_PASSWORD:?" in env["KAFKA_PASSWORD"]


def test_the_compose_broker_authenticates_every_principal_and_authorises_with_acls() -> None:
    from orderflow_shared.messaging.acls import PRINCIPALS

    kafka = COMPOSE["services"]["kafka"]
    assert "./deploy/kafka/compose-entrypoint.sh" in " ".join(kafka["volumes"])
    for principal in PRINCIPALS:
        var = f"KAFKA_{principal.upper().replace('-', '_')}_PASSWORD"
        assert REQUIRED.match(kafka["environment"][var]), var
        assert f" {principal} " in f" {KAFKA_SCRIPT.split('for user in ')[1].split(';')[0]} "
    for line in (
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=User:admin",
        "listener.name.sasl.sasl.enabled.mechanisms=SCRAM-SHA-512",
    ):
        assert line in KAFKA_SCRIPT
    assert "PLAINTEXT:PLAINTEXT" not in KAFKA_SCRIPT
    assert "--command-config" in " ".join(kafka["healthcheck"]["test"])
    assert "acls apply" in " ".join(COMPOSE["services"]["topics"]["command"])


def test_the_kafka_cluster_profile_adds_two_nodes_of_the_same_broker() -> None:
    nodes = {n: COMPOSE["services"][n] for n in ("kafka", "kafka-2", "kafka-3")}
    assert "profiles" not in nodes["kafka"]
    ids = set()
    for name, spec in nodes.items():
        env = spec["environment"]
        assert spec["image"] == nodes["kafka"]["image"]
        assert spec["entrypoint"] == nodes["kafka"]["entrypoint"]
        assert env["KAFKA_NODE_HOST"] == name
        assert env["KAFKA_CLUSTER_ID"].startswith("${KAFKA_CLUSTER_ID:?")
        ids.add(env["KAFKA_NODE_ID"])
        if name != "kafka":
            assert spec["profiles"] == ["kafka-cluster"]
    assert ids == {"1", "2", "3"}
    for line in ("REPLICATION=3 MIN_ISR=2", "controller.quorum.voters=$voters"):
        assert line in KAFKA_SCRIPT
