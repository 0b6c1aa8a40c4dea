"""Fakes of the platforms puraify talks to, speaking their real HTTP shapes on loopback."""

from __future__ import annotations

from .google import FakeGoogle
from .notion import FakeNotion
from .oauth import FakeOAuthServer
from .slack import FakeSlack
from .zapier import FakeZapier

__all__ = ["FakeGoogle", "FakeNotion", "FakeOAuthServer", "FakeSlack", "FakeZapier"]
