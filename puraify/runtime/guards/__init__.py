"""Safety guards: the workspace jail (SEC-04), the SSRF transport (SEC-01), the command
policy (SEC-03), one module each.
"""

from __future__ import annotations

from .commands import CommandPolicy
from .jail import Jail
from .ssrf import SsrfPolicy, SsrfTransport

__all__ = ["CommandPolicy", "Jail", "SsrfPolicy", "SsrfTransport"]
