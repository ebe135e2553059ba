"""The console's watch-fed cache: what a LIST and each watch event do to it, the revision a page polls, and
the bounds (Events per namespace, fields nobody shows)."""

from __future__ import annotations

from typing import Any

from kstudio_console.cache import ENDPOINT, EVENT, EXPERIMENT, KINDS, TRAINED_MODEL, ObjectCache, event_time


def obj(name: str, namespace: str = "a", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, **extra}, "spec": {}}


def test_a_list_fills_the_cache_and_watch_events_keep_it_current() -> None:
    cache = ObjectCache()
    cache.replace("trainedmodels", "", [obj("m2"), obj("m1"), obj("x", "b")])
    assert [o["metadata"]["name"] for o in cache.objects(TRAINED_MODEL, "a")] == ["m1", "m2"]
    assert cache.count(TRAINED_MODEL, "b") == 1 and cache.namespaces() == ["a", "b"]
    assert ("trainedmodels", "") in cache.synced

    cache.apply("trainedmodels", "ADDED", obj("m3"))
    changed = obj("m1")
    changed["status"] = {"phase": "Ready"}
    cache.apply("trainedmodels", "MODIFIED", changed)
    cache.apply("trainedmodels", "DELETED", obj("m2"))
    cache.apply("trainedmodels", "DELETED", obj("x", "b"))
    assert [o["metadata"]["name"] for o in cache.objects(TRAINED_MODEL, "a")] == ["m1", "m3"]
    assert (cache.get(TRAINED_MODEL, "a", "m1") or {})["status"] == {"phase": "Ready"}
    assert cache.get(TRAINED_MODEL, "b", "x") is None and cache.namespaces() == ["a"]


def test_a_namespaced_list_replaces_only_its_namespace() -> None:
    cache = ObjectCache()
    cache.replace("experiments", "a", [obj("e1")])
    cache.replace("experiments", "b", [obj("e2", "b")])
    cache.replace("experiments", "a", [])  # listed again after a 410: e1 is gone
    assert cache.objects(EXPERIMENT, "a") == [] and cache.count(EXPERIMENT, "b") == 1


def test_each_change_moves_its_namespace_revision_and_no_other() -> None:
    cache = ObjectCache()
    cache.replace("endpoints", "", [obj("ep", "a"), obj("ep", "b")])
    a, b = cache.revision("a"), cache.revision("b")
    assert a > 0 and b > 0
    cache.apply("endpoints", "MODIFIED", obj("ep", "a"))
    assert cache.revision("a") > max(a, b) and cache.revision("b") == b
    cache.apply("endpoints", "BOOKMARK", obj("", ""))
    cache.apply("endpoints", "DELETED", obj("never-seen", "b"))  # nothing changed
    assert cache.revision("b") == b
    assert cache.revision("unknown") == 0


def test_fields_no_page_shows_are_not_kept() -> None:
    cache = ObjectCache()
    big = obj(
        "ep",
        managedFields=[{"manager": "kubectl"}],
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}", "kstudio.io/model": "m1"},
    )
    cache.apply("endpoints", "ADDED", big)
    kept = cache.get(ENDPOINT, "a", "ep") or {}
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"kstudio.io/model": "m1"}
    assert "managedFields" in big["metadata"]  # the watch's object is not changed in place


def test_events_per_namespace_are_bounded_keeping_the_newest() -> None:
    cache = ObjectCache(max_events=10)
    for i in range(25):
        event = obj(f"e{i:02d}")
        event["lastTimestamp"] = f"2026-12-01T10:00:{i:02d}Z"
        cache.apply("events", "ADDED", event)
    kept = sorted(o["metadata"]["name"] for o in cache.objects(EVENT, "a"))
    assert 9 <= len(kept) <= 10 and kept[-1] == "e24" and "e00" not in kept


def test_event_time_falls_back_to_what_the_event_has() -> None:
    assert event_time({"lastTimestamp": "2026-12-01T10:00:00Z"}) == "2026-12-01T10:00:00Z"
    assert event_time({"eventTime": "2026-12-01T10:00:01.5Z"}) == "2026-12-01T10:00:01.5Z"
    assert event_time({"metadata": {"creationTimestamp": "2026-12-01T09:00:00Z"}}) == "2026-12-01T09:00:00Z"


def test_the_console_watches_no_secrets_and_only_kstudio_pods_and_services() -> None:
    assert "secrets" not in {k.plural for k in KINDS}
    selectors = {k.plural: k.selector for k in KINDS}
    assert selectors["pods"] == "app.kubernetes.io/name=kstudio"
    assert selectors["services"] == "app.kubernetes.io/component=scorer"
    assert all(selectors[p] is None for p in ("experiments", "trainedmodels", "webservices", "endpoints"))
