"""People across phone numbers and BSUIDs: the links of ``person_links`` resolved into ``person_map``.

Since Meta's business-scoped user ids (BSUIDs), one person may be named by a phone number, a BSUID and a parent
BSUID, some of them missing from any one event; a changed number or BSUID names the same person anew. Each event
carries a person key (``person_hash``: the parent BSUID, else the BSUID, else the phone number, all keyed hashes),
and ``person_links`` holds every pair of identifiers seen naming one person (filled by views from statuses, Flow
completions, preferences and Meta's identity changes). The people are the connected groups of those links; the
person of a group is its smallest identifier, so any two identifiers of one person resolve to the same value,
whatever the order the links arrived in.

:class:`PersonResolver` keeps the groups in memory. Its first pass reads every link; each later pass reads the
links written since the previous pass (with a margin for inserts in flight), merges the groups they join, and
writes the person of every identifier whose person changed; every ``full_every`` it reads every link again and
writes whatever differs from ``person_map`` (after a rebuild, or once links expired). Readers resolve a person key
with :func:`resolved_person`: an identifier without a row in ``person_map`` is its own person.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from warehouse.tables import PERSON_LINKS_TABLE, PERSON_MAP_TABLE, ROLLUP_PROGRESS_TABLE

logger = logging.getLogger(__name__)

PERSONS_RESOLVED = "persons_resolved"  # rollup_progress task: links written before this are resolved
LINK_MARGIN = timedelta(seconds=60)  # links inserted this long before a pass began are read again
FULL_EVERY = timedelta(minutes=10)

_LINKS_SINCE = f"""
SELECT DISTINCT identifier, person FROM {PERSON_LINKS_TABLE}
WHERE inserted_at >= {{since:DateTime64(3, 'UTC')}}
"""
_ALL_LINKS = f"SELECT DISTINCT identifier, person FROM {PERSON_LINKS_TABLE}"
_MAPPED = f"SELECT identifier, argMax(person, resolved_at) FROM {PERSON_MAP_TABLE} GROUP BY identifier"


def resolved_person(person_hash: str, *, alias: str = "person_map", among: str = "") -> tuple[str, str]:
    """(the JOIN that finds a person key's person, the expression of the person) for a query whose rows have the
    person key in ``person_hash`` (a column expression). The join's subquery is ``alias``; ``among`` (a subquery
    listing the person keys the query can meet) keeps it to their rows instead of every mapped identifier."""
    only = f"WHERE identifier IN ({among}) " if among else ""
    join = (f"LEFT JOIN (SELECT identifier, argMax(person, resolved_at) AS person FROM {PERSON_MAP_TABLE} "
            f"{only}GROUP BY identifier) AS {alias} ON {alias}.identifier = {person_hash}")
    return join, f"if({alias}.person = '', {person_hash}, {alias}.person)"


@dataclass(frozen=True, slots=True)
class PersonPass:
    """What one pass did: links read, identifiers whose person was (re)written, and whether it read them all."""

    links: int
    written: int
    full: bool


class People:
    """Groups of identifiers that name one person (in memory): each identifier's person is its group's smallest."""

    __slots__ = ("members", "person")

    def __init__(self) -> None:
        self.person: dict[str, str] = {}
        self.members: dict[str, list[str]] = {}

    def link(self, a: str, b: str) -> list[str]:
        """Join the groups of ``a`` and ``b``; returns the identifiers whose person changed (or is new)."""
        pa, pb = self.person.get(a), self.person.get(b)
        new = [x for x, p in ((a, pa), (b, pb)) if p is None]
        for x in new:
            self.person[x] = x
            self.members[x] = [x]
        pa, pb = self.person[a], self.person[b]
        if pa == pb:
            return new
        keep, moved = (pa, pb) if pa < pb else (pb, pa)
        members = self.members.pop(moved)
        for x in members:
            self.person[x] = keep
        self.members[keep].extend(members)
        return [*members, *(x for x in new if x not in members)]


class PersonResolver:
    """Keeps ``person_map`` equal to the groups of ``person_links``; see the module docstring."""

    def __init__(self, client: Client, *, writer: Client | None = None, full_every: timedelta = FULL_EVERY) -> None:
        """``client`` reads; ``writer`` (default: ``client``) inserts."""
        self.client = client
        self.writer = writer if writer is not None else client
        self.full_every = full_every
        self._people: People | None = None
        self._last_full: datetime | None = None
        self._last_pass: datetime | None = None

    def run_once(self, began: datetime) -> PersonPass:
        """One pass, ``began`` being the warehouse's time at its start."""
        if self._people is None or self._last_full is None or self._last_pass is None \
                or began - self._last_full >= self.full_every:
            return self._full(began)
        rows = self.client.query(_LINKS_SINCE, parameters={"since": self._last_pass - LINK_MARGIN}).result_rows
        people = self._people
        changed: dict[str, None] = {}
        for identifier, person in rows:
            for x in people.link(identifier, person):
                changed[x] = None
        self._write([(x, people.person[x]) for x in changed], began)
        self._last_pass = began
        return PersonPass(len(rows), len(changed), False)

    def _full(self, began: datetime) -> PersonPass:
        rows = self.client.query(_ALL_LINKS).result_rows
        people = People()
        for identifier, person in rows:
            people.link(identifier, person)
        mapped: dict[str, str] = {x: p for x, p in self.client.query(_MAPPED).result_rows}
        out = [(x, p) for x, p in people.person.items() if mapped.get(x) != p]
        # Identifiers no link names any more (expired, or rebuilt away) are their own person again.
        out += [(x, x) for x, p in mapped.items() if x not in people.person and p != x]
        self._write(out, began)
        self._people, self._last_full, self._last_pass = people, began, began
        if out:
            logger.info("persons: %d identifiers in %d people from %d links; %d rewritten",
                        len(people.person), len(people.members), len(rows), len(out))
        return PersonPass(len(rows), len(out), True)

    def _write(self, rows: list[tuple[str, str]], began: datetime) -> None:
        if rows:
            self.writer.insert(PERSON_MAP_TABLE, [(x, p, began) for x, p in rows],
                               column_names=["identifier", "person", "resolved_at"])
        self.writer.insert(ROLLUP_PROGRESS_TABLE, [(PERSONS_RESOLVED, began, began)],
                           column_names=["task", "until", "updated_at"])
