#!/usr/bin/env python3
"""Checks the deployment files offline; run by scripts/check-deploy.sh, which installs the tools.

deploy/kubernetes: rendered by kustomize, every resource validated against the official Kubernetes
JSON schemas, and the things a schema cannot see (probes on the metrics port, the grace period,
memory, CronJob limits, config and Secret wiring). docker/: the compose file against the
compose-spec schema, prometheus.yml by promtool, Grafana's provisioning, and every dashboard query
parsed, linted (counters only through rate/increase, histograms only through histogram_quantile
by le) and evaluated by promtool over synthetic series of every tweetlake metric. With a tweetlake
binary, the config each pod and the compose service would start with is loaded by the real
config loader, and each command line is checked against the real CLI.

Prints one line per check and ends with "N passed, N failed"; exit 1 on any failure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import promql_parser as pp
import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
PROM_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
GRAFANA = DOCKER / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards"
DASHBOARDS = GRAFANA / "dashboards"

METRICS_PORT = 9464
# Oldest Kubernetes the manifests support (CronJob timeZone is GA in 1.27) and the newest schema.
K8S_VERSIONS = ["1.27.0", "1.37.0"]
# Measured peak resident memory of a 10M-post drain with 48 MiB batches (README, Performance).
MEASURED_PEAK_MIB = 1000

# tweetlake's metrics (issue 13) and their kinds. Histograms are scraped as _bucket/_sum/_count.
COUNTERS = {
    "tweetlake_batches_total": set(),
    "tweetlake_records_total": {"table"},
    "tweetlake_dead_letters_total": set(),
    "tweetlake_duplicates_total": {"table"},
    "tweetlake_commit_retries_total": set(),
    "tweetlake_maintenance_runs_total": {"table", "operation", "outcome"},
    "tweetlake_maintenance_reclaimed_bytes_total": {"table"},
}
GAUGES = {
    "tweetlake_consumer_lag": {"topic", "partition"},
    "tweetlake_last_commit_timestamp_seconds": set(),
    "tweetlake_build_info": {"version"},
}
HISTOGRAMS = {
    "tweetlake_batch_duration_seconds": {"stage"},
    "tweetlake_maintenance_duration_seconds": {"operation"},
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
RATE_FUNCS = {"rate", "increase", "irate"}
# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${__rate_interval}": "1m",
    "${__range}": "1h",
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        try:
            note = fn()
        except CheckFailed as e:
            self.failed += 1
            print(f"FAIL  {name}\n      {e}", flush=True)
            return
        except Exception as e:  # a broken check is a failure too, with its cause
            self.failed += 1
            print(f"FAIL  {name}\n      {type(e).__name__}: {e}", flush=True)
            return
        self.passed += 1
        print(f"ok    {name}" + (f" ({note})" if note else ""), flush=True)


class CheckFailed(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def problems(errors):
    if errors:
        raise CheckFailed("\n      ".join(errors))


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def mib(quantity):
    m = re.fullmatch(r"(\d+)(Mi|Gi)", str(quantity))
    require(m, f"memory quantity {quantity!r}: expected <n>Mi or <n>Gi")
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    require(m, f"duration {text!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# ---------------------------------------------------------------------------------------------
# Kubernetes


class Kube:
    def __init__(self, kubectl):
        self.kubectl = kubectl
        self.docs = None

    def render(self):
        out = sh([self.kubectl, "kustomize", str(K8S)])
        require(out.returncode == 0, f"kubectl kustomize {K8S}: {out.stderr.strip()}")
        self.docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in self.docs)
        return ", ".join(kinds)

    def of_kind(self, kind):
        require(self.docs is not None, "kustomize did not render")
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind, name):
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        require(len(found) == 1, f"no {kind} named {name} in the rendered manifests")
        return found[0]

    def schemas(self):
        errors = []
        for version in K8S_VERSIONS:
            for doc in self.of_kind_all():
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.path)
                    errors.append(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {where}: {e.message}")
                except Exception as e:
                    errors.append(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {e}")
        problems(errors)
        return f"{len(self.docs)} resources, strict, Kubernetes {' and '.join(K8S_VERSIONS)}"

    def of_kind_all(self):
        require(self.docs is not None, "kustomize did not render")
        return self.docs

    def secret_example(self):
        example = K8S / "secret.example.env"
        out = sh([self.kubectl, "create", "secret", "generic", "tweetlake",
                  f"--from-env-file={example}", "--dry-run=client", "-o", "yaml"])
        require(out.returncode == 0, f"kubectl create secret --from-env-file={example.name}: {out.stderr.strip()}")
        secret = yaml.safe_load(out.stdout)
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(secret, version, strict=True)
        keys = sorted(secret["data"])
        # Kubernetes' rule for environment variable names (envFrom skips keys that break it).
        bad = [k for k in keys if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", k)]
        require(not bad, f"not valid environment variable names: {bad}")
        names = {ref["secretRef"]["name"] for t in self.pod_templates().values()
                 for c in t["spec"]["containers"] for ref in c.get("envFrom", []) if "secretRef" in ref}
        require(names == {"tweetlake"}, f"pods read the Secrets {sorted(names)}, the example creates `tweetlake`")
        return ", ".join(keys)

    def pod_templates(self):
        out = {}
        for d in self.of_kind("Deployment"):
            out[f"Deployment/{d['metadata']['name']}"] = d["spec"]["template"]
        for d in self.of_kind("CronJob"):
            out[f"CronJob/{d['metadata']['name']}"] = d["spec"]["jobTemplate"]["spec"]["template"]
        return out

    def config_wiring(self):
        """Every pod reads tweetlake.toml from the generated ConfigMap through TWEETLAKE_CONFIG."""
        maps = {d["metadata"]["name"]: d for d in self.of_kind("ConfigMap")}
        errors = []
        for where, tpl in self.pod_templates().items():
            volumes = {v["name"]: v for v in tpl["spec"].get("volumes", [])}
            c = tpl["spec"]["containers"][0]
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            path = env.get("TWEETLAKE_CONFIG")
            if not path:
                errors.append(f"{where}: no TWEETLAKE_CONFIG")
                continue
            mounts = [m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
            if len(mounts) != 1:
                errors.append(f"{where}: TWEETLAKE_CONFIG={path} is under no volume mount")
                continue
            vol = volumes.get(mounts[0]["name"], {})
            cm = vol.get("configMap", {}).get("name")
            key = path[len(mounts[0]["mountPath"].rstrip("/")) + 1:]
            if cm not in maps:
                errors.append(f"{where}: volume {mounts[0]['name']} names ConfigMap {cm}, which kustomize does not generate")
            elif key not in maps[cm]["data"]:
                errors.append(f"{where}: ConfigMap {cm} has no key {key}")
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") and not any(
                    m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])):
                errors.append(f"{where}: read-only root filesystem without a writable /tmp")
        problems(errors)

    def deployment(self):
        d = self.one("Deployment", "tweetlake")
        tpl = d["spec"]["template"]
        spec = tpl["spec"]
        c = spec["containers"][0]
        errors = []
        if c.get("args") != ["run"]:
            errors.append(f"args {c.get('args')}: expected [run] (the image's entrypoint is tweetlake)")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if ports.get("metrics") != METRICS_PORT:
            errors.append(f"no container port `metrics` = {METRICS_PORT}: {ports}")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if env.get("TWEETLAKE_METRICS__LISTEN") != f"0.0.0.0:{METRICS_PORT}":
            errors.append(f"TWEETLAKE_METRICS__LISTEN={env.get('TWEETLAKE_METRICS__LISTEN')}: probes and Prometheus "
                          f"need 0.0.0.0:{METRICS_PORT} (the default listens on loopback only)")
        for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]:
            get = c.get(probe, {}).get("httpGet", {})
            port = get.get("port")
            port = ports.get(port) if isinstance(port, str) else port
            if get.get("path") != path or port != METRICS_PORT:
                errors.append(f"{probe}: GET {get.get('path')} on {get.get('port')}, expected GET {path} on {METRICS_PORT}")
        ann = tpl["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(METRICS_PORT) \
                or ann.get("prometheus.io/path") != "/metrics":
            errors.append(f"pod annotations for Prometheus: {ann}")
        # The grace period must outlast the trigger interval plus a batch plus a maintenance step.
        config = tomllib.loads((K8S / "tweetlake.toml").read_text())
        trigger = duration_s(config.get("pipeline", {}).get("trigger_interval", "10s"))
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace < trigger + 60:
            errors.append(f"terminationGracePeriodSeconds {grace} < trigger interval {trigger:g} s + a batch + "
                          "a maintenance step")
        if config.get("pipeline", {}).get("max_bytes_per_batch") != 48 * 1024 * 1024:
            errors.append("tweetlake.toml: pipeline.max_bytes_per_batch is not the 48 MiB the memory was measured with")
        res = c.get("resources", {})
        req, lim = res.get("requests", {}), res.get("limits", {})
        if "memory" not in req or "memory" not in lim:
            errors.append(f"memory request and limit both needed: {res}")
        else:
            if mib(lim["memory"]) < MEASURED_PEAK_MIB * 1.25:
                errors.append(f"memory limit {lim['memory']} leaves under 25% over the measured {MEASURED_PEAK_MIB} MiB peak")
            if mib(req["memory"]) < MEASURED_PEAK_MIB:
                errors.append(f"memory request {req['memory']} is below the measured {MEASURED_PEAK_MIB} MiB peak")
        if "cpu" not in req:
            errors.append("no cpu request")
        svc = self.one("Service", "tweetlake-metrics")
        sel = svc["spec"]["selector"]
        labels = tpl["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            errors.append(f"Service selector {sel} does not match the pod labels {labels}")
        if [p.get("targetPort") for p in svc["spec"]["ports"]] != ["metrics"]:
            errors.append("Service: targetPort should be the named port `metrics`")
        if "prometheus.io/scrape" in svc["metadata"].get("annotations", {}):
            errors.append("Service carries prometheus.io annotations too: pods would be scraped twice")
        problems(errors)
        return f"grace {grace} s, memory {req.get('memory')}/{lim.get('memory')}"

    def cronjobs(self):
        expected = {"tweetlake-run-once": ["run", "--once"], "tweetlake-maintain": ["maintain"]}
        errors = []
        for name, args in expected.items():
            cj = self.one("CronJob", name)
            spec = cj["spec"]
            job = spec["jobTemplate"]["spec"]
            pod = job["template"]["spec"]
            if spec.get("concurrencyPolicy") != "Forbid":
                errors.append(f"{name}: concurrencyPolicy {spec.get('concurrencyPolicy')}, expected Forbid")
            if not isinstance(job.get("backoffLimit"), int):
                errors.append(f"{name}: no backoffLimit")
            if not isinstance(job.get("activeDeadlineSeconds"), int):
                errors.append(f"{name}: no activeDeadlineSeconds")
            if pod.get("restartPolicy") != "Never":
                errors.append(f"{name}: restartPolicy {pod.get('restartPolicy')}, expected Never")
            if pod["containers"][0].get("args") != args:
                errors.append(f"{name}: args {pod['containers'][0].get('args')}, expected {args}")
            if spec.get("suspend") is not True:
                errors.append(f"{name}: shipped unsuspended (the Deployment already runs the pipeline)")
        problems(errors)


# ---------------------------------------------------------------------------------------------
# docker compose, Prometheus, Grafana


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def compose_schema(check_jsonschema):
    out = sh([check_jsonschema, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    require(out.returncode == 0, (out.stdout + out.stderr).strip())
    return "compose-spec"


def compose_semantics():
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    errors = []
    for name in ["kafka", "kafka-init", "minio", "minio-init", "tweetlake", "prometheus", "grafana"]:
        if name not in services:
            errors.append(f"no service {name}")
    tl = services.get("tweetlake", {})
    env = tl.get("environment", {})
    if env.get("TWEETLAKE_METRICS__LISTEN") != f"0.0.0.0:{METRICS_PORT}":
        errors.append(f"tweetlake: TWEETLAKE_METRICS__LISTEN={env.get('TWEETLAKE_METRICS__LISTEN')}, "
                      f"Prometheus needs 0.0.0.0:{METRICS_PORT}")
    # Prometheus scrapes <service>:<port> of a service that listens there.
    prom = load_yaml(PROM_CONFIG)
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    if f"tweetlake:{METRICS_PORT}" not in targets:
        errors.append(f"prometheus.yml scrapes {targets}, not tweetlake:{METRICS_PORT}")
    # Every bind mount's source exists, relative to the compose file.
    mounts = {}
    for sname, svc in services.items():
        for v in svc.get("volumes", []):
            src, dst = v.split(":")[:2]
            if src.startswith("."):
                if not (COMPOSE.parent / src).exists():
                    errors.append(f"{sname}: mounts {src}, which does not exist")
                mounts.setdefault(sname, {})[dst] = (COMPOSE.parent / src).resolve()
    if mounts.get("prometheus", {}).get("/etc/prometheus/prometheus.yml") != PROM_CONFIG.resolve():
        errors.append("prometheus does not mount prometheus/prometheus.yml at /etc/prometheus/prometheus.yml")
    gm = mounts.get("grafana", {})
    if gm.get("/etc/grafana/provisioning/datasources") != DATASOURCES.resolve() or \
            gm.get("/etc/grafana/provisioning/dashboards") != DASHBOARD_PROVIDERS.resolve():
        errors.append(f"grafana does not mount the provisioning directories: {gm}")
    # The dashboard provider reads the directory the dashboards are mounted at.
    for f in sorted(DASHBOARD_PROVIDERS.glob("*.y*ml")):
        for p in load_yaml(f)["providers"]:
            path = p["options"]["path"]
            if gm.get(path) != DASHBOARDS.resolve():
                errors.append(f"{f.name}: provider {p['name']} reads {path}, where ./grafana/dashboards is not mounted")
    genv = services.get("grafana", {}).get("environment", {})
    home = genv.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        mounted = {dst: src for dst, src in gm.items()}
        d, _, fname = home.rpartition("/")
        if d not in mounted or not (mounted[d] / fname).is_file():
            errors.append(f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH={home} is not a mounted file")
    # Grafana's Prometheus data source points at the prometheus service.
    for ds in datasources():
        if ds["type"] == "prometheus" and ds["url"] != "http://prometheus:9090":
            errors.append(f"data source {ds['name']}: url {ds['url']}, expected http://prometheus:9090")
        for var in re.findall(r"\$\{?(\w+)\}?", str(ds.get("url", "")) + str(ds.get("secureJsonData", ""))):
            if var not in genv:
                errors.append(f"data source {ds['name']} reads ${var}, which the grafana service does not set")
    problems(errors)
    return f"{len(services)} services"


def promtool_config(promtool):
    out = sh([promtool, "check", "config", str(PROM_CONFIG)])
    require(out.returncode == 0, (out.stdout + out.stderr).strip())


def datasources():
    out = []
    for f in sorted(DATASOURCES.glob("*.y*ml")):
        doc = load_yaml(f)
        require(doc.get("apiVersion") == 1, f"{f.name}: apiVersion must be 1")
        out += doc.get("datasources", [])
    return out


def grafana_provisioning():
    errors = []
    seen = set()
    for ds in datasources():
        for key in ["name", "uid", "type", "url", "access"]:
            if not ds.get(key):
                errors.append(f"data source {ds.get('name')}: no {key}")
        if ds.get("uid") in seen:
            errors.append(f"data source uid {ds.get('uid')} twice")
        seen.add(ds.get("uid"))
    by_type = {ds["type"]: ds for ds in datasources()}
    pg = by_type.get("postgres") or by_type.get("grafana-postgresql-datasource")
    if not pg:
        errors.append("no PostgreSQL data source for `tweetlake serve`")
    else:
        if pg.get("jsonData", {}).get("database") != "tweetlake":
            errors.append(f"PostgreSQL data source: database {pg.get('jsonData', {}).get('database')}, expected tweetlake")
        compose_env = load_yaml(COMPOSE)["services"]["grafana"]["environment"]
        addr = re.sub(r"\$\{?(\w+)\}?", lambda m: str(compose_env.get(m.group(1), "")), pg["url"])
        if not addr.endswith(":5433"):
            errors.append(f"PostgreSQL data source: {pg['url']} = {addr}, expected port 5433 (`tweetlake serve`)")
    if "prometheus" not in by_type:
        errors.append("no Prometheus data source")
    for f in sorted(DASHBOARD_PROVIDERS.glob("*.y*ml")):
        doc = load_yaml(f)
        if doc.get("apiVersion") != 1:
            errors.append(f"{f.name}: apiVersion must be 1")
        for p in doc.get("providers", []):
            if p.get("type") != "file" or not p.get("options", {}).get("path"):
                errors.append(f"{f.name}: provider {p.get('name')} is not a file provider with options.path")
    problems(errors)
    return ", ".join(f"{ds['name']} ({ds['type']}, uid {ds['uid']})" for ds in datasources())


def dashboards():
    files = sorted(DASHBOARDS.glob("*.json"))
    require(files, f"no dashboards in {DASHBOARDS}")
    return {f: json.loads(f.read_text()) for f in files}


def prometheus_queries():
    """(dashboard file, panel title, expr) for every Prometheus query of every dashboard."""
    prom_uids = {ds["uid"] for ds in datasources() if ds["type"] == "prometheus"}
    out = []
    for f, dash in dashboards().items():
        for panel in all_panels(dash):
            for t in panel.get("targets", []):
                uid = (t.get("datasource") or panel.get("datasource") or {}).get("uid")
                if uid in prom_uids:
                    out.append((f.name, panel.get("title"), t["expr"]))
    return out


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_structure():
    by_uid = {ds["uid"]: ds for ds in datasources()}
    errors = []
    uids = set()
    npanels = 0
    for f, dash in dashboards().items():
        name = f.name
        for key in ["uid", "title", "schemaVersion", "panels"]:
            if key not in dash:
                errors.append(f"{name}: no {key}")
        if dash.get("uid") in uids:
            errors.append(f"{name}: dashboard uid {dash.get('uid')} used twice")
        uids.add(dash.get("uid"))
        ids = set()
        cells = {}
        for p in all_panels(dash):
            npanels += 1
            title = f"{name}: panel {p.get('id')} {p.get('title')!r}"
            if p.get("id") in ids:
                errors.append(f"{title}: id used twice")
            ids.add(p.get("id"))
            g = p.get("gridPos", {})
            if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
                errors.append(f"{title}: gridPos {g} is not inside the 24 columns")
            else:
                for x in range(g["x"], g["x"] + g["w"]):
                    for y in range(g["y"], g["y"] + g["h"]):
                        if (x, y) in cells:
                            errors.append(f"{title}: overlaps panel {cells[(x, y)]}")
                            break
                        cells[(x, y)] = p.get("id")
                    else:
                        continue
                    break
            if p.get("type") == "row":
                continue
            ds = p.get("datasource") or {}
            if ds.get("uid") not in by_uid:
                errors.append(f"{title}: data source uid {ds.get('uid')!r} is not provisioned ({sorted(by_uid)})")
            elif ds.get("type") != by_uid[ds["uid"]]["type"]:
                errors.append(f"{title}: data source type {ds.get('type')} but uid {ds['uid']} is a {by_uid[ds['uid']]['type']}")
            targets = p.get("targets", [])
            if not targets:
                errors.append(f"{title}: no queries")
            refs = [t.get("refId") for t in targets]
            if len(set(refs)) != len(refs) or None in refs:
                errors.append(f"{title}: refIds {refs} must be present and distinct")
            for t in targets:
                tds = t.get("datasource") or ds
                if tds.get("uid") not in by_uid:
                    errors.append(f"{title} {t.get('refId')}: data source uid {tds.get('uid')!r} is not provisioned")
                elif by_uid[tds["uid"]]["type"] == "prometheus" and not t.get("expr", "").strip():
                    errors.append(f"{title} {t.get('refId')}: no expr")
        for v in dash.get("templating", {}).get("list", []):
            vds = v.get("datasource") or {}
            if v.get("type") == "query" and vds.get("uid") not in by_uid:
                errors.append(f"{name}: variable {v.get('name')}: data source uid {vds.get('uid')!r} is not provisioned")
    problems(errors)
    return f"{len(uids)} dashboard(s), {npanels} panels"


def substitute(expr, variables):
    for k, v in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(k, v)
    for name in variables:
        expr = expr.replace("${" + name + "}", ".*").replace("$" + name, ".*")
    require("$" not in expr, f"a Grafana variable left unreplaced in {expr}")
    return expr


def dashboard_variables():
    return {v["name"] for d in dashboards().values() for v in d.get("templating", {}).get("list", [])}


def metric_kind(name):
    if name in COUNTERS:
        return "counter", name
    if name in GAUGES:
        return "gauge", name
    for h in HISTOGRAMS:
        for suffix in ("_bucket", "_sum", "_count"):
            if name == h + suffix:
                return "histogram" + suffix, h
    return None, None


def selector_name(vs):
    if vs.name:
        return vs.name
    for m in vs.matchers.matchers:
        if m.name == "__name__":
            return m.value
    return None


def lint(expr):
    """Errors in how expr uses tweetlake's metrics; the names it reads."""
    errors, names = [], set()

    def walk(node, stack):
        t = type(node).__name__
        if t == "VectorSelector":
            name = selector_name(node)
            names.add(name)
            kind, base = metric_kind(name)
            if kind is None:
                errors.append(f"{name}: not a tweetlake metric")
                return
            labels = {m.name for m in node.matchers.matchers if m.name != "__name__"}
            allowed = (COUNTERS.get(base) or GAUGES.get(base) or HISTOGRAMS.get(base) or set()) | TARGET_LABELS
            if kind == "histogram_bucket":
                allowed = allowed | {"le"}
            if labels - allowed:
                errors.append(f"{name}: no label {sorted(labels - allowed)} (it has {sorted(allowed)})")
            in_range = stack and stack[-1][0] == "MatrixSelector"
            rate_fn = in_range and len(stack) > 1 and stack[-2][0] == "Call" and stack[-2][1] in RATE_FUNCS
            if kind in ("counter", "histogram_sum", "histogram_count", "histogram_bucket") and not rate_fn:
                errors.append(f"{name} is a counter: read it through rate() or increase()")
            if kind == "gauge" and in_range:
                errors.append(f"{name} is a gauge: no range functions (rate, increase) on it")
            if kind == "histogram_bucket":
                # histogram_quantile(q, sum by (le, ...) (rate(x_bucket[w])))
                aggs = [s for s in stack if s[0] == "AggregateExpr"]
                quantile = any(s[0] == "Call" and s[1] == "histogram_quantile" for s in stack)
                if not quantile:
                    errors.append(f"{name}: buckets only make sense inside histogram_quantile()")
                for a in aggs:
                    if a[1] != "by" or "le" not in a[2]:
                        errors.append(f"{name}: aggregate buckets `by (le, ...)`, not {a[1]} {a[2]}")
            return
        if t == "Call":
            frame = ("Call", node.func.name)
            for a in node.args:
                walk(a, stack + [frame])
        elif t == "MatrixSelector":
            walk(node.vector_selector, stack + [("MatrixSelector",)])
        elif t == "AggregateExpr":
            mod = node.modifier
            kind = "by" if mod is None or mod.type == pp.AggModifierType.By else "without"
            labels = list(mod.labels) if mod is not None else []
            walk(node.expr, stack + [("AggregateExpr", kind, labels)])
        elif t == "BinaryExpr":
            walk(node.lhs, stack)
            walk(node.rhs, stack)
        elif t in ("ParenExpr", "UnaryExpr"):
            walk(node.expr, stack)
        elif t == "SubqueryExpr":
            walk(node.expr, stack + [("Subquery",)])

    walk(pp.parse(expr), [])
    return errors, names


