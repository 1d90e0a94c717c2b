"""The errors the ``flowscope`` command reports as a one-line message (exit 2) instead of a traceback."""

from __future__ import annotations

from chserver.exceptions import ServerError
from config.exceptions import RateCardError, SettingsError
from contract.exceptions import ContractError
from embedded.exceptions import SupervisorError
from flowtools.registration import RegistrationError
from warehouse.exceptions import WarehouseError

USER_ERRORS: tuple[type[Exception], ...] = (
    SettingsError, ContractError, SupervisorError, WarehouseError, ServerError, RegistrationError, RateCardError,
)
