"""Webhook parts about users rather than messages (section 10 of the webhook reference): marketing preferences
(field ``user_preferences``), identity changes (system messages ``user_changed_number`` / ``user_changed_user_id``,
field ``user_id_update``) and the identifiers an inbound message names its sender by.

Every identifier leaves here as a keyed hash (:mod:`ingest.identity`). A change links every identifier the user
had, and every other identifier the user has now, to the new person key (:class:`contract.events.IdentityLink`);
the warehouse joins them into one person.
"""

from __future__ import annotations

from typing import Any

from contract.events import IdentityLink, UserPreference, event_id
from contract.privacy import Pseudonymiser
from ingest.identity import Identity, identity
from ingest.payload import ParseResult, Reject, as_object, contact_of, contacts_of, list_of, phone_number_id, timestamp

# user_preferences[].value
PREFERENCE_VALUES = frozenset({"stop", "resume"})
# system.type of the system messages that change who a user is.
IDENTITY_SYSTEM_TYPES = frozenset({"user_changed_number", "user_changed_user_id"})


class PeopleParser:
    """Parses the user parts of a webhook into preferences and identity links; ``reject`` makes a rejected part."""

    def __init__(self, *, pseudonymise: Pseudonymiser, reject: Reject) -> None:
        self._hash = pseudonymise
        self._reject = reject

    def preferences(self, value: dict[str, Any], waba_id: str, received: int, where: str,
                    result: ParseResult) -> None:
        """Marketing stop / resume: one event per ``user_preferences[]`` entry, keyed on the person."""
        contacts = contacts_of(value, f"{where}.value")
        pnid = phone_number_id(value)
        for raw in list_of(value, "user_preferences", f"{where}.value", required=False):
            if not isinstance(raw, dict):
                result.rejected.append(self._reject("user preference is not an object", raw, received, waba_id,
                                                    pnid))
                continue
            occurred_at, problem = timestamp(raw.get("timestamp"), received)
            choice = raw.get("value")
            category = raw.get("category")
            if choice not in PREFERENCE_VALUES:
                problem = f"user preference with unknown value {choice!r}"
            if not isinstance(category, str) or not category.strip():
                problem = "user preference without category"
            contact = contact_of(contacts, raw.get("wa_id"), raw.get("user_id"))
            who = identity(self._hash, raw.get("wa_id") or contact.get("wa_id"),
                           raw.get("user_id") or contact.get("user_id"),
                           raw.get("parent_user_id") or contact.get("parent_user_id"))
            if not who.person_hash:
                problem = "user preference without wa_id or user_id"
            if problem or not isinstance(category, str) or not isinstance(choice, str):
                result.rejected.append(self._reject(problem, raw, received, waba_id, pnid))
                continue
            result.events.append(UserPreference(
                event_id=event_id("user_preference", waba_id, who.person_hash, category, choice, str(occurred_at)),
                waba_id=waba_id, phone_number_id=pnid, category=category.strip(), value=choice,
                detail=str(raw.get("detail") or ""), occurred_at=occurred_at, received_at_ms=received,
                phone_hash=who.phone_hash, user_id_hash=who.user_id_hash,
                parent_user_id_hash=who.parent_user_id_hash, person_hash=who.person_hash, country=who.country,
            ))

    def user_id_update(self, value: dict[str, Any], waba_id: str, entry_time: Any, received: int,
                       result: ParseResult) -> None:
        """Field ``user_id_update`` (its shape is unconfirmed, and Meta now reports BSUID changes as system
        messages): each item of ``value.user_id_update``, or the value itself, with the previous and the new ids."""
        items = value.get("user_id_update")
        if not isinstance(items, list):
            items = [value]
        pnid = phone_number_id(value)
        for raw in items:
            item = as_object(raw)
            stamp = item.get("timestamp", entry_time)
            occurred_at, problem = (received // 1000, "") if stamp is None else timestamp(stamp, received)
            old = identity(self._hash, item.get("previous_wa_id") or item.get("old_wa_id"),
                           item.get("previous_user_id") or item.get("old_user_id"),
                           item.get("previous_parent_user_id") or item.get("old_parent_user_id"))
            new = identity(self._hash, item.get("wa_id") or item.get("new_wa_id"),
                           item.get("user_id") or item.get("new_user_id"),
                           item.get("parent_user_id") or item.get("new_parent_user_id"))
            if problem or not self._change(old, new, "user_id_update", waba_id, pnid, occurred_at, received,
                                           result):
                result.rejected.append(self._reject(
                    problem or "user_id_update without both the previous and the new user id", raw, received,
                    waba_id, pnid))

    def system(self, raw: dict[str, Any], waba_id: str, pnid: str, received: int, result: ParseResult) -> None:
        """A system message (no contacts): a user changed number (a new BSUID with it) or BSUID."""
        system = as_object(raw.get("system"))
        kind = system.get("type")
        if kind not in IDENTITY_SYSTEM_TYPES or not isinstance(kind, str):
            result.ignore("message:system")
            return
        occurred_at, problem = timestamp(raw.get("timestamp"), received)
        old = identity(self._hash, raw.get("from"), system.get("previous_user_id") or raw.get("from_user_id"),
                       system.get("previous_parent_user_id"))
        new = identity(self._hash, system.get("wa_id") or system.get("new_wa_id"),
                       system.get("user_id") or system.get("new_user_id"), system.get("parent_user_id"))
        if problem or not self._change(old, new, kind, waba_id, pnid, occurred_at, received, result):
            result.rejected.append(self._reject(problem or f"{kind} system message without the previous and the "
                                                f"new identifier", raw, received, waba_id, pnid))

    def contact(self, who: Identity, waba_id: str, pnid: str, occurred_at: int, received: int,
                result: ParseResult) -> None:
        """An inbound message naming its sender by more than one identifier links them (the message itself is
        not analysed)."""
        to = who.person_hash
        for from_hash in (who.user_id_hash, who.phone_hash):
            if from_hash and from_hash != to:
                result.events.append(_link("contact", from_hash, to, waba_id, pnid, occurred_at, received,
                                           who.country))

    def _change(self, old: Identity, new: Identity, kind: str, waba_id: str, pnid: str, occurred_at: int,
                received: int, result: ParseResult) -> bool:
        """Link every identifier of ``old`` and of ``new`` to the new person key; False when either side is empty."""
        to = new.person_hash
        if not to or not old.person_hash:
            return False
        for from_hash in dict.fromkeys((old.parent_user_id_hash, old.user_id_hash, old.phone_hash,
                                        new.user_id_hash, new.phone_hash)):
            if from_hash and from_hash != to:
                result.events.append(_link(kind, from_hash, to, waba_id, pnid, occurred_at, received,
                                           new.country or old.country))
        return True


def _link(kind: str, from_hash: str, to_hash: str, waba_id: str, pnid: str, occurred_at: int, received: int,
          country: str) -> IdentityLink:
    return IdentityLink(
        event_id=event_id("identity_link", waba_id, kind, from_hash, to_hash), waba_id=waba_id,
        phone_number_id=pnid, kind=kind, from_hash=from_hash, to_hash=to_hash, occurred_at=occurred_at,
        received_at_ms=received, country=country,
    )