def dashboard_promql_lint():
    variables = dashboard_variables()
    errors, used = [], set()
    queries = prometheus_queries()
    for f, title, expr in queries:
        try:
            errs, names = lint(substitute(expr, variables))
        except CheckFailed as e:
            errs, names = [str(e)], set()
        except Exception as e:
            errs, names = [f"does not parse: {e}"], set()
        used |= {metric_kind(n)[1] for n in names if metric_kind(n)[1]}
        errors += [f"{f}: {title!r}: {e}\n        in {expr}" for e in errs]
    missing = sorted((set(COUNTERS) | set(GAUGES) | set(HISTOGRAMS)) - used)
    if missing:
        errors.append(f"no panel shows {missing}")
    problems(errors)
    return f"{len(queries)} queries, all {len(used)} metrics shown"


def synthetic_series():
    """Two scrape targets' worth of every metric, as metrics-exporter-prometheus renders them."""
    out = []
    for inst in ["tweetlake-0:9464", "tweetlake-1:9464"]:
        base = f'instance="{inst}", job="tweetlake"'

        def s(name, labels, values):
            lab = ", ".join([base] + [f'{k}="{v}"' for k, v in labels.items()])
            out.append({"series": f"{name}{{{lab}}}", "values": values})

        s("tweetlake_build_info", {"version": "0.1.0"}, "1x480")
        s("tweetlake_batches_total", {}, "0+1x480")
        for table in ["bronze", "dlq", "silver.tweets", "gold.company_minute"]:
            s("tweetlake_records_total", {"table": table}, "0+2000x480")
        s("tweetlake_dead_letters_total", {}, "0+3x480")
        s("tweetlake_duplicates_total", {"table": "silver.tweets"}, "0+5x480")
        s("tweetlake_commit_retries_total", {}, "0+1x480")
        for p in ["0", "1", "2"]:
            s("tweetlake_consumer_lag", {"topic": "x-posts", "partition": p}, "5000-10x480")
        s("tweetlake_last_commit_timestamp_seconds", {}, "0+15x480")
        for hist, label, values in [("tweetlake_batch_duration_seconds", "stage", ["decode", "sql", "write", "total"]),
                                    ("tweetlake_maintenance_duration_seconds", "operation", ["compact", "vacuum", "checkpoint"])]:
            for v in values:
                bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "+Inf"]
                for b in bounds:
                    # Every observation lands between 0.25 and 0.5 s.
                    step = 0 if b in ("0.05", "0.1", "0.25") else 1
                    s(f"{hist}_bucket", {label: v, "le": b}, f"0+{step}x480")
                s(f"{hist}_sum", {label: v}, "0+0.4x480")
                s(f"{hist}_count", {label: v}, "0+1x480")
        for op in ["compact", "vacuum"]:
            s("tweetlake_maintenance_runs_total", {"table": "bronze", "operation": op, "outcome": "ok"}, "0+1x480")
        s("tweetlake_maintenance_reclaimed_bytes_total", {"table": "bronze"}, "0+100000x480")
    return out


