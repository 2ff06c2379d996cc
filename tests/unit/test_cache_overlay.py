"""The overlay of Conveyor's own writes over the watch-fed cache (handlers/cache.py): a pass never
sees data older than the last pass's writes, and never sees what Conveyor deleted — yet the watch's
copy wins as soon as it has caught up, and nothing is kept for ever."""

from __future__ import annotations

from typing import Any

from conveyor.handlers.cache import OVERLAY_SECONDS, Overlay, strip


def obj(name: str, rv: int, uid: str = "u1", phase: str = "", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "apps", "uid": uid, "resourceVersion": str(rv), **meta},
        "spec": {"pipeline": "shop"},
        "status": {"phase": phase},
    }


def anything(o: dict[str, Any]) -> bool:
    return bool(o)


def nothing(o: dict[str, Any]) -> bool:
    return not o


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_own_write_is_seen_until_the_watch_delivers_it():
    overlay = Overlay()
    stale = obj("r", 10, phase="Pending")
    overlay.wrote("releases", obj("r", 12, phase="Progressing"))
    assert overlay.resolve("releases", "apps", "r", stale)["status"]["phase"] == "Progressing"
    # The watch delivers our write: its copy wins, and the entry is done.
    delivered = obj("r", 12, phase="Progressing")
    assert overlay.resolve("releases", "apps", "r", delivered) is delivered
    assert len(overlay) == 0
    assert overlay.resolve("releases", "apps", "r", stale) is stale


def test_a_newer_change_by_someone_else_wins_over_an_own_write():
    overlay = Overlay()
    overlay.wrote("releases", obj("r", 12, phase="Progressing"))
    newer = obj("r", 15, phase="Progressing", labels={"x": "y"})
    assert overlay.resolve("releases", "apps", "r", newer) is newer


def test_an_older_answer_never_replaces_a_newer_own_write():
    overlay = Overlay()
    overlay.wrote("releases", obj("r", 14, phase="Succeeded"))
    overlay.wrote("releases", obj("r", 12, phase="Progressing"))  # answers can arrive out of order
    assert overlay.resolve("releases", "apps", "r", obj("r", 10))["status"]["phase"] == "Succeeded"


def test_a_created_object_is_listed_before_the_watch_has_it():
    overlay = Overlay()
    overlay.wrote("jobs", obj("smoke", 20, uid="j1"))
    found = overlay.created("jobs", "apps", known=[], match=anything)
    assert [o["metadata"]["name"] for o in found] == ["smoke"]
    assert overlay.created("jobs", "apps", known=["smoke"], match=anything) == []
    assert overlay.created("jobs", "other", known=[], match=anything) == []
    assert overlay.created("jobs", "apps", known=[], match=nothing) == []


def test_a_created_object_the_watch_reports_deleted_is_not_a_ghost():
    overlay = Overlay()
    overlay.wrote("jobs", obj("smoke", 20, uid="j1"))
    overlay.gone("jobs", "apps", "smoke", "j1")  # the DELETED event
    assert overlay.resolve("jobs", "apps", "smoke", None) is None
    assert len(overlay) == 0


def test_looking_up_another_pipeline_never_ends_an_entry():
    # Regression (review F1): listing pipeline cart's releases resolved shop's entry with "not
    # cached" and, as the watch had gone past it elsewhere, dropped it: shop's next pass read its
    # release as it was before its own last write and announced its steps again.
    overlay = Overlay()
    overlay.wrote("releases", obj("r2", 100, uid="u2", phase="Progressing"))
    assert overlay.created("releases", "apps", known=[], match=nothing) == []
    stale = obj("r2", 90, uid="u2", phase="Pending")
    assert overlay.resolve("releases", "apps", "r2", stale)["status"]["phase"] == "Progressing"


def test_a_deletion_outlives_the_time_limit_while_the_cache_still_holds_the_object():
    # A watch restarted after "410 Gone" never reports what was deleted in the gap: what a live
    # resync found gone stays hidden for as long as the cache still holds it.
    clock = Clock()
    overlay = Overlay(clock=clock)
    ghost = obj("r", 10, uid="u1")
    overlay.deleted("releases", "apps", "r", uid="u1")
    clock.now = OVERLAY_SECONDS * 10
    assert overlay.resolve("releases", "apps", "r", ghost) is None
    assert overlay.resolve("releases", "apps", "r", obj("r", 50, uid="u2"))["metadata"]["uid"] == "u2"


def test_a_deleted_object_is_hidden_until_the_watch_says_it_is_gone():
    overlay = Overlay()
    old = obj("smoke", 20, uid="j1")
    overlay.deleted("jobs", "apps", "smoke")
    assert overlay.resolve("jobs", "apps", "smoke", old) is None
    assert overlay.resolve("jobs", "apps", "smoke", None) is None
    assert len(overlay) == 0  # the watch caught up
    assert overlay.resolve("jobs", "apps", "smoke", old) is old


def test_a_deletion_by_uid_does_not_hide_a_new_object_of_the_same_name():
    overlay = Overlay()
    overlay.deleted("releases", "apps", "r", uid="u1")
    recreated = obj("r", 30, uid="u2")
    assert overlay.resolve("releases", "apps", "r", recreated) is recreated


