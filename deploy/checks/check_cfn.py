#!/usr/bin/env python3
"""Consistency checks of cloudformation/aws-log-forwarder.yaml that cfn-lint cannot know
(run by scripts/check-deploy.sh; needs cfn-lint's template decoder).

Usage: check_cfn.py [--self-test]

- The forwarder's identities (ConsumerUserPolicy, WorkloadRolePolicy, FargateTaskRolePolicy)
  grant exactly the same statements: least privilege, whichever way it runs.
- The optional Fargate service stays optional: every Fargate* resource and output has a
  condition that is false while CreateFargateService is "false", so the default stack is
  the ingest resources alone (LocalStack, which cannot run ECS, deploys it in the tests).
- The task definition fits the image's default configuration
  (config/aws-log-forwarder.example.toml): the secret arrives in the variable that
  intake.key_env names, and StopTimeout covers sqs.shutdown_grace_seconds plus the
  daemon's 10 s of abandon-and-drain plus a 5 s margin.

--self-test breaks a copy of the template in known ways and fails unless each is reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import sys
import tomllib

from cfnlint.decode import decode

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloudformation/aws-log-forwarder.yaml"
EXAMPLE_CONFIG = ROOT / "config/aws-log-forwarder.example.toml"
IDENTITY_POLICIES = ("ConsumerUserPolicy", "WorkloadRolePolicy", "FargateTaskRolePolicy")
FARGATE_CONDITIONS = {"CreateFargate", "CreateFargateCluster"}
DRAIN_SECONDS = 10
MARGIN_SECONDS = 5


def plain(node):
    """cfn-lint's decoded nodes as plain JSON values (comparable with ==)."""
    return json.loads(json.dumps(node))


def check(template: dict, config: dict) -> list[str]:
    errors: list[str] = []
    resources = template.get("Resources", {})

    statements = {}
    for name in IDENTITY_POLICIES:
        res = resources.get(name)
        if res is None:
            errors.append(f"{name}: missing")
            continue
        statements[name] = plain(res["Properties"]["PolicyDocument"]["Statement"])
    first = next(iter(statements.items()), None)
    for name, stmts in statements.items():
        if first is not None and stmts != first[1]:
            errors.append(f"{name}: statements differ from {first[0]} (the identities must grant the same)")

    for section in ("Resources", "Outputs"):
        for name, body in template.get(section, {}).items():
            if name.startswith("Fargate") and body.get("Condition") not in FARGATE_CONDITIONS:
                errors.append(
                    f"{section}/{name}: no Condition CreateFargate: it would exist with CreateFargateService=false"
                )

    task = resources.get("FargateTaskDefinition", {}).get("Properties", {})
    containers = task.get("ContainerDefinitions", [])
    if len(containers) != 1:
        errors.append("FargateTaskDefinition: expected one container")
        return errors
    c = containers[0]
    key_env = config.get("intake", {}).get("key_env")
    secrets = [s.get("Name") for s in c.get("Secrets", [])]
    env = [e.get("Name") for e in c.get("Environment", [])]
    if key_env not in secrets:
        errors.append(
            f"FargateTaskDefinition: the intake key secret is {secrets}, but the image's configuration"
            f" reads intake.key_env = {key_env!r}"
        )
    if "ALF_INTAKE__KEY" in secrets + env:
        errors.append("FargateTaskDefinition: ALF_INTAKE__KEY with key_env in the image's configuration: two key sources")
    if "ALF_SQS__QUEUE_URL" not in env:
        errors.append("FargateTaskDefinition: no ALF_SQS__QUEUE_URL")
    grace = config.get("sqs", {}).get("shutdown_grace_seconds", 25)
    stop = c.get("StopTimeout", 30)
    if not isinstance(stop, int) or stop < grace + DRAIN_SECONDS + MARGIN_SECONDS:
        errors.append(
            f"FargateTaskDefinition: StopTimeout {stop} < sqs.shutdown_grace_seconds {grace}"
            f" + {DRAIN_SECONDS} + {MARGIN_SECONDS}: ECS would kill in-flight work"
        )
    if isinstance(stop, int) and stop > 120:
        errors.append(f"FargateTaskDefinition: StopTimeout {stop} > 120, Fargate's maximum")
    if not c.get("ReadonlyRootFilesystem"):
        errors.append("FargateTaskDefinition: ReadonlyRootFilesystem is not true")
    return errors


def self_test(template: dict, config: dict) -> list[str]:
    def res(t: dict, name: str) -> dict:
        return t["Resources"][name]

    def container(t: dict) -> dict:
        return res(t, "FargateTaskDefinition")["Properties"]["ContainerDefinitions"][0]

    defects = [
        ("task role grants more", lambda t: res(t, "FargateTaskRolePolicy")["Properties"]["PolicyDocument"]["Statement"][0]["Action"].append("sqs:SendMessage"), "statements differ"),
        ("Fargate resource without condition", lambda t: res(t, "FargateLogGroup").pop("Condition"), "FargateLogGroup"),
        ("secret in the wrong variable", lambda t: container(t)["Secrets"][0].__setitem__("Name", "ALF_INTAKE__KEY"), "two key sources"),
        ("stop timeout too short", lambda t: container(t).__setitem__("StopTimeout", 30), "StopTimeout"),
    ]
    if check(template, config):
        return ["self-test: the unmodified template does not pass"]
    failures = []
    for what, breaker, expect in defects:
        broken = plain(copy.deepcopy(template))
        breaker(broken)
        found = check(broken, config)
        if not any(expect in e for e in found):
            failures.append(f"self-test: '{what}' was not reported (got: {found or 'nothing'})")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    template, matches = decode(str(TEMPLATE))
    if matches or template is None:
        print(f"{TEMPLATE}: cannot be decoded: {matches}")
        return 1
    template = plain(template)
    config = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    problems = check(template, config)
    if args.self_test:
        problems += self_test(template, config)
    for p in problems:
        print(p)
    if not problems:
        print("cloudformation: identities identical, Fargate block conditional, task fits the image's configuration")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
