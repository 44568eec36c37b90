"""deploy/prometheus: promtool accepts the config and the rules, the rules' unit tests
pass, and the scrape targets are the local stack's service ports.

promtool comes with Debian's `prometheus` package, which `make install` installs: a
missing promtool is a failure here, never a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from orderflow_devstack.config import DEFAULT_PORTS, SERVICES, find_repo_root

PROMETHEUS = find_repo_root() / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
_METRIC = re.compile(r"\b(orderflow_[a-z0-9_]+|up)\b")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make install` installs Debian's prometheus package"
    return subprocess.run(
        [tool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def metrics_used_by_rules() -> set[str]:
    """Every metric an alert expression reads (`up` aside), as exposed (no `_total` cut)."""
    names = {m for rule in alert_rules() for m in _METRIC.findall(rule["expr"])}
    return names - {"up"}


def test_promtool_accepts_the_config_and_the_rules() -> None:
    assert RULES and RULE_TESTS
    checked = promtool("check", "config", CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(RULES)} rule files found" in checked.stdout + checked.stderr
    rules = promtool("check", "rules", *RULES)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", *RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    tests = "\n".join(path.read_text() for path in RULE_TESTS)
    for rule in alert_rules():
        assert f"alertname: {rule['alert']}\n" in tests, rule["alert"]


def test_the_issue_s_alerts_exist_and_read_only_orderflow_metrics() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    assert {
        "OrderFlowExportBacklogOld",
        "OrderFlowExportFailureRate",
        "OrderFlowConsumerLag",
        "OrderFlowOutboxLag",
        "OrderFlowOutboxRelayLeaderMissing",
        "OrderFlowAuditVerificationFailed",
    } <= alerts
    for rule in alert_rules():
        # every series the expression reads is ours or `up`: the names left once label
        # matchers, grouping clauses, function calls and keywords are taken out
        bare = re.sub(r"\{[^}]*\}", "", rule["expr"])
        bare = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", bare)
        names = re.findall(r"\b[a-z_][a-z0-9_]*\b(?!\s*\()", bare)
        selectors = [n for n in names if n not in {"and", "or", "unless", "bool"}]
        assert selectors, rule["alert"]
        for name in selectors:
            assert name == "up" or name.startswith("orderflow_"), (rule["alert"], name)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_the_scrape_targets_are_the_local_stack_s_service_ports() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {service: [f"127.0.0.1:{DEFAULT_PORTS[service]}"] for service in SERVICES}
    assert config["rule_files"] == ["rules/*.yml"]
