"""The people each hour's messages went to, as exact sets: ``person_hour_sets``, kept by the rollup.

Distinct people over 30 days at 100M events means resolving and hashing tens of millions of recipients per query.
Instead every person (what :func:`warehouse.identity.resolved_person` resolves a person key to) gets a dense
number in ``person_ids``, and each hour of ``message_rows`` gets the set of the numbers its messages went to, as a
compressed bitmap (``groupBitmap``), split four ways (:data:`LEVELS`) so that any filter of business numbers and
countries is a union of sets. A union of bitmaps is exact: distinct people over a range are the size of the union
of its hours' sets, and the people of the rest of the range (read row by row) are counted against it by number.

The message pass (:class:`warehouse.message_hours.MessageRollup`) calls :meth:`PersonSets.run` with every hour it
summed again, before it records its progress; the pass adds the hours of every person key whose person changed
(``person_map``) since the previous pass, found through ``person_key_hours``. For each such hour it numbers the
people not numbered yet, then writes the hour's sets (the rollup inserts data, never queries: the numbers go in as
arrays, and a view turns them into bitmaps). Readers treat the hours of a key whose person changed after the pass
like the hours of a touched message: they resolve them row by row (:func:`warehouse.message_hours.message_persons`).

Numbers are given by one writer at a time (the rollup, or a rebuild, which the rollup waits for): two writers
numbering the same person at once would give it two numbers, and count it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from clickhouse_connect.driver.client import Client

from warehouse.identity import resolved_person
from warehouse.tables import (
    MESSAGE_ROWS_TABLE,
    PERSON_HOUR_INPUT_TABLE,
    PERSON_HOUR_SETS_TABLE,
    PERSON_IDS_TABLE,
    PERSON_KEY_HOURS_TABLE,
    PERSON_MAP_TABLE,
)

logger = logging.getLogger(__name__)

# What a set is split by: 0 nothing, 1 recipient country, 2 business number, 3 both (over rows with the number
# and the country as ``number`` and ``recipient_country``).
LEVELS = "[(0, '', ''), (1, '', recipient_country), (2, number, ''), (3, number, recipient_country)]"
KEY_COLUMNS = ("hour", "level", "phone_number_id", "country")
HOURS_PER_CHUNK = 24  # hours numbered and set per query


def level_of(*, countries: bool, phone_numbers: bool) -> int:
    """The level whose sets answer a filter (or a grouping) by countries and/or business numbers."""
    return (1 if countries else 0) | (2 if phone_numbers else 0)


def remapped_hours_sql(since: str) -> str:
    """The hours (with repeats) holding a message to a person key whose person was written to ``person_map`` at or
    after ``since`` (an SQL expression), found through ``person_key_hours``."""
    return (f"SELECT hour FROM {PERSON_KEY_HOURS_TABLE} WHERE key_hash IN ("
            f"SELECT cityHash64(identifier) FROM {PERSON_MAP_TABLE} WHERE resolved_at >= {since})")


def person_rows_sql(which: str) -> str:
    """One row per resolved message (``message_rows`` FINAL, the hours satisfying ``which``) that names a person:
    hour, phone_number_id, country, person (its person key resolved through ``person_map``), last_at."""
    join, person = resolved_person("r.person_hash", alias="pm", among=(
        f"SELECT person_hash FROM {MESSAGE_ROWS_TABLE} WHERE ({which}) AND person_hash != ''"))
    return f"""
        SELECT r.hour AS hour, r.phone_number_id AS phone_number_id, r.country AS country, {person} AS person,
               r.last_at AS last_at
        FROM (SELECT hour, phone_number_id, country, person_hash, last_at FROM {MESSAGE_ROWS_TABLE} FINAL
              WHERE ({which}) AND person_hash != '') AS r
        {join}
    """


def numbered_sql(rows: str, *, among: str = "") -> str:
    """``rows`` (a query with a ``person`` column) with each person's number as ``id`` (0: not numbered yet);
    ``among``: a query listing the people of ``rows`` (default: ``rows`` themselves), that keeps the lookup of
    numbers to theirs."""
    return f"""
        SELECT p.*, i.id AS id FROM ({rows}) AS p
        LEFT JOIN (SELECT person, min(id) AS id FROM {PERSON_IDS_TABLE}
                   WHERE person IN ({among or f"SELECT person FROM ({rows})"}) GROUP BY person) AS i
            ON i.person = p.person
    """


def sets_sql(which: str, aggregate: str) -> str:
    """The sets of the hours satisfying ``which``: key columns, ``aggregate`` of the numbers, latest status time."""
    return f"""
        SELECT hour, k.1 AS level, k.2 AS phone_number_id, k.3 AS country, {aggregate}, max(last_at) AS last_at
        FROM (SELECT hour, phone_number_id AS number, country AS recipient_country, id, last_at
              FROM ({numbered_sql(person_rows_sql(which))}))
        ARRAY JOIN {LEVELS} AS k
        GROUP BY hour, level, phone_number_id, country
    """


class PersonSets:
    """Numbers people and writes the sets of hours; see the module docstring."""

    def __init__(self, client: Client, *, writer: Client | None = None) -> None:
        """``client`` reads; ``writer`` (default: ``client``) inserts."""
        self.client = client
        self.writer = writer if writer is not None else client

    def remapped_hours(self, since: datetime) -> set[datetime]:
        """The hours with a message to a person key whose person was written to ``person_map`` since ``since``."""
        since_parameter = "{since:DateTime64(3, 'UTC')}"
        rows = self.client.query(f"SELECT DISTINCT hour FROM ({remapped_hours_sql(since_parameter)})",
                                 parameters={"since": since}).result_rows
        return {_naive(hour) for (hour,) in rows}

    def run(self, hours: Iterable[datetime], began: datetime, *, remapped_since: datetime | None) -> int:
        """Write the sets of ``hours`` and of the hours of person keys remapped since ``remapped_since`` (None: no
        such hours, every hour being among ``hours``), numbering their new people first; returns the hours set."""
        todo = set(hours)
        if remapped_since is not None:
            todo |= self.remapped_hours(remapped_since)
        ordered = sorted(todo)
        numbered = 0
        for i in range(0, len(ordered), HOURS_PER_CHUNK):
            chunk = {"hours": ordered[i:i + HOURS_PER_CHUNK]}
            which = "hour IN {hours:Array(DateTime('UTC'))}"
            numbered += self._number(which, chunk)
            self._write(which, chunk, began)
        if numbered:
            logger.info("rollup: %d people numbered, %d hours of people set", numbered, len(ordered))
        return len(ordered)

    def _number(self, which: str, parameters: dict[str, list[datetime]]) -> int:
        """Give a number to every person of the hours who has none yet; returns how many."""
        new = [person for (person,) in self.client.query(
            f"SELECT DISTINCT person FROM ({numbered_sql(person_rows_sql(which))}) WHERE id = 0",
            parameters=parameters).result_rows]
        if new:
            base = int(self.client.command(f"SELECT max(id) FROM {PERSON_IDS_TABLE}"))  # type: ignore[arg-type]
            self.writer.insert(PERSON_IDS_TABLE, [(person, base + k) for k, person in enumerate(sorted(new), 1)],
                               column_names=["person", "id"])
        return len(new)

    def _write(self, which: str, parameters: dict[str, list[datetime]], computed_at: datetime) -> None:
        """Write the hours' sets; a key an hour had and no longer has gets a deleted row."""
        rows = self.client.query(sets_sql(which, "groupUniqArray(id) AS ids"), parameters=parameters).result_rows
        keys = {tuple(row[:len(KEY_COLUMNS)]) for row in rows}
        gone = [key for key in self.client.query(
            f"SELECT {', '.join(KEY_COLUMNS)} FROM {PERSON_HOUR_SETS_TABLE} FINAL WHERE {which}",
            parameters=parameters).result_rows if tuple(key) not in keys]
        out = [(*row, computed_at, 0) for row in rows]
        out += [(*key, [], key[0], computed_at, 1) for key in gone]
        if out:
            self.writer.insert(PERSON_HOUR_INPUT_TABLE, out,
                               column_names=[*KEY_COLUMNS, "ids", "last_at", "computed_at", "is_deleted"])


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def rebuild_statements(moment: str) -> list[tuple[str, str]]:
    """(what, statement) pairs, as the admin, that number every person of ``message_rows`` not numbered yet and set
    every hour again (``moment``: the rebuild's time, an SQL expression)."""
    return [
        (f"{PERSON_IDS_TABLE} ← {MESSAGE_ROWS_TABLE} (people not numbered yet)",
         f"INSERT INTO {PERSON_IDS_TABLE} (person, id) "
         f"SELECT person, (SELECT max(id) FROM {PERSON_IDS_TABLE}) + row_number() OVER (ORDER BY person) "
         f"FROM (SELECT DISTINCT person FROM ({numbered_sql(person_rows_sql('1'))}) WHERE id = 0)"),
        (f"{PERSON_HOUR_SETS_TABLE}: empty it", f"TRUNCATE TABLE {PERSON_HOUR_SETS_TABLE}"),
        (f"{PERSON_HOUR_SETS_TABLE} ← {MESSAGE_ROWS_TABLE} (every hour)",
         f"INSERT INTO {PERSON_HOUR_SETS_TABLE} ({', '.join(KEY_COLUMNS)}, persons, last_at, computed_at, is_deleted) "
         f"SELECT *, {moment}, 0 FROM ({sets_sql('1', 'groupBitmapState(id) AS persons')})"),
    ]