def test_a_deletion_by_name_recorded_after_the_watch_said_gone_does_not_hide_a_recreation_for_ever():
    # Found by the adversarial round on Argo CD's self-heal: the DELETED event was handled before
    # the entry was made, so nothing ended it, and the Release re-created under the name stayed
    # invisible until a restart. By name only, the entry now ends with the time limit.
    clock = Clock()
    overlay = Overlay(clock=clock)
    overlay.gone("releases", "apps", "r", "u1")  # the watch was first
    overlay.deleted("releases", "apps", "r")
    recreated = obj("r", 30, uid="u2")
    assert overlay.resolve("releases", "apps", "r", recreated) is None  # not yet trusted
    clock.now = OVERLAY_SECONDS + 1
    assert overlay.resolve("releases", "apps", "r", recreated) is recreated


def test_retention_hides_the_release_it_deleted_by_uid_whatever_the_order_of_events():
    overlay = Overlay()
    overlay.gone("releases", "apps", "r", "u1")
    overlay.deleted("releases", "apps", "r", uid="u1")  # as _perform records a DeleteRelease
    assert overlay.resolve("releases", "apps", "r", obj("r", 10, uid="u1")) is None  # a stale copy
    recreated = obj("r", 30, uid="u2")
    assert overlay.resolve("releases", "apps", "r", recreated) is recreated


def test_a_write_the_watch_never_confirms_is_forgotten():
    clock = Clock()
    overlay = Overlay(clock=clock)
    overlay.wrote("releases", obj("r", 12, phase="Progressing"))
    clock.now = OVERLAY_SECONDS + 1
    stale = obj("r", 10, phase="Pending")
    assert overlay.resolve("releases", "apps", "r", stale) is stale
    assert len(overlay) == 0


def test_an_unnumbered_resource_version_trusts_the_watch():
    overlay = Overlay()
    overlay.wrote("releases", obj("r", 12, phase="Progressing"))
    odd = obj("r", 0)
    odd["metadata"]["resourceVersion"] = "not-a-number"
    assert overlay.resolve("releases", "apps", "r", odd) is odd


def test_strip_drops_what_no_decision_reads():
    body = obj(
        "web",
        5,
        managedFields=[{"manager": "kubectl"}],
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"},
    )
    body["spec"] = {"template": {"spec": {"containers": []}}, "backoffLimit": 0}
    kept = strip(body)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"keep": "me"}
    assert kept["spec"]["template"] == {"spec": {"containers": []}}
    assert strip(body, template=False)["spec"] == {"backoffLimit": 0}
    assert body["metadata"]["managedFields"]  # the watch's copy is never changed


def test_objects_of_the_same_namespace_and_name_in_two_clusters_never_collide():
    """Deployments and Jobs are keyed with their cluster, in the overlay and in the indexes: a write,
    a deletion or a Job created in one cluster is never seen as another cluster's object."""
    from conveyor.handlers.cache import Cache, conveyor_deployments, conveyor_jobs

    overlay = Overlay()
    overlay.wrote("jobs", obj("smoke", 20, uid="j1"))  # the control cluster ("")
    assert overlay.created("jobs", "apps", known=[], match=anything, cluster="other") == []
    assert [o["metadata"]["uid"] for o in overlay.created("jobs", "apps", known=[], match=anything)] == ["j1"]
    overlay.deleted("deployments", "apps", "web", cluster="other")
    there = obj("web", 7, uid="d1")
    assert overlay.resolve("deployments", "apps", "web", there) is there  # not the other one's deletion
    assert overlay.resolve("deployments", "apps", "web", there, cluster="other") is None
    overlay.gone("jobs", "apps", "smoke", "j1", cluster="other")  # another cluster's DELETED event
    assert overlay.resolve("jobs", "apps", "smoke", None) is not None

    class Body(dict[str, Any]):  # the little of kopf.Body the index functions read
        @property
        def metadata(self) -> Any:
            meta = self["metadata"]
            return type("Meta", (), {"namespace": meta["namespace"], "name": meta["name"]})()

    deployment = obj("web", 7, uid="d1")
    job = obj(
        "smoke",
        20,
        uid="j1",
        labels={"conveyor.dev/pipeline": "shop"},
        annotations={"conveyor.dev/pipeline-namespace": "team"},
    )
    (dkey,) = conveyor_deployments(Body(deployment))
    (jkey,) = conveyor_jobs(Body(job))
    assert dkey == ("", "apps", "web")
    assert jkey == ("", "apps", "team", "shop")
    cache = Cache()
    cache.overlay = Overlay()
    cache.bind({"conveyor_deployments": {dkey: [deployment]}, "conveyor_jobs": {jkey: [job]}})
    assert cache.deployment("", "apps", "web") is deployment
    assert cache.deployment("other", "apps", "web") is None
    assert cache.jobs("", "apps", "team", "shop") == [job]
    assert cache.jobs("other", "apps", "team", "shop") == []
