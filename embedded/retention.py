"""Retention for the durable embedded broker: removes tansu's record objects from its S3 store.

tansu 0.6 on S3 stores every produced batch as one object (``.../partitions/<p>/records/<offset>.batch``),
lists every one of them on every fetch, and deletes none (its ``delete_records`` is unimplemented and
topic retention settings are ignored). Left alone, fetches get slower for ever. This process applies
the retention tansu does not, every ``broker_retention_interval_s``:

- **consumed**: an object is removed once every consumer group that committed an offset on its partition
  has committed past its last record (the next object starts at or below the committed offset) and it is
  older than ``broker_retention_consumed_s``. Our stream workers commit only after the warehouse insert,
  so what is removed is already stored;
- **time**: an object older than ``broker_retention_s`` is removed whether consumed or not (Kafka's
  ``retention.ms``);
- **size**: while a partition holds more than ``broker_retention_bytes``, its oldest objects are removed
  (Kafka's ``retention.bytes``).

It also bounds SeaweedFS's own bookkeeping: its filer logs every metadata change (each object written or
removed) to files under ``/topics/.system/log/<day>/<HH-MM>.<filer>``, one a minute (about 7 MB a minute at
1,500 events/s), for metadata subscribers (replication, which the embedded broker does not run) and
removes none. Log files older than ``broker_retention_meta_log_s`` are removed.

The newest object of a partition is always kept, as Kafka keeps the active segment. A consumer that asks
for an offset whose object is gone gets the next object that exists, as Kafka's consumers skip deleted
segments. Each sweep reports objects and bytes per topic, and what it removed, as Prometheus metrics.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - parses our own loopback S3's listings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import orjson
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from config.settings import Settings

logger = logging.getLogger(__name__)

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_RECORD = re.compile(r"^clusters/([^/]+)/topics/([^/]+)/partitions/(\d+)/records/(\d+)\.batch$")
_COMMIT = re.compile(r"^clusters/([^/]+)/groups/consumers/([^/]+)/offsets/([^/]+)/partitions/(\d+)\.json$")

# The filer writes one metadata log file a minute: sweeping it every few sweeps is enough.
META_LOG_INTERVAL_S = 30.0

OBJECTS = Gauge("flowscope_broker_record_objects", "Record objects the durable broker holds, by topic.", ["topic"])
BYTES = Gauge("flowscope_broker_record_bytes", "Bytes of record objects the durable broker holds, by topic.",
              ["topic"])
REMOVED = Counter("flowscope_broker_retention_removed_objects_total",
                  "Objects removed by retention, by reason (consumed, time, size: record objects; meta_log: "
                  "SeaweedFS's metadata change log files).", ["reason"])
META_LOG_BYTES = Gauge("flowscope_broker_meta_log_bytes",
                       "Bytes of SeaweedFS's metadata change log the durable broker's store keeps.")
SWEEP_SECONDS = Histogram("flowscope_broker_retention_sweep_duration_seconds", "Time of one retention sweep.",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
SWEEP_FAILURES = Counter("flowscope_broker_retention_sweep_failures_total",
                         "Retention sweeps that failed (the S3 store unreachable or answering errors).")


@dataclass(frozen=True, order=True)
class RecordObject:
    """One produced batch as tansu stores it: the offset of its first record, its size and write time."""

    offset: int
    key: str = field(compare=False)
    size: int = field(compare=False)
    modified: float = field(compare=False)  # Unix seconds


@dataclass
class Inventory:
    """Record objects per (cluster, topic, partition), oldest first, and committed offsets per group."""

    records: dict[tuple[str, str, int], list[RecordObject]]
    committed: dict[tuple[str, str, int], dict[str, int]]

    def objects(self) -> int:
        return sum(len(objects) for objects in self.records.values())

    def bytes(self) -> int:
        return sum(o.size for objects in self.records.values() for o in objects)

    def by_topic(self) -> dict[str, tuple[int, int]]:
        """(objects, bytes) per topic."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (_, topic, _), objects in self.records.items():
            totals[topic][0] += len(objects)
            totals[topic][1] += sum(o.size for o in objects)
        return {topic: (n, size) for topic, (n, size) in totals.items()}


