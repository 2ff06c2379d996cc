"""Parity: is staging production's twin? A pure comparison of every stage's live objects.

Each target Deployment's pod template is reduced to a *shape*: a flat map of path -> description
that says how things are wired, never what secret values are — container names; env var names
with their source kind (literal, Secret key, ConfigMap key, field ref) and the referenced object's
kind and key; envFrom; volumes and mounts; probes; security contexts; service account; ports;
command and args; and the mechanism behind each referenced Secret (a plain Secret, or one owned by
an ExternalSecret — its store kind and remote key path, the stage name normalised — or by another
controller). Stages may differ, by design, in: URLs (stage variable values), data, scale
(replicas, resources), namespace, and the image of the promoted containers. Anything else that
differs is a difference, unless the pipeline's `parity.ignore` accepts it on the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conveyor.api.pipeline import ParityDifference, Pipeline
from conveyor.core.secrets import SecretInfo
from conveyor.core.world import World

MAX_DIFFERENCES = 50


@dataclass
class StageObjects:
    """One stage's live objects, as the parity check needs them."""

    stage: str
    namespace: str
    deployments: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # name -> pod template spec
    secrets: dict[str, SecretInfo] = field(default_factory=dict)  # name -> mechanism


def referenced_secrets(pod_spec: dict[str, Any]) -> set[str]:
    """Names of the Secrets a pod spec reads (env, envFrom, volumes)."""
    names: set[str] = set()
    for c in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref.get("name"):
                names.add(ref["name"])
        for src in c.get("envFrom") or []:
            if (src.get("secretRef") or {}).get("name"):
                names.add(src["secretRef"]["name"])
    for v in pod_spec.get("volumes") or []:
        if (v.get("secret") or {}).get("secretName"):
            names.add(v["secret"]["secretName"])
        for p in (v.get("projected") or {}).get("sources") or []:
            if (p.get("secret") or {}).get("name"):
                names.add(p["secret"]["name"])
    return names


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _normalise(text: str, stage: str, namespace: str) -> str:
    for word in sorted({namespace, stage}, key=len, reverse=True):
        if word:
            text = text.replace(word, "<stage>")
    return text


def secret_mechanism(name: str, objs: StageObjects) -> str:
    """How a Secret comes to be, with stage names normalised; never its data."""
    info = objs.secrets.get(name)
    if info is None or not info.exists:
        return "missing Secret"
    if info.owner_kind is None:
        return "plain Secret"
    if info.owner_kind == "ExternalSecret":
        keys = ",".join(sorted(_normalise(k, objs.stage, objs.namespace) for k in info.remote_keys))
        return f"ExternalSecret(store={info.store_kind or '?'} keys={keys or '?'})"
    return f"Secret owned by {info.owner_kind}"


def _env_shape(e: dict[str, Any], objs: StageObjects) -> str:
    vf = e.get("valueFrom")
    if not vf:
        return "literal"
    if "secretKeyRef" in vf:
        ref = vf["secretKeyRef"]
        return f"Secret key {ref.get('key')} via {secret_mechanism(ref.get('name', ''), objs)}"
    if "configMapKeyRef" in vf:
        return f"ConfigMap key {vf['configMapKeyRef'].get('key')}"
    if "fieldRef" in vf:
        return f"field {vf['fieldRef'].get('fieldPath')}"
    if "resourceFieldRef" in vf:
        return f"resource {vf['resourceFieldRef'].get('resource')}"
    return "valueFrom " + ",".join(sorted(vf))


def shape(
    pipeline: Pipeline, deployment: str, pod_spec: dict[str, Any], objs: StageObjects
) -> dict[str, str]:
    """The shape of one Deployment's pod template in one stage: path -> description."""
    promoted = {t.container for t in pipeline.spec.targets if t.deployment == deployment}
    out: dict[str, str] = {}
    base = f"deployment[{deployment}]"
    out[f"{base}.serviceAccountName"] = pod_spec.get("serviceAccountName") or "default"
    if pod_spec.get("securityContext"):
        out[f"{base}.securityContext"] = _canon(pod_spec["securityContext"])
    for kind in ("initContainers", "containers"):
        containers = pod_spec.get(kind) or []
        out[f"{base}.{kind}"] = ",".join(c.get("name", "") for c in containers)
        for c in containers:
            p = f"{base}.{kind}[{c.get('name')}]"
            if c.get("name") not in promoted:  # the promoted image differs while a release is in flight
                out[f"{p}.image"] = c.get("image", "")
            for key in ("command", "args"):
                if c.get(key):
                    out[f"{p}.{key}"] = _canon(
                        [_normalise(str(a), objs.stage, objs.namespace) for a in c[key]]
                    )
            for e in c.get("env") or []:
                out[f"{p}.env[{e.get('name')}]"] = _env_shape(e, objs)
            for src in c.get("envFrom") or []:
                if "secretRef" in src:
                    what = f"Secret via {secret_mechanism(src['secretRef'].get('name', ''), objs)}"
                else:
                    what = "ConfigMap"
                out[
                    f"{p}.envFrom[{src.get('prefix', '')}{'secret' if 'secretRef' in src else 'configMap'}]"
                ] = what
            for port in c.get("ports") or []:
                out[f"{p}.ports[{port.get('name') or port.get('containerPort')}]"] = (
                    f"{port.get('containerPort')}/{port.get('protocol', 'TCP')}"
                )
            for m in c.get("volumeMounts") or []:
                out[f"{p}.volumeMounts[{m.get('name')}]"] = (
                    f"{m.get('mountPath')} ro={bool(m.get('readOnly'))}"
                )
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(probe):
                    out[f"{p}.{probe}"] = _canon(c[probe])
            if c.get("securityContext"):
                out[f"{p}.securityContext"] = _canon(c["securityContext"])
    for v in pod_spec.get("volumes") or []:
        kinds = sorted(k for k in v if k != "name")
        what = ",".join(kinds)
        if v.get("secret"):
            what = f"secret via {secret_mechanism(v['secret'].get('secretName', ''), objs)}"
        out[f"{base}.volumes[{v.get('name')}]"] = what
    return out


