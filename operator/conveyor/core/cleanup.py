"""Which of a pipeline's Jobs to delete: a finished Job once its verdict has been recorded for
`retention.finishedJobsSeconds`, and at once any Job whose Release or Rollback is gone (its uid is in
the Job's annotation). A Job is never deleted while its owner may still read it: only after the
stage (or the rollback) it served has finished, on the operator's own clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core.clusters import stage_cluster
from conveyor.core.plan import DeleteJob
from conveyor.core.world import World


def _recorded(releases: list[Release], rollbacks: list[Rollback]) -> dict[str, datetime]:
    """Job name -> when the stage or rollback it served finished (its verdict recorded)."""
    done: dict[str, datetime] = {}
    for r in releases:
        for rec in r.status.stages:
            if rec.finished_at is None:
                continue
            for name in (rec.migration_job, rec.smoke_test_job):
                if name:
                    done[name] = rec.finished_at
    for rb in rollbacks:
        st = rb.status
        if st.finished_at is None:
            continue
        for name in (st.down_migration_job, st.smoke_test_job):
            if name:
                done[name] = st.finished_at
    return done


def jobs_to_delete(
    pipeline: Pipeline, releases: list[Release], rollbacks: list[Rollback], world: World, now: datetime
) -> tuple[list[DeleteJob], float | None]:
    """The Jobs to delete now, and in how many seconds the next one is due (None: none pending)."""
    owners = {r.metadata.uid: r.metadata.name for r in releases} | {
        rb.metadata.uid: rb.metadata.name for rb in rollbacks
    }
    recorded = _recorded(releases, rollbacks)
    ttl = timedelta(seconds=pipeline.spec.retention.finished_jobs_seconds)
    out: list[DeleteJob] = []
    due: float | None = None
    for stage in pipeline.spec.stages:
        sw = world.stages.get(stage.name)
        if sw is None or sw.problem is not None:
            continue  # not observed (a cluster that cannot be seen): nothing is judged there
        for name, job in sorted(sw.jobs.items()):
            if job.release_uid is None:
                continue  # not one Conveyor made for an object it knows: never touched
            owner = owners.get(job.release_uid)
            if owner is None:
                out.append(
                    DeleteJob(
                        name,
                        sw.namespace,
                        name,
                        "its Release or Rollback no longer exists",
                        cluster=stage_cluster(stage),
                    )
                )
                continue
            finished = recorded.get(name)
            if finished is None or not job.finished:
                continue
            left = (finished + ttl - now).total_seconds()
            if left <= 0:
                out.append(
                    DeleteJob(
                        name,
                        sw.namespace,
                        name,
                        f"finished; its result was recorded in {owner} more than "
                        f"{pipeline.spec.retention.finished_jobs_seconds}s ago",
                        cluster=stage_cluster(stage),
                    )
                )
            else:
                due = left if due is None else min(due, left)
    return out, due