@dataclass(frozen=True)
class Policy:
    """When a record object may go (see the module docstring)."""

    retention_s: float
    retention_bytes: int
    consumed_after_s: float

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(retention_s=settings.broker_retention_s, retention_bytes=settings.broker_retention_bytes,
                   consumed_after_s=settings.broker_retention_consumed_s)

    def removable(self, objects: list[RecordObject], committed: dict[str, int], *,
                  now: float) -> list[tuple[RecordObject, str]]:
        """The objects of one partition (oldest first) to remove, each with its reason."""
        if len(objects) < 2:
            return []
        keep_last = objects[-1]
        floor = min(committed.values()) if committed else None
        chosen: dict[int, str] = {}
        for current, following in zip(objects, objects[1:], strict=False):
            if floor is not None and following.offset <= floor and now - current.modified >= self.consumed_after_s:
                chosen[current.offset] = "consumed"
            elif now - current.modified >= self.retention_s:
                chosen[current.offset] = "time"
        held = sum(o.size for o in objects if o.offset not in chosen)
        for current in objects:
            if held <= self.retention_bytes or current is keep_last:
                break
            if current.offset not in chosen:
                chosen[current.offset] = "size"
                held -= current.size
        return [(o, chosen[o.offset]) for o in objects if o.offset in chosen]


