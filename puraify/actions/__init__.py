"""Actions: the step types a mission can use, one module per platform or family.

May import: ``errors``, ``mission`` (parsing helpers), pydantic, httpx (types only; the client
comes from ``ActionContext``). Never imports ``runtime``: the guards actions use are ports
declared in ``base`` and implemented by the runtime.
Invariant: an action does I/O only through its ``ActionContext``.
"""

from __future__ import annotations

from .base import Action, ActionContext, Delivery, Output, Params
from .command import Command
from .core import LogMessage, Noop
from .data import CsvProcess, ParseJson, ParseXml, ParseYaml, ValidateSchema
from .database import CreateRecord
from .email import SendEmail
from .files import (
    CopyFile,
    CreateFile,
    DeleteFile,
    EditFile,
    FileSearch,
    ListDirectory,
    MoveFile,
    ReadFile,
)
from .google import AppendRow, CreateEvent
from .http import Http
from .notion import CreatePage, CreateTask
from .redis import RedisGet, RedisSet
from .registry import ActionRegistry
from .slack import SendMessage
from .webhook import TriggerZap, WebhookCall

__all__ = [
    "BUILTIN_ACTIONS",
    "Action",
    "ActionContext",
    "ActionRegistry",
    "Delivery",
    "Output",
    "Params",
    "default_registry",
]

BUILTIN_ACTIONS: tuple[type[Action], ...] = (
    Noop,
    LogMessage,
    Command,
    Http,
    CreateFile,
    EditFile,
    DeleteFile,
    CopyFile,
    MoveFile,
    ReadFile,
    ListDirectory,
    FileSearch,
    ParseJson,
    ParseYaml,
    ParseXml,
    ValidateSchema,
    CsvProcess,
    SendMessage,
    WebhookCall,
    TriggerZap,
    CreatePage,
    CreateTask,
    SendEmail,
    CreateEvent,
    AppendRow,
    RedisSet,
    RedisGet,
    CreateRecord,
)


def default_registry(*, entry_points: bool = True) -> ActionRegistry:
    """A registry of every built-in action, plus those installed packages publish."""
    registry = ActionRegistry(cls() for cls in BUILTIN_ACTIONS)
    if entry_points:
        registry.load_entry_points()
    return registry
