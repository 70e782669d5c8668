#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests of deploy/kubernetes (run by scripts/check-deploy.sh).

Usage: validate_k8s.py [--kubernetes-version 1.37.0] [--self-test] RENDERED.yaml ...

Each file is the output of `kubectl kustomize <dir>` (one kustomization). Three layers:

1. Schemas, strict (an unknown field is an error, not silently dropped by the API server):
   - built-in kinds: kubernetes-validate (PyPI), the upstream OpenAPI schemas of the given
     Kubernetes version, `strict=True`;
   - ScaledObject, TriggerAuthentication (KEDA) and ServiceMonitor (Prometheus Operator):
     the cloudcoil model packages (PyPI, generated from those projects' CRD schemas); a
     model accepts and drops unknown keys, so every key of the input must survive a
     round trip through the model.
2. Consistency between the objects (what no schema sees): selectors match the pod labels,
   the KEDA trigger watches the queue the pods consume, probes use the metrics port that
   config.toml listens on, terminationGracePeriodSeconds covers sqs.shutdown_grace_seconds
   plus the daemon's drain time, referenced ConfigMaps/ServiceAccount/TriggerAuthentication
   exist.
3. The deployment brief: non-root, read-only root filesystem, requests and limits,
   liveness /healthz and readiness /readyz, IRSA annotation, KEDA min 1.

--self-test breaks a copy of the first file in known ways and fails unless each defect is
reported: a check that cannot fail proves nothing.

Prints one line per problem; exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tomllib
from typing import Any, Callable

import yaml

# What the daemon may need after sqs.shutdown_grace_seconds: up to 5 s to abandon the
# unfinished messages and 5 s for the batcher to drain (daemon.rs ABANDON_WAIT twice),
# plus a margin for the process to exit.
DRAIN_SECONDS = 10
MARGIN_SECONDS = 5

CONFIG_PATH = "/etc/aws-log-forwarder/config.toml"


def crd_models() -> dict[tuple[str, str], Any]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    return {
        ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): TriggerAuthentication,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
    }


def dropped_keys(given: Any, kept: Any, path: str) -> list[str]:
    """Paths of keys in `given` that the model did not keep (unknown fields)."""
    out: list[str] = []
    if isinstance(given, dict):
        kept = kept if isinstance(kept, dict) else {}
        for key, value in given.items():
            if key not in kept:
                out.append(f"{path}.{key}")
            else:
                out += dropped_keys(value, kept[key], f"{path}.{key}")
    elif isinstance(given, list):
        kept = kept if isinstance(kept, list) else []
        for i, value in enumerate(given):
            out += dropped_keys(value, kept[i] if i < len(kept) else None, f"{path}[{i}]")
    return out


def schema_errors(doc: dict, k8s_version: str, models: dict) -> list[str]:
    import kubernetes_validate

    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    model = models.get(key)
    if model is not None:
        try:
            parsed = model.model_validate(doc)
        except Exception as e:  # pydantic.ValidationError: the message lists every field
            return [f"schema: {e}".replace("\n", "; ")]
        kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
        return [f"unknown field {p[1:]}" for p in dropped_keys(doc, kept, "")]
    try:
        kubernetes_validate.validate(doc, k8s_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]} (neither Kubernetes {k8s_version} nor a known CRD)"]
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "(root)"
        return [f"schema: {where}: {e.message}"]
    return []