class S3Bucket:
    """The few S3 calls retention needs, against the embedded SeaweedFS (loopback, no credentials)."""

    def __init__(self, endpoint: str, bucket: str, *, timeout_s: float = 10.0) -> None:
        self.base = f"{endpoint.rstrip('/')}/{bucket}"
        self.http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def list(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """(key, size, modified) of every object under ``prefix``, page after page."""
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                params["continuation-token"] = token
            answer = self.http.get(self.base, params=params)
            answer.raise_for_status()
            root = ET.fromstring(answer.content)  # noqa: S314 - our own loopback S3
            for item in root.iter(f"{_NS}Contents"):
                key = item.findtext(f"{_NS}Key") or ""
                size = int(item.findtext(f"{_NS}Size") or 0)
                stamp = item.findtext(f"{_NS}LastModified") or "1970-01-01T00:00:00Z"
                yield key, size, datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            if (root.findtext(f"{_NS}IsTruncated") or "false") != "true":
                return
            token = root.findtext(f"{_NS}NextContinuationToken")
            if not token:
                return

    def get(self, key: str) -> bytes:
        answer = self.http.get(f"{self.base}/{key}")
        answer.raise_for_status()
        return answer.content

    def delete(self, key: str) -> None:
        answer = self.http.delete(f"{self.base}/{key}")
        if answer.status_code not in (200, 204, 404):
            answer.raise_for_status()


class FilerLog:
    """SeaweedFS's metadata change log, through its filer's HTTP API (loopback, no credentials)."""

    ROOT = "/topics/.system/log"

    def __init__(self, endpoint: str, *, timeout_s: float = 10.0) -> None:
        self.http = httpx.Client(base_url=endpoint.rstrip("/"), timeout=timeout_s,
                                 headers={"Accept": "application/json"})

    def close(self) -> None:
        self.http.close()

    def entries(self, directory: str) -> Iterator[tuple[str, int, float, bool]]:
        """(path, size, modified, is a directory) of each entry of ``directory``, page after page."""
        last = ""
        while True:
            answer = self.http.get(f"{directory}/", params={"limit": "1000", "lastFileName": last})
            if answer.status_code == 404:
                return
            answer.raise_for_status()
            listing = orjson.loads(answer.content)
            found = listing.get("Entries") or []
            for entry in found:
                is_directory = bool(entry.get("Mode", 0) & 0x80000000)  # Go's os.ModeDir
                yield entry["FullPath"], int(entry.get("FileSize") or 0), _go_time(entry["Mtime"]), is_directory
            if not listing.get("ShouldDisplayLoadMore") or not found:
                return
            last = listing.get("LastFileName") or found[-1]["FullPath"].rsplit("/", 1)[-1]

    def delete(self, path: str) -> None:
        answer = self.http.delete(path, params={"recursive": "true"})
        if answer.status_code not in (200, 202, 204, 404):
            answer.raise_for_status()

    def sweep(self, keep_s: float, *, now: float | None = None) -> tuple[int, int]:
        """Remove log files older than ``keep_s`` (and emptied days); returns (files removed, bytes kept)."""
        now = time.time() if now is None else now
        removed = kept = 0
        for day, _, _, is_directory in list(self.entries(self.ROOT)):
            if not is_directory:
                continue
            left = 0
            for path, size, modified, _ in list(self.entries(day)):
                if now - modified > keep_s:
                    self.delete(path)
                    removed += 1
                else:
                    kept += size
                    left += 1
            if not left and day.rsplit("/", 1)[-1] < time.strftime("%Y-%m-%d", time.gmtime(now - keep_s)):
                self.delete(day)  # a past day with nothing left
        return removed, kept


def _go_time(text: str) -> float:
    """Unix seconds of a Go RFC 3339 time with up to nanoseconds ("2026-12-01T02:50:28.274314905Z")."""
    text = text.replace("Z", "+00:00")
    if "." in text:
        whole, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{whole}.{rest[:min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(text).timestamp()


def inventory(bucket: S3Bucket) -> Inventory:
    """Every record object and every committed offset in the store."""
    records: dict[tuple[str, str, int], list[RecordObject]] = defaultdict(list)
    commits: list[tuple[str, str, str, int]] = []
    for key, size, modified in bucket.list("clusters/"):
        if match := _RECORD.match(key):
            cluster, topic, partition, offset = match.groups()
            records[(cluster, topic, int(partition))].append(RecordObject(int(offset), key, size, modified))
        elif match := _COMMIT.match(key):
            cluster, group, topic, partition = match.groups()
            commits.append((key, group, f"{cluster}\0{topic}", int(partition)))
    committed: dict[tuple[str, str, int], dict[str, int]] = defaultdict(dict)
    for key, group, where, partition in commits:
        cluster, topic = where.split("\0")
        offset = int(orjson.loads(bucket.get(key)).get("offset", -1))
        if offset >= 0:
            committed[(cluster, topic, partition)][group] = offset
    for objects in records.values():
        objects.sort()
    return Inventory(records=dict(records), committed=dict(committed))


def sweep(bucket: S3Bucket, policy: Policy, *, now: float | None = None) -> tuple[Inventory, dict[str, int]]:
    """One pass: remove what the policy allows; the inventory left and the objects removed by reason."""
    now = time.time() if now is None else now
    found = inventory(bucket)
    removed: dict[str, int] = defaultdict(int)
    for where, objects in found.records.items():
        doomed = policy.removable(objects, found.committed.get(where, {}), now=now)
        for obj, reason in doomed:
            bucket.delete(obj.key)
            removed[reason] += 1
        if doomed:
            gone = {obj.offset for obj, _ in doomed}
            found.records[where] = [o for o in objects if o.offset not in gone]
    return found, dict(removed)


def run(settings: Settings, *, endpoint: str, bucket_name: str, filer: str = "",
        stop: threading.Event | None = None) -> None:
    """Sweep every ``broker_retention_interval_s`` until ``stop`` is set (SIGTERM/SIGINT set it); the filer's
    metadata log (when ``filer`` is given) at most every ``META_LOG_INTERVAL_S``."""
    stop = stop or threading.Event()
    policy = Policy.of(settings)
    bucket = S3Bucket(endpoint, bucket_name)
    meta_log = FilerLog(filer) if filer else None
    meta_swept = 0.0
    if settings.broker_metrics_port:
        start_http_server(settings.broker_metrics_port, addr="127.0.0.1")
    logger.info("broker retention on %s: consumed after %.0f s, time %.0f s, size %d bytes per partition",
                endpoint, policy.consumed_after_s, policy.retention_s, policy.retention_bytes)
    seen_topics: set[str] = set()
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                found, removed = sweep(bucket, policy)
            except (httpx.HTTPError, ET.ParseError, ValueError) as exc:
                SWEEP_FAILURES.inc()
                logger.warning("retention sweep failed (%s); retrying", exc)
            else:
                for reason, n in removed.items():
                    REMOVED.labels(reason).inc(n)
                by_topic = found.by_topic()
                for topic in seen_topics - by_topic.keys():
                    OBJECTS.labels(topic).set(0)
                    BYTES.labels(topic).set(0)
                for topic, (n, size) in by_topic.items():
                    OBJECTS.labels(topic).set(n)
                    BYTES.labels(topic).set(size)
                seen_topics |= by_topic.keys()
                if meta_log is not None and started - meta_swept >= META_LOG_INTERVAL_S:
                    files, kept = meta_log.sweep(settings.broker_retention_meta_log_s)
                    REMOVED.labels("meta_log").inc(files)
                    META_LOG_BYTES.set(kept)
                    meta_swept = started
                SWEEP_SECONDS.observe(time.monotonic() - started)
            stop.wait(max(0.0, settings.broker_retention_interval_s - (time.monotonic() - started)))
    finally:
        bucket.close()
        if meta_log is not None:
            meta_log.close()


def main(settings: Settings, *, endpoint: str, bucket_name: str, filer: str = "") -> int:
    """The ``flowscope broker retention`` process: sweeps until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per S3 request otherwise
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(settings, endpoint=endpoint, bucket_name=bucket_name, filer=filer, stop=stop)
    return 0
