"""Shipped test helpers: real servers on loopback (a scriptable recording sink, a canary
listener, a fake OAuth2 authorization server), used by puraify's own tests, its benchmarks and its demo.

May import anything in the package; nothing in the package imports it.
Invariant: every server binds 127.0.0.1 only.
"""

from __future__ import annotations

from .asgi import Lifespan
from .fakes import FakeGoogle, FakeNotion, FakeOAuthServer, FakeSlack, FakeZapier
from .servers import CanaryListener, LocalServer, RecordedRequest, RecordingSink, Reply

__all__ = [
    "CanaryListener",
    "FakeGoogle",
    "FakeNotion",
    "FakeOAuthServer",
    "FakeSlack",
    "FakeZapier",
    "Lifespan",
    "LocalServer",
    "RecordedRequest",
    "RecordingSink",
    "Reply",
]
