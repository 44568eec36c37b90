"""A service's Prometheus figures as a query sees them: summed over its processes."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(stack: Any, service: str) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, labels) -> value) of a service, summed over
    the /metrics of each of its processes (HTTP API and background roles) as a
    Prometheus query `sum by (labels)` would."""
    families: dict[str, str] = {}
    samples: Samples = {}
    for process in stack.processes_of(service):
        answer = httpx.get(f"{stack.process_urls[process]}/metrics", timeout=10)
        assert answer.status_code == 200, (process, answer.text)
        for family in text_string_to_metric_families(answer.text):
            families[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                samples[key] = samples.get(key, 0.0) + sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