def stage_shape(pipeline: Pipeline, objs: StageObjects) -> dict[str, str]:
    """Every target Deployment of one stage, plus the names of its variables."""
    out: dict[str, str] = {}
    stage = pipeline.stage(objs.stage)
    if stage is not None:
        out["stage.variables"] = ",".join(sorted(stage.variables))
        template_env = {
            e.name for t in (pipeline.spec.migration, pipeline.spec.smoke_test) if t for e in t.env
        }
        shadowed = sorted(set(stage.variables) & template_env)
        out["stage.overridesTemplateEnv"] = ",".join(shadowed) or "none"
    for name, pod_spec in objs.deployments.items():
        if pod_spec is not None:
            out.update(shape(pipeline, name, pod_spec, objs))
    return out


def compare(pipeline: Pipeline, stages: list[StageObjects]) -> list[ParityDifference]:
    """Differences between the first stage and each other, after the pipeline's ignore list."""
    if len(stages) < 2:
        return []
    ignore = pipeline.spec.parity.ignore
    # A Deployment missing somewhere is reported by the Ready condition (and blocks its rollout);
    # comparing it would only repeat that, path by path.
    missing = {name for o in stages for name, spec in o.deployments.items() if spec is None}
    stages = [
        StageObjects(
            o.stage, o.namespace, {n: d for n, d in o.deployments.items() if n not in missing}, o.secrets
        )
        for o in stages
    ]
    base = stages[0]
    base_shape = stage_shape(pipeline, base)
    diffs: list[ParityDifference] = []
    for other in stages[1:]:
        other_shape = stage_shape(pipeline, other)
        for path in sorted(base_shape.keys() | other_shape.keys()):
            a, b = base_shape.get(path, "absent"), other_shape.get(path, "absent")
            if a == b or any(path_matches(path, pattern) for pattern in ignore):
                continue
            diffs.append(
                ParityDifference(path=path, stage_a=base.stage, shape_a=a, stage_b=other.stage, shape_b=b)
            )
    return diffs[:MAX_DIFFERENCES]


def path_matches(path: str, pattern: str) -> bool:
    """`*` matches anything (brackets are literal, unlike fnmatch: paths are full of them).

    Matched in linear time, each literal part at its leftmost place after the one before (for `*`
    alone, leftmost is never wrong): as a regex, a pattern of many `*` (`*e*e*e…*X`, well within the
    512 characters a pattern may have) backtracks exponentially on a path with more e's than stars,
    holding the GIL — found with the hostile-input work: one such Pipeline froze the whole operator."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return path == pattern
    first, *middle, last = parts
    if len(path) < len(first) + len(last) or not path.startswith(first) or not path.endswith(last):
        return False
    at, end = len(first), len(path) - len(last)
    for part in middle:
        found = path.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True


def summary(diffs: list[ParityDifference], limit: int = 3) -> str:
    """The first differences, in one line."""
    parts = [f"{d.path}: {d.stage_a}={d.shape_a} {d.stage_b}={d.shape_b}" for d in diffs[:limit]]
    more = f" (+{len(diffs) - limit} more)" if len(diffs) > limit else ""
    return "; ".join(parts) + more


def stage_objects(pipeline: Pipeline, world: World) -> list[StageObjects]:
    """Each stage's observed Deployments and Secrets, in stage order."""
    out = []
    for stage in pipeline.spec.stages:
        sw = world.stage(stage.name, stage.namespace)
        deployments: dict[str, dict[str, Any] | None] = {}
        for t in pipeline.spec.targets:
            view = sw.deployments.get(t.deployment)
            deployments[t.deployment] = view.pod_spec if view is not None else None
        out.append(
            StageObjects(
                stage=stage.name, namespace=stage.namespace, deployments=deployments, secrets=dict(sw.secrets)
            )
        )
    return out
