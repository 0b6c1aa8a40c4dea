"""What a ``command`` step may not run: the one table of dangerous programs, arguments and
environment variables.

Read by the safety analysis (``mission.safety``), which reports every refusal as a finding, and
by the command guard (``runtime.guards.commands``), which refuses the step with the same
sentence: what one refuses, the other reports. Pure: strings in, a verdict out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "PRIVILEGE_PROGRAMS",
    "SHELL_PROGRAMS",
    "SYSTEM_PROGRAMS",
    "Refusal",
    "Rule",
    "env_refusal",
    "program_name",
    "refusal",
]

#: Shells: refused unless an operator sets ``command_allow_shell``; the analysis always flags them.
SHELL_PROGRAMS = frozenset(
    {
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "fish",
        "csh",
        "tcsh",
        "ash",
        "busybox",
        "powershell",
        "powershell.exe",
        "pwsh",
        "cmd",
        "cmd.exe",
    }
)
#: Programs that change privileges: never run.
PRIVILEGE_PROGRAMS = frozenset({"sudo", "su", "doas", "pkexec", "runas"})
#: Programs that administer or wreck the system: never run (``mkfs.<type>`` counts as ``mkfs``).
SYSTEM_PROGRAMS = frozenset(
    {
        "mkfs",
        "fdisk",
        "parted",
        "wipefs",
        "shred",
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
    }
)

#: The analysis finding each refusal is reported as.
Rule = Literal[
    "shell_syntax", "shell_command", "privilege_escalation", "destructive_command", "loader_hijack"
]

_SHELL_SYNTAX = re.compile(r"[;&|`$<>(){}\n*?\s]")
_ENV_REFUSED = re.compile(
    r"^(LD_|DYLD_|PYTHONSTARTUP$|PYTHONPATH$|PYTHONHOME$|PERL5OPT$|"
    r"PERL5LIB$|NODE_OPTIONS$|RUBYOPT$|BASH_ENV$|ENV$|IFS$|PATH$|"
    r"GCONV_PATH$|MALLOC_|GLIBC_TUNABLES$)"
)
# Targets that mean "everything here" (absolute paths are refused on their own).
_WIDE_TARGETS = ("~", "~/", ".", "./", "..", "*")


@dataclass(frozen=True)
class Refusal:
    """Why a command may not run: the analysis reports ``rule``, the guard refuses with
    ``message``; ``field`` names the parameter at fault."""

    rule: Rule
    message: str
    field: Literal["command", "env"] = "command"


def program_name(program: str) -> str:
    """The name the rules match: the last path component, lower-cased."""
    return program.rsplit("/", 1)[-1].lower()


def refusal(argv: Sequence[str], *, allow_shell: bool = False) -> Refusal | None:
    """Why ``argv`` (the program, then its arguments; never empty) may not run, or None."""
    program, args = argv[0], argv[1:]
    if _SHELL_SYNTAX.search(program):
        return Refusal(
            "shell_syntax",
            f"program {program!r} looks like shell syntax; put the program in `command` and "
            "each argument in `args` (no shell is ever used)",
        )
    name = program_name(program)
    if name in SHELL_PROGRAMS and not allow_shell:
        return Refusal(
            "shell_command",
            f"{name} is a shell; commands run argv-only. Call the program directly, or ask an "
            "operator to set command_allow_shell",
        )
    if name in PRIVILEGE_PROGRAMS:
        return Refusal("privilege_escalation", f"{name} changes privileges and is never run")
    if name in SYSTEM_PROGRAMS or name.startswith("mkfs."):
        return Refusal(
            "destructive_command", f"{name} administers the system and is not allowed in a mission"
        )
    message = _argument_refusal(name, args)
    return Refusal("destructive_command", message) if message else None


def _argument_refusal(name: str, args: Sequence[str]) -> str | None:
    operands = [a for a in args if not a.startswith("-")]
    if name == "rm":
        for t in operands:
            if t in _WIDE_TARGETS or t.rstrip("/") in ("", *_WIDE_TARGETS) or t.startswith("/"):
                return f"rm of {t!r} is refused; remove files inside the workspace only"
    # dd into a file is an ordinary copy; onto a device it overwrites a disk
    if name == "dd" and any(a.startswith("of=/dev/") for a in args):
        return "dd onto a device is refused"
    if name in ("chmod", "chown", "chgrp") and any(
        a in _WIDE_TARGETS or a.startswith("/") for a in operands
    ):
        return f"{name} on a system path is refused"
    if name == "kill" and any(a in ("1", "-1") for a in args):
        return "killing init or every process is refused"
    return None


def env_refusal(names: Iterable[str]) -> Refusal | None:
    """Why one of the environment variables ``names`` may not be set, or None."""
    for name in names:
        if _ENV_REFUSED.match(name):
            return Refusal(
                "loader_hijack",
                f"environment variable {name} can hijack the program and is refused",
                field="env",
            )
    return None