def promtool_queries(promtool, tmp):
    """Prometheus's own parser and engine: every query returns at least one non-NaN sample."""
    variables = dashboard_variables()
    queries = prometheus_queries()
    exprs = [substitute(e, variables) for _, _, e in queries]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    rules_file = Path(tmp) / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    out = sh([promtool, "check", "rules", str(rules_file)])
    require(out.returncode == 0, (out.stdout + out.stderr).strip())
    tests = {"rule_files": [], "evaluation_interval": "15s", "tests": [{
        "interval": "15s",
        "input_series": synthetic_series(),
        # absent(x == x) is empty exactly when x has a sample that is not NaN.
        "promql_expr_test": [{"expr": f"absent(({e}) == ({e}))", "eval_time": "90m", "exp_samples": []}
                             for e in exprs],
    }]}
    test_file = Path(tmp) / "dashboard_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    out = sh([promtool, "test", "rules", str(test_file)])
    if out.returncode != 0:
        raise CheckFailed("queries that return no data (or only NaN) over synthetic series of every metric:\n"
                          + (out.stdout + out.stderr).strip())
    return f"{len(exprs)} queries"


def yaml_lint(yamllint):
    files = sorted(str(p) for p in list(K8S.glob("*.yaml")) + list(DOCKER.rglob("*.yml")) + list(DOCKER.rglob("*.yaml")))
    config = ("{extends: default, rules: {line-length: {max: 130}, document-start: disable, "
              "truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}")
    out = sh([yamllint, "--strict", "-f", "parsable", "-d", config] + files)
    require(out.returncode == 0, out.stdout.strip() + out.stderr.strip())
    return f"{len(files)} files"


