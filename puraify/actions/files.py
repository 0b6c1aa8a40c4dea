"""File steps, all confined to the workspace jail (SEC-04): ``create_file``, ``edit_file``,
``delete_file``, ``copy_file``, ``move_file``, ``read_file``, ``list_directory``, ``file_search``.

Parameter names follow RustChain's spec (``path``, ``content``, ``source``, ``destination``) and
accept the names its code and examples use (``file_path``, ``src``, ``dest``...).
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
from typing import Any, ClassVar, Literal, Self

from pydantic import AliasChoices, Field, model_validator

from ..errors import ActionError, GuardError
from .base import Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .regex import user_regex

__all__ = [
    "CopyFile",
    "CreateFile",
    "DeleteFile",
    "EditFile",
    "FileSearch",
    "ListDirectory",
    "MoveFile",
    "ReadFile",
]

_PATH = AliasChoices("path", "file_path", "file", "filename")
_SOURCE = AliasChoices("source", "src", "from", "source_path")
_DEST = AliasChoices("destination", "dest", "to", "destination_path", "target")


def _not_found(path: str) -> ActionError:
    return ActionError(
        f"{path!r} does not exist in the workspace", code="file_not_found", field="path"
    )


class CreateFile(Action):
    """Write ``content`` to ``path`` (parents created), replacing it unless ``overwrite: false``."""

    class Params(ParamsModel):
        path: str = Field(validation_alias=_PATH)
        content: str = ""
        overwrite: bool = True
        create_dirs: bool = True
        encoding: Literal["utf-8", "base64"] = "utf-8"

    class Output(OutputModel):
        path: str
        bytes: int

    name = "create_file"
    aliases = ("write_file",)
    delivery: ClassVar = "idempotent"
    description = "Create (or replace) a file in the workspace."
    example: ClassVar = {"path": "reports/summary.md", "content": "# Summary\n"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        data = (
            base64.b64decode(params.content)
            if params.encoding == "base64"
            else params.content.encode()
        )
        mode = "w" if params.overwrite else "x"
        try:
            with ctx.workspace.open(params.path, mode, create_dirs=params.create_dirs) as fh:
                fh.write(data)
        except FileExistsError:
            raise ActionError(
                f"{params.path!r} exists; set overwrite: true to replace it", code="file_exists"
            ) from None
        except FileNotFoundError:
            raise ActionError(
                f"the directory of {params.path!r} does not exist", code="file_not_found"
            ) from None
        return {"path": ctx.workspace.display(params.path), "bytes": len(data)}


class EditFile(Action):
    """Change a file: ``append``, ``prepend``, ``replace`` (``find`` -> ``replace``) or
    ``overwrite``, optionally keeping a ``.bak`` copy first.

    Without ``operation`` (the RustChain spec's form ``{path, content, append, backup}``):
    ``append: true`` appends, a ``find`` replaces, and otherwise ``content`` replaces the
    whole file."""

    class Params(ParamsModel):
        path: str = Field(validation_alias=_PATH)
        operation: Literal["append", "prepend", "replace", "overwrite", "write"] | None = None
        append: bool | None = None
        content: str | None = None
        find: str | None = Field(
            default=None, validation_alias=AliasChoices("find", "search", "old", "pattern")
        )
        replace: str | None = Field(
            default=None, validation_alias=AliasChoices("replace", "replacement", "new")
        )
        regex: bool = False
        count: int = Field(default=0, ge=0)
        backup: bool = False
        create: bool = False

        @model_validator(mode="after")
        def _operation(self) -> Self:
            # decided when the mission is validated, not when the step runs
            if self.operation is None:
                implied = (
                    "append" if self.append else "replace" if self.find is not None else "overwrite"
                )
                object.__setattr__(self, "operation", implied)  # a frozen model, set once here
            elif self.append and self.operation != "append":
                raise ValueError(f"append: true contradicts operation {self.operation!r}")
            if self.operation == "replace" and self.find is None:
                raise ValueError("operation replace needs `find`")
            return self

    class Output(OutputModel):
        path: str
        bytes: int
        replacements: int
        backup: str | None

    name = "edit_file"
    sandboxed: ClassVar = True
    aliases = ("modify_file", "append_file")
    delivery: ClassVar = "unsafe"  # append is not idempotent
    description = "Append to, prepend to, search-and-replace in or overwrite a workspace file."
    example: ClassVar = {"path": "notes.md", "operation": "append", "content": "\n- done\n"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        ws = ctx.workspace
        exists = ws.exists(params.path)
        if not exists and not (
            params.create or params.operation in ("append", "overwrite", "write")
        ):
            raise _not_found(params.path)
        old = b""
        if exists:
            with ws.open(params.path, "r") as fh:
                old = fh.read(ctx.limit("file_max_read_bytes", 10 * 1024 * 1024) + 1)
            if len(old) > ctx.limit("file_max_read_bytes", 10 * 1024 * 1024):
                raise ActionError(f"{params.path!r} is too large to edit", code="file_too_large")
        text = old.decode("utf-8", "replace")
        replacements = 0
        content = params.content or ""
        if params.operation == "append":
            new = text + content
        elif params.operation == "prepend":
            new = content + text
        elif params.operation in ("overwrite", "write"):
            new = content
        else:
            if params.find is None:
                raise ActionError(
                    "operation replace needs `find`", code="invalid_parameters", field="find"
                )
            replacement = params.replace if params.replace is not None else content
            if params.regex:
                pattern = user_regex(params.find, field="find")
                new, replacements = pattern.subn(replacement, text, count=params.count)
            else:
                replacements = text.count(params.find)
                if params.count:
                    replacements = min(replacements, params.count)
                new = text.replace(params.find, replacement, params.count or -1)
        backup = None
        if params.backup and exists:
            backup = f"{ws.display(params.path)}.bak"
            with ws.open(backup, "w") as fh:
                fh.write(old)
        data = new.encode()
        with ws.open(params.path, "w", create_dirs=True) as fh:
            fh.write(data)
        return {
            "path": ws.display(params.path),
            "bytes": len(data),
            "replacements": replacements,
            "backup": backup,
        }


class DeleteFile(Action):
    """Delete a file, or a directory tree with ``recursive: true``."""

    class Params(ParamsModel):
        path: str = Field(validation_alias=_PATH)
        recursive: bool = False
        missing_ok: bool = False

    class Output(OutputModel):
        path: str
        deleted: int

    name = "delete_file"
    aliases = ("remove_file",)
    delivery: ClassVar = "idempotent"
    description = "Delete a file (or a directory with recursive: true) in the workspace."
    example: ClassVar = {"path": "tmp/scratch.txt", "missing_ok": True}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        try:
            deleted = ctx.workspace.unlink(params.path, recursive=params.recursive)
        except FileNotFoundError:
            if not params.missing_ok:
                raise _not_found(params.path) from None
            deleted = 0
        return {"path": ctx.workspace.display(params.path), "deleted": deleted}


class _TwoPaths(ParamsModel):
    source: str = Field(validation_alias=_SOURCE)
    destination: str = Field(validation_alias=_DEST)
    overwrite: bool = True


class _TwoPathsOut(OutputModel):
    source: str
    destination: str


class CopyFile(Action):
    """Copy a file inside the workspace."""

    Params = _TwoPaths

    class Output(_TwoPathsOut):
        bytes: int

    name = "copy_file"
    delivery: ClassVar = "idempotent"
    description = "Copy a file inside the workspace."
    example: ClassVar = {"source": "data.csv", "destination": "backup/data.csv"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        ws = ctx.workspace
        try:
            size = await asyncio.to_thread(
                ws.copy,
                params.source,
                params.destination,
                overwrite=params.overwrite,
                create_dirs=True,
            )
        except FileNotFoundError:
            raise _not_found(params.source) from None
        except FileExistsError:
            raise ActionError(f"{params.destination!r} exists", code="file_exists") from None
        return {
            "source": ws.display(params.source),
            "destination": ws.display(params.destination),
            "bytes": size,
        }


class MoveFile(Action):
    """Move or rename a file or directory inside the workspace."""

    Params = _TwoPaths
    Output = _TwoPathsOut

    name = "move_file"
    aliases = ("rename_file",)
    delivery: ClassVar = "unsafe"
    description = "Move or rename a file inside the workspace."
    example: ClassVar = {"source": "draft.md", "destination": "final.md"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        ws = ctx.workspace
        try:
            ws.rename(params.source, params.destination, overwrite=params.overwrite)
        except FileNotFoundError:
            raise _not_found(params.source) from None
        return {"source": ws.display(params.source), "destination": ws.display(params.destination)}


class ReadFile(Action):
    """Read a file (text, or base64 for binary), capped at ``max_bytes``."""

    class Params(ParamsModel):
        path: str = Field(validation_alias=_PATH)
        encoding: Literal["utf-8", "base64"] = "utf-8"
        max_bytes: int | None = Field(default=None, gt=0)

    class Output(OutputModel):
        path: str
        content: str
        size: int
        truncated: bool

    name = "read_file"
    delivery: ClassVar = "idempotent"
    description = "Read a workspace file's content."
    example: ClassVar = {"path": "config/settings.json"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        cap = params.max_bytes or ctx.limit("file_max_read_bytes", 10 * 1024 * 1024)
        try:
            with ctx.workspace.open(params.path, "r") as fh:
                data = fh.read(cap + 1)
        except FileNotFoundError:
            raise _not_found(params.path) from None
        truncated = len(data) > cap
        data = data[:cap]
        content = (
            base64.b64encode(data).decode()
            if params.encoding == "base64"
            else data.decode("utf-8", "replace")
        )
        return {
            "path": ctx.workspace.display(params.path),
            "content": content,
            "size": len(data),
            "truncated": truncated,
        }


class ListDirectory(Action):
    """List a directory's entries (name, type, size), optionally recursively."""

    class Params(ParamsModel):
        path: str = Field(default=".", validation_alias=_PATH)
        recursive: bool = False
        include_hidden: bool = True

    class Output(OutputModel):
        path: str
        entries: list[dict[str, Any]]
        count: int

    name = "list_directory"
    aliases = ("list_dir", "ls")
    delivery: ClassVar = "idempotent"
    description = "List the entries of a workspace directory."
    example: ClassVar = {"path": "reports", "recursive": True}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        ws = ctx.workspace
        if not ws.is_dir(params.path):
            raise ActionError(
                f"{params.path!r} is not a directory in the workspace", code="file_not_found"
            )
        cap = ctx.limit("file_search_max_results", 1000)
        raw = ws.walk(params.path, max_entries=cap) if params.recursive else ws.scandir(params.path)
        entries = [
            {"name": name, "type": kind, "size": size}
            for name, kind, size in raw
            if params.include_hidden or not name.rsplit("/", 1)[-1].startswith(".")
        ]
        return {"path": ws.display(params.path), "entries": entries, "count": len(entries)}


class FileSearch(Action):
    """Find files by name glob and/or content (substring or regex), recursively, capped."""

    class Params(ParamsModel):
        path: str = Field(default=".", validation_alias=AliasChoices("path", "directory", "root"))
        pattern: str = Field(
            default="*", validation_alias=AliasChoices("pattern", "name", "glob", "name_pattern")
        )
        content: str | None = Field(
            default=None, validation_alias=AliasChoices("content", "contains", "query", "text")
        )
        regex: bool = False
        case_sensitive: bool = True
        recursive: bool = True
        max_results: int = Field(default=100, gt=0, le=10_000)

    class Output(OutputModel):
        matches: list[dict[str, Any]]
        count: int
        truncated: bool
        skipped: int = 0  # files the jail would not open (engine state, hard links): not read

    name = "file_search"
    sandboxed: ClassVar = True
    aliases = ("search_files", "find_files")
    delivery: ClassVar = "idempotent"
    description = "Search workspace files by name glob and content."
    example: ClassVar = {"path": "src", "pattern": "*.py", "content": "TODO"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        return await asyncio.to_thread(self._search, params, ctx)

    def _search(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        ws = ctx.workspace
        matcher: Any = None
        if params.content is not None:
            matcher = user_regex(
                params.content,
                field="content",
                ignore_case=not params.case_sensitive,
                literal=not params.regex,
            )
        scan_cap = ctx.limit("file_search_max_results", 1000) * 10
        entries = (
            ws.walk(params.path, max_entries=scan_cap)
            if params.recursive
            else [(n, k, s) for n, k, s in ws.scandir(params.path)]
        )
        read_cap = ctx.limit("file_max_read_bytes", 10 * 1024 * 1024)
        base = ws.display(params.path)
        matches: list[dict[str, Any]] = []
        truncated = False
        skipped = 0
        for rel, kind, size in entries:
            if kind != "file" or not fnmatch.fnmatch(rel.rsplit("/", 1)[-1], params.pattern):
                continue
            full = rel if base == "." else f"{base}/{rel}"
            if matcher is None:
                matches.append({"path": full, "size": size})
            else:
                try:
                    with ws.open(full, "r") as fh:
                        text = fh.read(read_cap).decode("utf-8", "replace")
                except GuardError:
                    skipped += (
                        1  # a file the jail will not open (engine state, a link): not searched
                    )
                    continue
                for lineno, line in enumerate(text.splitlines(), 1):
                    if matcher.search(line):
                        matches.append({"path": full, "line": lineno, "text": line[:500]})
                        if len(matches) >= params.max_results:
                            break
            if len(matches) >= params.max_results:
                truncated = True
                break
        return {
            "matches": matches,
            "count": len(matches),
            "truncated": truncated,
            "skipped": skipped,
        }
