"""The command policy (SEC-03): argv only, no shells, no privilege, no system wreckers.

Which programs, arguments and environment variables are refused is decided by
``mission.programs``, the table the safety analysis reads too; this module enforces it. An
operator's allow list (``command_allow``) comes first: when set, only the programs it names
run, and so must every program a wrapper would run (``env``, ``timeout``, ``xargs`` ...); the
deny list stays as the safety net under it.

Containment (``contain``): where the system allows unprivileged namespaces, a command runs as
the first process of its own PID namespace (util-linux ``unshare``): when it ends, or is
killed, every process it started ends with it, ``setsid()`` or not; without network, it also
gets a network namespace of its own, with no interface but a loopback that is down. Its memory
(data segment), CPU time and open files are capped (``prlimit``). Where namespaces are refused,
the limits still apply and the step's process group and mark are what ends its processes;
``containment()`` says which, and the engine logs it when it starts.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from ...errors import GuardError
from ...mission.programs import env_refusal, program_name, programs_run, refusal

__all__ = ["CommandPolicy", "Containment", "containment"]

Containment = Literal["namespaces", "limits", "process-group"]
_UNSHARE = ("--user", "--map-current-user", "--pid", "--fork", "--kill-child")


@functools.cache
def containment() -> Containment:
    """What this system lets the engine contain a command with (probed once per process)."""
    prlimit, unshare = shutil.which("prlimit"), shutil.which("unshare")
    if prlimit is None:
        return "process-group"
    if unshare is not None:
        try:
            probe = subprocess.run(
                [unshare, *_UNSHARE, "--net", "--", "true"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            probe = None
        if probe is not None and probe.returncode == 0:
            return "namespaces"
    return "limits"


class CommandPolicy:
    """Argv-only command execution rules: no shells, no privilege, no system wreckers,
    no loader-hijacking environment, output capped."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        allow_shell: bool = False,
        env_allow: Iterable[str] = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"),
        max_output_bytes: int = 1024 * 1024,
        base_env: Mapping[str, str] | None = None,
        allow: Iterable[str] | None = None,
        network: bool = True,
        max_memory_bytes: int | None = None,
        max_cpu_seconds: int | None = None,
        max_open_files: int | None = None,
        contain: bool = True,
    ) -> None:
        self.enabled = enabled
        # names (`git`) match the program's name; paths (`/usr/bin/git`) its path exactly
        self.allow = None if allow is None else frozenset(allow)
        self.network = network  # whether command steps may reach the network at all
        self.contained = contain
        self.limits = {
            "--data": max_memory_bytes,
            "--cpu": max_cpu_seconds,
            "--nofile": max_open_files,
        }
        self.allow_shell = allow_shell
        self.env_allow = tuple(env_allow)
        self.max_output_bytes = max_output_bytes
        self._base = {k: v for k, v in (base_env or {}).items() if k in self.env_allow}
        self._base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The environment a command gets: the allowed part of the engine's, plus ``extra``."""
        return {**self._base, **extra}

    def check(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Raise ``GuardError`` unless ``argv`` may run with the extra environment ``env``."""
        if not self.enabled:
            raise GuardError(
                "command steps are disabled here; an operator turns them on with the `command` "
                "feature flag",
                code="command_disabled",
                field="command",
            )
        if not argv or not argv[0]:
            raise GuardError("no program given", code="command_refused", field="command")
        if self.allow is not None:
            if not self.allow:
                raise GuardError(
                    "this engine runs command steps only from the operator's command_allow "
                    "list, and it lists no program",
                    code="command_refused",
                    field="command",
                )
            for inner in programs_run(list(argv)):
                program = inner[0]
                # a name matches a program found on PATH; a path must be listed as that path
                listed = (
                    program in self.allow if "/" in program else program_name(program) in self.allow
                )
                if not listed:
                    raise GuardError(
                        f"{program_name(program)} is not among the programs this engine runs "
                        "(the operator's command_allow list)",
                        code="command_refused",
                        field="command",
                    )
        found = refusal(argv, allow_shell=self.allow_shell) or env_refusal(env)
        if found is not None:
            raise GuardError(found.message, code="command_refused", field=found.field)

    @property
    def isolates_processes(self) -> bool:
        """Whether a contained command's processes all end with it (a PID namespace)."""
        return self.contained and containment() == "namespaces"

    def contain(self, argv: Sequence[str], *, network: bool) -> list[str]:
        """The command line that runs ``argv`` contained (see the module's docstring):
        ``network`` whether this step may reach the network (``GuardError`` if the operator
        does not let command steps do so)."""
        if network and not self.network:
            raise GuardError(
                "command steps have no network here (the operator's command_network setting)",
                code="command_refused",
                field="network",
            )
        mode = containment() if self.contained else "process-group"
        if mode == "process-group":
            return list(argv)
        prlimit = shutil.which("prlimit") or "prlimit"
        limits = [f"{flag}={value}" for flag, value in self.limits.items() if value is not None]
        line = [prlimit, *limits, "--"]
        if mode == "namespaces":
            unshare = shutil.which("unshare") or "unshare"
            line += [unshare, *_UNSHARE, *(() if network else ("--net",)), "--"]
        return line + list(argv)
