"""Every service's registry carries the process and runtime metrics."""

from __future__ import annotations

from prometheus_client import generate_latest

from codexpool_shared.service import service_registry


def test_each_registry_has_its_own_process_and_runtime_collectors() -> None:
    first, second = service_registry(), service_registry()
    for registry in (first, second):
        text = generate_latest(registry).decode()
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
            assert f"\n{name}" in text, name
        assert registry.get_sample_value("python_gc_objects_collected_total", {"generation": "0"})
