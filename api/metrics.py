"""Prometheus metrics, collected from the views at scrape time (nothing to keep in sync)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.diskuse import DiskUsage
from ledger.store.writer import Ledger
from projections.views import Views

if TYPE_CHECKING:
    from executors.replica import Replicator

STATUSES = ("pending", "running", "completed", "failed", "cancelled")


class Scraped(Protocol):
    """What a scrape reads of the server (the composition root, ``api.runtime``, handed in by the app)."""

    ledger: Ledger[Views]
    disk_usage: DiskUsage
    replica: Replicator | None


class LedgerCollector(Collector):
    def __init__(self, runtime: Scraped) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        views = self.runtime.ledger.views
        # A published snapshot (Ledger.views): nothing changes it while a scrape iterates.
        users, nodes_now = list(views.users.values()), list(views.nodes.values())
        jobs = GaugeMetricFamily("gpuledger_jobs", "Jobs by status", labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], sum(getattr(u, status) for u in users))
        yield jobs
        yield GaugeMetricFamily("gpuledger_queue_length", "Jobs queued for dispatch", value=len(views.queued))
        nodes = GaugeMetricFamily("gpuledger_nodes", "Nodes by state", labels=["state"])
        for state in ("up", "down", "draining", "restarting"):
            nodes.add_metric([state], sum(1 for n in nodes_now if n.status == state))
        yield nodes
        yield CounterMetricFamily(
            "gpuledger_ledger_position", "Last committed ledger position", value=self.runtime.ledger.head
        )
        yield CounterMetricFamily(
            "gpuledger_ledger_commit_batches", "Group commits since start", value=self.runtime.ledger.batches
        )
        store = self.runtime.ledger.store
        yield CounterMetricFamily(
            "gpuledger_ledger_events_appended", "Events appended since start", value=store.appended
        )
        spent = CounterMetricFamily(
            "gpuledger_ledger_write_seconds",
            "Writer time since start by phase: decide (decide steps, checks, rows, hash, fold), insert,"
            " projections (rows and snapshots), commit (fsync)",
            labels=["phase"],
        )
        for phase, seconds in store.spent.items():
            spent.add_metric([phase], seconds)
        yield spent
        yield from disk_gauges(self.runtime)
        replica = self.runtime.replica
        if replica is not None and replica.lag_s is not None:
            yield GaugeMetricFamily(
                "gpuledger_replica_lag_seconds",
                "How far the replica may be behind the ledger (Litestream's newest file at the target vs the -wal)",
                value=replica.lag_s,
            )


def disk_gauges(runtime: Scraped) -> Iterator[Metric]:
    """The last figures the disk-usage thread measured (none before its first pass)."""
    use = runtime.disk_usage.latest
    if use is None:
        return
    disk = GaugeMetricFamily(
        "gpuledger_disk_bytes",
        "Disk use in bytes (measured every 30 s): ledger file, blobs, job work folders; free on the ledger's disk",
        labels=["part"],
    )
    for part in ("ledger", "blobs", "workdirs", "free"):
        disk.add_metric([part], getattr(use, f"{part}_bytes"))
    yield disk


def metrics_registry(runtime: Scraped) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(LedgerCollector(runtime))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
