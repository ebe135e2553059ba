"""Probe thresholds, port resolution, and the crash-loop back-off schedule."""

from __future__ import annotations

import pytest

from kstudio_localcluster.nodeagent.containers import backoff_delay
from kstudio_localcluster.nodeagent.probes import ProbeSpec, ProbeTracker, exec_argv, resolve_port


def test_probe_spec_defaults_are_kubelets() -> None:
    spec = ProbeSpec.from_json({"httpGet": {"path": "/", "port": 80}})
    assert (spec.initial_delay, spec.period, spec.timeout) == (0.0, 10.0, 1.0)
    assert (spec.success_threshold, spec.failure_threshold) == (1, 3)
    assert set(spec.handler) == {"httpGet"}


def test_readiness_turns_false_only_after_failure_threshold_consecutive_failures() -> None:
    tracker = ProbeTracker(ProbeSpec({}, failure_threshold=3), initial=False)
    assert tracker.record(True) is True
    assert tracker.record(False) is True
    assert tracker.record(False) is True
    assert tracker.record(True) is True  # a success resets the failure count
    assert [tracker.record(False) for _ in range(3)] == [True, True, False]


def test_success_threshold_needs_consecutive_successes() -> None:
    tracker = ProbeTracker(ProbeSpec({}, success_threshold=2, failure_threshold=1), initial=False)
    assert tracker.record(True) is False
    assert tracker.record(False) is False
    assert tracker.record(True) is False
    assert tracker.record(True) is True


def test_liveness_starts_healthy() -> None:
    tracker = ProbeTracker(ProbeSpec({}, failure_threshold=2), initial=True)
    assert tracker.value is True
    assert tracker.record(False) is True and tracker.record(False) is False


def test_named_ports_resolve_from_the_container_and_unknown_names_are_errors() -> None:
    container = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port("http", container) == 8080
    assert resolve_port(9090, container) == 9090
    assert resolve_port("7070", container) == 7070
    with pytest.raises(ValueError, match="'admin' is not a named port"):
        resolve_port("admin", container)


def test_exec_probes_run_in_the_containers_namespaces_as_its_user() -> None:
    argv = exec_argv(4242, 65532, 65532, ["cat", "/tmp/ready"])
    assert argv[:3] == ["nsenter", "-t", "4242"]
    assert {"-m", "-n", "-r", "-w"} <= set(argv)
    assert argv[argv.index("-S") + 1] == "65532" and argv[-3:] == ["--", "cat", "/tmp/ready"]


def test_crash_loop_back_off_is_immediate_then_doubles_from_10s_to_5min() -> None:
    assert [backoff_delay(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
