"""The simulated businesses: their phone numbers and the Flows they send (not Flow JSON definitions)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneNumber:
    """A business phone number of a WABA, as Meta names it in every webhook's metadata."""

    phone_number_id: str
    waba_id: str
    display_phone_number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BusinessFlow:
    """A Flow a simulated business sends in its messages: its id, its name and the WABA that owns it.

    Not a Flow JSON definition (that is ``contract.flowjson.FlowDefinition``); the delivery traffic only
    tags messages with it (``biz_opaque_callback_data``) and counts them per Flow in the truth.
    """

    flow_id: str
    name: str
    waba_id: str
