"""Safety guards, one module each: the workspace jail (SEC-04, ``jail``), the SSRF transport
(SEC-01, ``ssrf``) and the command policy (SEC-03, ``commands``).

May import: ``errors``, ``mission.programs`` (the table of refused commands the safety analysis
reads too), httpx and the standard library.
Invariants: guards fail closed; every refusal is a ``GuardError`` with a stable code
(``path_outside_jail``, ``file_type_refused``, ``file_exists``, ``ssrf_blocked``,
``command_refused``, ``command_disabled``).
"""

from __future__ import annotations

from .commands import CommandPolicy
from .jail import Jail
from .ssrf import SsrfPolicy, SsrfTransport

__all__ = ["CommandPolicy", "Jail", "SsrfPolicy", "SsrfTransport"]
