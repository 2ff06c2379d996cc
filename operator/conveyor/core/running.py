"""What a stage's Deployments run right now, matched to the live releases whose images they are.

The Deployments are the truth about what runs: Conveyor sets the image and its `conveyor.dev/release`
annotation in one patch, so even when the operator was killed before it recorded the patch in the
release's status, the world says which release's image runs. Rollback plans, retention and the
Pipeline's `running` view all read it from here.
"""

from __future__ import annotations

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.core.jobs import image_ref
from conveyor.core.plan import order_key
from conveyor.core.world import StageWorld


def target_images(pipeline: Pipeline, sw: StageWorld | None) -> list[tuple[str, str, str | None]]:
    """(deployment, image, release annotation) of every target container that exists."""
    out: list[tuple[str, str, str | None]] = []
    if sw is None:
        return out
    for t in pipeline.spec.targets:
        dep = sw.deployments.get(t.deployment)
        if dep is not None and t.container in dep.images:
            out.append((t.deployment, dep.images[t.container], dep.release_annotation))
    return out


def releases_running(pipeline: Pipeline, sw: StageWorld | None, releases: list[Release]) -> set[str]:
    """Every live release whose image some target runs (several releases may name one digest)."""
    images = {image for _, image, _ in target_images(pipeline, sw)}
    return {r.metadata.name for r in releases if image_ref(pipeline, r) in images}


def release_running(pipeline: Pipeline, sw: StageWorld | None, releases: list[Release]) -> Release | None:
    """The live release whose image every target runs (None: mixed, unknown, or no targets). Of
    several releases naming that digest, the one the annotation names, else the newest."""
    targets = target_images(pipeline, sw)
    if not targets or len({image for _, image, _ in targets}) != 1:
        return None
    image = targets[0][1]
    named = [r for r in releases if image_ref(pipeline, r) == image]
    if not named:
        return None
    annotated = {annotation for _, _, annotation in targets}
    by_annotation = [r for r in named if r.metadata.name in annotated]
    return max(by_annotation or named, key=order_key)
