"""Actions for the sandbox tests: importable by name, as the sandbox's workers load them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from puraify.actions.base import Action, ActionContext
from puraify.actions.base import Output as OutputModel
from puraify.actions.base import Params as ParamsModel


class Spin(Action):
    """Burns CPU until stopped, after writing its pid where the test can see it."""

    class Params(ParamsModel):
        pid_file: str

    class Output(OutputModel):
        pass

    name = "test_spin"
    sandboxed: ClassVar = True

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        Path(params.pid_file).write_text(str(os.getpid()))
        while True:
            pass


class Hog(Action):
    """Allocates more memory than its sandbox allows."""

    class Params(ParamsModel):
        megabytes: int

    class Output(OutputModel):
        pass

    name = "test_hog"
    sandboxed: ClassVar = True

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        block = bytearray(params.megabytes * 1024 * 1024)
        return {"size": len(block)}


class Where(Action):
    """Reports the process it runs in, and whether it can reach the network."""

    class Params(ParamsModel):
        url: str = "http://127.0.0.1:9/"

    class Output(OutputModel):
        pass

    name = "test_where"
    sandboxed: ClassVar = True

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        try:
            await ctx.http.get(params.url)
            network = "reached"
        except Exception as exc:  # the sandbox has no network
            network = type(exc).__name__
        return {"pid": os.getpid(), "network": network}