# ---------------------------------------------------------------------------------------------
# The real binary


def binary_env(extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    env.update(extra)
    return env


def ignored():
    return set(re.split(r"[,\s]+", os.environ.get("CHECK_DEPLOY_IGNORE", "").strip())) - {""}


def run_binary(tweetlake, args, env, cwd):
    out = sh([tweetlake] + args, env=env, cwd=cwd, timeout=60)
    # clap's usage text after the error line adds nothing here.
    out.stderr = next((line for line in out.stderr.splitlines() if line.startswith("error")), out.stderr.strip())
    return out


def binary_kubernetes(tweetlake, kube, tmp):
    """Each pod's config (ConfigMap + env + the Secret's keys) loads, and its command line parses."""
    secret = {}
    for line in (K8S / "secret.example.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            secret[k.strip()] = v
    skip = ignored()
    errors, notes = [], []
    for where, tpl in kube.pod_templates().items():
        c = tpl["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
        env.update(secret)
        env["TWEETLAKE_CONFIG"] = str(K8S / "tweetlake.toml")
        env = {k: v for k, v in env.items() if k not in skip}
        out = run_binary(tweetlake, ["plan"], binary_env(env), tmp)
        if out.returncode != 0:
            errors.append(f"{where}: `tweetlake plan` with its config and environment: {out.stderr.strip()}")
        args = c.get("args", [])
        if args and args[0] in skip:
            notes.append(f"{where}: `{args[0]}` not checked (CHECK_DEPLOY_IGNORE)")
            continue
        out = run_binary(tweetlake, args + ["--help"], binary_env({}), tmp)
        if out.returncode != 0:
            errors.append(f"{where}: `tweetlake {' '.join(args)}` is not a valid command line: {out.stderr.strip()}")
    problems(errors)
    return "; ".join(notes)


def binary_compose(tweetlake, tmp):
    svc = load_yaml(COMPOSE)["services"]["tweetlake"]
    skip = ignored()
    env = {k: str(v) for k, v in svc.get("environment", {}).items() if k not in skip}
    out = run_binary(tweetlake, ["plan"], binary_env(env), tmp)
    require(out.returncode == 0, f"`tweetlake plan` with the tweetlake service's environment: {out.stderr.strip()}")
    out = run_binary(tweetlake, svc["command"] + ["--help"], binary_env({}), tmp)
    require(out.returncode == 0, f"`tweetlake {' '.join(svc['command'])}`: {out.stderr.strip()}")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--check-jsonschema", required=True)
    ap.add_argument("--yamllint", required=True)
    ap.add_argument("--tweetlake", help="a tweetlake binary (else the checks that need it are skipped)")
    opts = ap.parse_args()

    checks = Checks()
    kube = Kube(opts.kubectl)
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        checks.run("yaml: yamllint on every manifest and config", lambda: yaml_lint(opts.yamllint))
        checks.run("kubernetes: kustomize renders deploy/kubernetes", kube.render)
        checks.run("kubernetes: every resource matches the official JSON schemas", kube.schemas)
        checks.run("kubernetes: the Secret example makes a valid Secret the pods read", kube.secret_example)
        checks.run("kubernetes: each pod reads tweetlake.toml from the generated ConfigMap", kube.config_wiring)
        checks.run("kubernetes: Deployment probes, metrics port, grace period, resources, Service",
                   kube.deployment)
        checks.run("kubernetes: CronJobs (Forbid, backoffLimit, activeDeadlineSeconds, commands)", kube.cronjobs)
        checks.run("compose: docker-compose.yml matches the compose-spec schema",
                   lambda: compose_schema(opts.check_jsonschema))
        checks.run("compose: services, metrics address, scrape target, mounts", compose_semantics)
        checks.run("prometheus: promtool check config", lambda: promtool_config(opts.promtool))
        checks.run("grafana: provisioned data sources and dashboard providers", grafana_provisioning)
        checks.run("grafana: dashboard JSON, panel layout, data source uids", dashboard_structure)
        checks.run("grafana: PromQL lint (metric names, labels, counters, histograms)", dashboard_promql_lint)
        checks.run("grafana: promtool parses and evaluates every query to data",
                   lambda: promtool_queries(opts.promtool, tmp))
        if opts.tweetlake:
            checks.run("tweetlake: each Kubernetes pod's config and command line",
                       lambda: binary_kubernetes(opts.tweetlake, kube, tmp))
            checks.run("tweetlake: the compose service's config and command line",
                       lambda: binary_compose(opts.tweetlake, tmp))
        else:
            print("skip  tweetlake: config and command lines (no binary given)")
    print(f"check-deploy: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