def selects(selector: dict | None, labels: dict | None) -> bool:
    selector = selector or {}
    labels = labels or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def consistency_errors(docs: list[dict]) -> list[str]:
    errors: list[str] = []
    err = errors.append

    def all_of(kind: str) -> list[dict]:
        return [d for d in docs if d.get("kind") == kind]

    def one(kind: str) -> dict | None:
        found = all_of(kind)
        if len(found) != 1:
            err(f"expected exactly one {kind}, found {len(found)}")
            return None
        return found[0]

    configmaps = {d["metadata"]["name"]: d for d in all_of("ConfigMap")}
    deployment = one("Deployment")
    scaled = one("ScaledObject")
    service = one("Service")
    monitor = one("ServiceMonitor")
    pdb = one("PodDisruptionBudget")
    sa = one("ServiceAccount")
    auths = {d["metadata"]["name"] for d in all_of("TriggerAuthentication")}
    if deployment is None:
        return errors

    dep_name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    if not selects(deployment["spec"]["selector"].get("matchLabels"), pod_labels):
        err("Deployment: selector does not match its pod labels")
    if "replicas" in deployment["spec"]:
        err("Deployment: spec.replicas is set; KEDA owns the replica count (an apply would reset it)")
    containers = spec.get("containers", [])
    if len(containers) != 1:
        err(f"Deployment: expected one container, found {len(containers)}")
        return errors
    c = containers[0]

    # The environment the container gets from ConfigMaps (envFrom) and env values.
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        name = src.get("configMapRef", {}).get("name")
        if name is not None:
            if name not in configmaps:
                err(f"Deployment: envFrom ConfigMap {name} is not in the manifests")
            else:
                env.update(configmaps[name].get("data", {}))
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]

    # The configuration file the daemon reads.
    config: dict = {}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mount = next((m for m in c.get("volumeMounts", []) if CONFIG_PATH.startswith(m["mountPath"] + "/")), None)
    if mount is None:
        err(f"Deployment: nothing mounted at {CONFIG_PATH}")
    else:
        cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
        text = configmaps.get(cm_name, {}).get("data", {}).get(CONFIG_PATH.rsplit("/", 1)[1])
        if text is None:
            err(f"Deployment: volume {mount['name']} is not a ConfigMap of these manifests holding config.toml")
        else:
            try:
                config = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                err(f"ConfigMap {cm_name}: config.toml is not valid TOML: {e}")

    # Secrets are created outside kustomize (never in git): the key file must be a mounted secret.
    key_file = config.get("intake", {}).get("key_file")
    if key_file is not None:
        m = next((m for m in c.get("volumeMounts", []) if key_file.startswith(m["mountPath"] + "/")), None)
        if m is None or "secret" not in volumes.get(m["name"], {}):
            err(f"Deployment: intake.key_file {key_file} is not on a mounted Secret")

    # Security and resources.
    psc = spec.get("securityContext", {})
    csc = c.get("securityContext", {})
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        err("Deployment: runAsNonRoot is not set")
    if not csc.get("readOnlyRootFilesystem"):
        err("Deployment: readOnlyRootFilesystem is not set")
    if csc.get("allowPrivilegeEscalation") is not False:
        err("Deployment: allowPrivilegeEscalation is not false")
    for part in ("requests", "limits"):
        for res in ("cpu", "memory"):
            if res not in c.get("resources", {}).get(part, {}):
                err(f"Deployment: resources.{part}.{res} is missing")

    # Probes on the metrics listener of config.toml.
    listen = config.get("metrics", {}).get("listen", "")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    try:
        listen_port = int(listen.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        err(f"config.toml: metrics.listen {listen!r} has no port (the probes need the listener)")
        listen_port = None
    if listen_port is not None and not listen.startswith(("0.0.0.0:", "[::]:")):
        err(f"config.toml: metrics.listen {listen!r} is not reachable from the kubelet (use 0.0.0.0:PORT)")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet")
        if get is None:
            err(f"Deployment: no {probe} httpGet")
            continue
        if get.get("path") != path:
            err(f"Deployment: {probe} path is {get.get('path')!r}, expected {path}")
        port = ports.get(get.get("port"), get.get("port"))
        if listen_port is not None and port != listen_port:
            err(f"Deployment: {probe} port {get.get('port')} is not metrics.listen's port {listen_port}")

    # Graceful stop.
    grace = config.get("sqs", {}).get("shutdown_grace_seconds", 25)
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if isinstance(tgps, int) and isinstance(grace, int) and tgps < grace + DRAIN_SECONDS + MARGIN_SECONDS:
        err(
            f"Deployment: terminationGracePeriodSeconds {tgps} < sqs.shutdown_grace_seconds {grace}"
            f" + {DRAIN_SECONDS} s drain + {MARGIN_SECONDS} s margin: the kubelet would kill in-flight work"
        )

    # Identity.
    if sa is not None:
        if spec.get("serviceAccountName") != sa["metadata"]["name"]:
            err(f"Deployment: serviceAccountName is not {sa['metadata']['name']}")
        if "eks.amazonaws.com/role-arn" not in sa["metadata"].get("annotations", {}):
            err("ServiceAccount: no eks.amazonaws.com/role-arn annotation (IRSA)")

    # Metrics path: Service -> pods, ServiceMonitor -> Service port.
    if service is not None:
        if not selects(service["spec"].get("selector"), pod_labels):
            err("Service: selector does not match the Deployment's pod labels")
        svc_ports = {p.get("name") for p in service["spec"].get("ports", [])}
        for p in service["spec"].get("ports", []):
            if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
                err(f"Service: targetPort {p.get('targetPort')} is no container port")
        if monitor is not None:
            if not selects(monitor["spec"].get("selector", {}).get("matchLabels"), service["metadata"].get("labels")):
                err("ServiceMonitor: selector does not match the Service's labels")
            for ep in monitor["spec"].get("endpoints", []):
                if ep.get("port") not in svc_ports:
                    err(f"ServiceMonitor: endpoint port {ep.get('port')} is not a Service port")
    if pdb is not None and not selects(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels):
        err("PodDisruptionBudget: selector does not match the Deployment's pod labels")

    # KEDA: scales this Deployment on the queue it consumes.
    if scaled is not None:
        s = scaled["spec"]
        ref = s.get("scaleTargetRef", {})
        if ref.get("name") != dep_name or ref.get("kind", "Deployment") != "Deployment":
            err(f"ScaledObject: scaleTargetRef {ref} is not Deployment {dep_name}")
        lo, hi = s.get("minReplicaCount", 0), s.get("maxReplicaCount", 100)
        if not isinstance(lo, int) or lo < 1:
            err("ScaledObject: minReplicaCount must be an integer >= 1 (never scale to zero)")
        elif isinstance(hi, int) and hi < lo:
            err("ScaledObject: maxReplicaCount < minReplicaCount")
        sqs = [t for t in s.get("triggers", []) if t.get("type") == "aws-sqs-queue"]
        if len(sqs) != 1:
            err("ScaledObject: expected one aws-sqs-queue trigger")
        for t in sqs:
            md = t.get("metadata", {})
            queue = env.get("ALF_SQS__QUEUE_URL") or config.get("sqs", {}).get("queue_url")
            if md.get("queueURL") != queue:
                err(f"ScaledObject: trigger queueURL {md.get('queueURL')} is not the queue the pods consume ({queue})")
            region = env.get("AWS_REGION") or config.get("aws", {}).get("region")
            if md.get("awsRegion") != region:
                err(f"ScaledObject: trigger awsRegion {md.get('awsRegion')} is not the pods' region ({region})")
            try:
                if int(md.get("queueLength", "")) < 1:
                    raise ValueError
            except ValueError:
                err(f"ScaledObject: queueLength {md.get('queueLength')!r} is not a positive integer")
            auth = t.get("authenticationRef", {}).get("name")
            if auth not in auths:
                err(f"ScaledObject: authenticationRef {auth} is not a TriggerAuthentication of these manifests")
    return errors


def validate(docs: list[dict], k8s_version: str, models: dict) -> list[str]:
    errors: list[str] = []
    for d in docs:
        label = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        errors += [f"{label}: {e}" for e in schema_errors(d, k8s_version, models)]
    return errors + consistency_errors(docs)


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def self_test(docs: list[dict], k8s_version: str, models: dict) -> list[str]:
    """Each defect must be reported with a message containing the expected words."""

    def find(ds: list[dict], kind: str) -> dict:
        return next(d for d in ds if d["kind"] == kind)

    def container(ds: list[dict]) -> dict:
        return find(ds, "Deployment")["spec"]["template"]["spec"]["containers"][0]

    def scaled(ds: list[dict]) -> dict:
        return find(ds, "ScaledObject")["spec"]

    def short_grace(ds: list[dict]) -> None:
        find(ds, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 20

    defects: list[tuple[str, Callable[[list[dict]], None], str]] = [
        ("typo in a Deployment field", lambda ds: container(ds).__setitem__("imagePullPolcy", "Always"), "imagePullPolcy"),
        ("typo in a ScaledObject field", lambda ds: scaled(ds).__setitem__("minReplicas", 2), "minReplicas"),
        ("wrong type in a ScaledObject field", lambda ds: scaled(ds).__setitem__("maxReplicaCount", "many"), "maxReplicaCount"),
        ("typo in a ServiceMonitor field", lambda ds: find(ds, "ServiceMonitor")["spec"].__setitem__("endpoint", []), "endpoint"),
        ("grace period too short", short_grace, "terminationGracePeriodSeconds"),
        ("KEDA watches another queue", lambda ds: scaled(ds)["triggers"][0]["metadata"].__setitem__("queueURL", "https://sqs.x/1/other"), "queueURL"),
        ("readiness on the wrong path", lambda ds: container(ds)["readinessProbe"]["httpGet"].__setitem__("path", "/healthz"), "readinessProbe"),
        ("root filesystem writable", lambda ds: container(ds)["securityContext"].__setitem__("readOnlyRootFilesystem", False), "readOnlyRootFilesystem"),
        ("Service selects nothing", lambda ds: find(ds, "Service")["spec"].__setitem__("selector", {"app": "nope"}), "Service: selector"),
    ]
    failures: list[str] = []
    if validate(docs, k8s_version, models):
        return ["self-test: the unmodified manifests do not validate"]
    for what, breaker, expect in defects:
        broken = copy.deepcopy(docs)
        breaker(broken)
        found = validate(broken, k8s_version, models)
        if not any(expect in e for e in found):
            failures.append(f"self-test: '{what}' was not reported (got: {found or 'nothing'})")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubernetes-version", default="1.37.0")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    models = crd_models()
    failed = False
    for path in args.files:
        docs = load(path)
        problems = validate(docs, args.kubernetes_version, models)
        if args.self_test and path == args.files[0]:
            problems += self_test(docs, args.kubernetes_version, models)
        for p in problems:
            print(f"{path}: {p}")
        if problems:
            failed = True
        else:
            kinds = ", ".join(sorted({d["kind"] for d in docs}))
            print(f"{path}: {len(docs)} objects valid ({kinds})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
