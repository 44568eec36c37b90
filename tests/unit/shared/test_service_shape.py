"""All three services have the same shape: the same wiring functions in bootstrap.py,
the same command line, background loops only under the shared supervisor, and the
version from package metadata. A service that drifts from the template fails here."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from fastapi import FastAPI
from orderflow_shared.runtime import Wiring
from orderflow_shared.service_cli import ServiceCli

SERVICES = {
    "draft_api": "orderflow-draft-api",
    "export_service": "orderflow-export-service",
    "audit_service": "orderflow-audit-service",
}
ROOT = Path(__file__).resolve().parents[3]
WIRING = ("build", "close", "make_app", "make_role_app", "configure", "ROLES", "WIRING")


def source(package: str, *parts: str) -> Path:
    service_dir = package.replace("_", "-")
    return ROOT / "services" / service_dir / "src" / package / Path(*parts)


@pytest.mark.parametrize("package", SERVICES)
def test_bootstrap_offers_the_same_wiring(package: str) -> None:
    bootstrap = importlib.import_module(f"{package}.bootstrap")
    for name in WIRING:
        assert hasattr(bootstrap, name), f"{package}.bootstrap has no {name}"
    assert inspect.iscoroutinefunction(bootstrap.close)
    assert list(inspect.signature(bootstrap.make_app).parameters) == ["settings", "roles"]
    assert list(inspect.signature(bootstrap.make_role_app).parameters) == ["settings", "role"]
    assert bootstrap.ROLES, package
    assert all(callable(role) for role in bootstrap.ROLES.values())
    assert bootstrap.DISTRIBUTION == SERVICES[package]
    assert isinstance(bootstrap.WIRING, Wiring) and bootstrap.WIRING.roles is bootstrap.ROLES
    with pytest.raises(ValueError, match="unknown role"):
        bootstrap.WIRING.lifespan(object(), ["no-such-role"])


@pytest.mark.parametrize("package", SERVICES)
def test_the_command_line_is_the_shared_one_with_a_command_per_role(package: str) -> None:
    cli = importlib.import_module(f"{package}.entrypoints.cli").cli()
    bootstrap = importlib.import_module(f"{package}.bootstrap")
    assert isinstance(cli, ServiceCli)
    assert set(cli.roles) == set(bootstrap.ROLES)
    for name, role in bootstrap.ROLES.items():  # the role's help is its docstring
        assert inspect.getdoc(role), f"{package}.bootstrap: role {name} has no docstring"
    commands = set(cli.parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"serve", "migrate", "downgrade", *bootstrap.ROLES} <= commands
    main = source(package, "__main__.py").read_text()
    assert main == (
        f"import sys\n\nfrom {package}.entrypoints.cli import main\n\nsys.exit(main())\n"
    )


@pytest.mark.parametrize("package", SERVICES)
def test_background_loops_start_only_under_the_shared_supervisor(package: str) -> None:
    """No service starts tasks or child processes of its own in its wiring: every loop
    is a Role's runner, run by orderflow_shared.runtime (supervised, stopped on exit)."""
    tree = ast.parse(source(package, "bootstrap.py").read_text())
    called = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    assert not called & {"create_task", "ensure_future", "create_subprocess_exec", "Popen"}


@pytest.mark.parametrize("package", SERVICES)
def test_the_version_comes_from_package_metadata(package: str) -> None:
    for path in source(package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                names = {t.id for t in node.targets if isinstance(t, ast.Name)}
                assert "__version__" not in names, path


def test_a_role_app_serves_health_and_metrics_only() -> None:
    from fastapi.testclient import TestClient
    from orderflow_shared.runtime import role_app

    app = role_app("t", "1", None)
    assert isinstance(app, FastAPI)
    with TestClient(app) as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200  # no checks: ready
        assert client.get("/metrics").status_code == 200
        for path in ("/openapi.json", "/docs", "/draft-orders"):
            assert client.get(path).status_code == 404, path
