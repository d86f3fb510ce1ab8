"""The deploy/ monitoring files agree with each other and with the metrics the code
exposes: an alert or a scaler on a renamed metric would stay silent forever."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from shared import metrics
from shared.engine.backlog import BacklogCollector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bjobyard_[a-z_]+")


def exposed_names() -> set[str]:
    """Every sample name the API and workers can expose (the scrape-time gauges too)."""
    names = {
        sample.name
        for collector in (
            metrics.HTTP_REQUESTS,
            metrics.HTTP_LATENCY,
            metrics.JOBS_ACCEPTED,
            metrics.EXECUTIONS_FINISHED,
            metrics.EXECUTION_RETRIES,
            metrics.THROTTLE_WAITS,
            metrics.THROTTLE_WAIT_SECONDS,
            metrics.CLAIM_BATCH_SIZE,
            metrics.FINISH_BATCH_SIZE,
        )
        for family in collector.collect()
        for sample in family.samples
    }
    names |= {f"{c._name}_total" for c in (metrics.HTTP_REQUESTS, metrics.JOBS_ACCEPTED)}
    names |= {
        f"{c._name}_total"
        for c in (
            metrics.EXECUTIONS_FINISHED,
            metrics.EXECUTION_RETRIES,
            metrics.THROTTLE_WAITS,
            metrics.THROTTLE_WAIT_SECONDS,
        )
    }
    names |= {family.name for family in BacklogCollector().collect()}
    return names


def test_alerts_name_only_exposed_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in METRIC.findall(rule["expr"])
    }
    assert used, "no jobyard metric in the alerts"
    assert used <= exposed_names(), used - exposed_names()


def test_the_kubernetes_rules_are_the_rule_file() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "monitoring.yaml").read_text()))
    prometheus_rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    assert prometheus_rule["spec"] == rules


def test_the_autoscaler_reads_an_exposed_metric() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text()))
    scaled = next(d for d in documents if d["kind"] == "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    used = set(METRIC.findall(trigger["metadata"]["query"]))
    assert used == {"jobyard_executions_backlog"}
    assert used <= exposed_names()


def test_every_scraped_pod_exposes_its_metrics_port() -> None:
    for name, port in (("api", 9100), ("worker", 9101), ("dispatcher", 9101)):
        (deployment,) = [
            d
            for d in yaml.safe_load_all((DEPLOY / "k8s" / f"{name}.yaml").read_text())
            if d["kind"] == "Deployment"
        ]
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        (container,) = template["spec"]["containers"]
        assert {"name": "metrics", "containerPort": port} in container["ports"]


def test_the_tracing_profile_runs_a_collector_in_front_of_jaeger() -> None:
    """Compose's ``tracing`` profile: every jobyard service takes the endpoint, the
    collector mounts deploy/otel/collector.yaml, receives OTLP/HTTP on 4318 (where the
    comments point the processes) and exports to the Jaeger service of the profile."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    jobyard = [s for s in services.values() if s.get("image") == "jobyard:latest"]
    assert jobyard
    assert all("OTEL_EXPORTER_OTLP_ENDPOINT" in s["environment"] for s in jobyard)
    collector, jaeger = services["otel-collector"], services["jaeger"]
    assert collector["profiles"] == jaeger["profiles"] == ["tracing"]
    [mount] = collector["volumes"]
    source, target = mount.split(":")[:2]
    assert (DEPLOY / source).resolve() == DEPLOY / "otel" / "collector.yaml"
    assert f"--config={target}" in collector["command"]
    config = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    [exporter] = config["service"]["pipelines"]["traces"]["exporters"]
    assert config["exporters"][exporter]["endpoint"].split(":")[0] == "jaeger"
    assert "http://otel-collector:4318" in (DEPLOY / "compose.yaml").read_text()
