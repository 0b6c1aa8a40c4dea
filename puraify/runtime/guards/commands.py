"""The command policy (SEC-03): argv only, no shells, no privilege, no system wreckers."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

from ...errors import GuardError
from ...mission.safety import PRIVILEGE_PROGRAMS, SHELL_PROGRAMS

__all__ = ["CommandPolicy"]

_SYSTEM = frozenset(
    {
        "mkfs",
        "fdisk",
        "parted",
        "shutdown",
        "reboot",
        "halt",
        "poweroff",
        "init",
        "telinit",
        "systemctl",
        "iptables",
        "useradd",
        "userdel",
        "passwd",
        "crontab",
        "insmod",
        "rmmod",
        "modprobe",
        "mount",
        "umount",
        "swapoff",
        "wipefs",
        "shred",
    }
)
_SHELL_SYNTAX = re.compile(r"[;&|`$<>(){}\n*?\s]")
_ENV_REFUSED = re.compile(
    r"^(LD_|DYLD_|PYTHONSTARTUP$|PYTHONPATH$|PYTHONHOME$|PERL5OPT$|"
    r"PERL5LIB$|NODE_OPTIONS$|RUBYOPT$|BASH_ENV$|ENV$|IFS$|PATH$|"
    r"GCONV_PATH$|MALLOC_|GLIBC_TUNABLES$)"
)
# Targets that mean "everything here" (absolute paths are refused on their own).
_WIDE_TARGETS = ("~", "~/", ".", "./", "..", "*")


def _refuse(message: str) -> GuardError:
    return GuardError(message, code="command_refused", field="command")


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
    ) -> None:
        self.enabled = enabled
        self.allow_shell = allow_shell
        self.env_allow = tuple(env_allow)
        self.max_output_bytes = max_output_bytes
        self._base = {k: v for k, v in (base_env or {}).items() if k in self.env_allow}
        self._base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**self._base, **extra}

    def check(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        if not self.enabled:
            raise GuardError(
                "command steps are disabled here; an operator turns them on with the `command` "
                "feature flag",
                code="command_disabled",
                field="command",
            )
        if not argv or not argv[0]:
            raise _refuse("no program given")
        program = argv[0]
        if _SHELL_SYNTAX.search(program):
            raise _refuse(
                f"program {program!r} looks like shell syntax; put the program in `command` and "
                "each argument in `args` (no shell is ever used)"
            )
        base = os.path.basename(program).lower()
        if base in SHELL_PROGRAMS and not self.allow_shell:
            raise _refuse(
                f"{base} is a shell; commands run argv-only. Call the program directly, or ask an "
                "operator to set command_allow_shell"
            )
        if base in PRIVILEGE_PROGRAMS:
            raise _refuse(f"{base} changes privileges and is never run")
        if base in _SYSTEM or base.startswith("mkfs."):
            raise _refuse(f"{base} administers the system and is not allowed in a mission")
        args = [a for a in argv[1:]]
        if base == "rm":
            targets = [a for a in args if not a.startswith("-")]
            for t in targets:
                if t in _WIDE_TARGETS or t.rstrip("/") in ("", *_WIDE_TARGETS) or t.startswith("/"):
                    raise _refuse(f"rm of {t!r} is refused; remove files inside the workspace only")
        if base == "dd" and any(a.startswith("of=/dev/") for a in args):
            raise _refuse("dd onto a device is refused")
        if base in ("chmod", "chown", "chgrp") and any(
            a in _WIDE_TARGETS or a.startswith("/") for a in args if not a.startswith("-")
        ):
            raise _refuse(f"{base} on a system path is refused")
        if base == "kill" and any(a in ("1", "-1") for a in args):
            raise _refuse("killing init or every process is refused")
        for name in env:
            if _ENV_REFUSED.match(name):
                raise GuardError(
                    f"environment variable {name} can hijack the program and is refused",
                    code="command_refused",
                    field="env",
                )
