"""``noop`` and ``log_message``: steps that do nothing but report."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field

from .base import Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel

__all__ = ["LogMessage", "Noop"]


class Noop(Action):
    """Does nothing and succeeds; echoes ``message`` (useful for joins and tests)."""

    class Params(ParamsModel):
        message: str | None = None

    class Output(OutputModel):
        message: str | None = None

    name = "noop"
    description = "Do nothing and succeed; echo `message`."
    delivery: ClassVar = "idempotent"
    example: ClassVar = {"message": "all branches joined"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        return {"message": params.message}


class LogMessage(Action):
    """Writes a line to the engine's structured log and returns it."""

    class Params(ParamsModel):
        message: str = Field(validation_alias=AliasChoices("message", "text", "msg"))
        level: Literal["debug", "info", "warning", "error"] = "info"

    class Output(OutputModel):
        message: str
        level: str

    name = "log_message"
    aliases = ("log", "log.message")
    description = "Write `message` to the engine log at `level`."
    delivery: ClassVar = "idempotent"
    example: ClassVar = {"message": "order {{ context.order_id }} shipped", "level": "info"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        getattr(ctx.logger, params.level)(
            "mission_log", message=params.message, step_id=ctx.step_id
        )
        return {"message": params.message, "level": params.level}
