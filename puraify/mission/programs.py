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
    "programs_run",
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
        "rbash",
        "rksh",
        "mksh",
        "yash",
        "posh",
        "oksh",
        "loksh",
        "elvish",
        "xonsh",
        "nu",
        # they run their argument through a shell
        "watch",
        "script",
    }
)
#: Programs that change privileges, users or namespaces: never run.
PRIVILEGE_PROGRAMS = frozenset(
    {
        "sudo",
        "sudoedit",
        "su",
        "doas",
        "pkexec",
        "runas",
        "runuser",
        "setpriv",
        "capsh",
        "setcap",
        "chroot",
        "nsenter",
        "unshare",
        "systemd-run",
        "machinectl",
    }
)
#: Programs that run another program given in their arguments: what they run is judged.
#: Value: options that take a separate value, and how many operands precede the program.
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "nohup": (frozenset(), 0),
    "setsid": (frozenset(), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e", "--input", "--output", "--error"}), 0),
    "ionice": (frozenset({"-c", "--class", "-n", "--classdata", "-p", "--pid"}), 0),
    "chrt": (frozenset(), 1),
    "taskset": (frozenset(), 1),
    "time": (frozenset({"-f", "--format", "-o", "--output"}), 0),
    "xargs": (
        frozenset(
            {"-a", "--arg-file", "-d", "--delimiter", "-E", "-e", "-I", "-i", "-L", "-l"}
            | {"-n", "--max-args", "-P", "--max-procs", "-s", "--max-chars"}
        ),
        0,
    ),
    "flock": (frozenset({"-w", "--timeout", "-E", "--conflict-exit-code"}), 1),
    "strace": (frozenset({"-e", "-o", "-p", "-s", "-u"}), 0),
    "ltrace": (frozenset({"-e", "-o", "-p", "-s", "-u"}), 0),
    "catchsegv": (frozenset(), 0),
    "command": (frozenset(), 0),
    "exec": (frozenset(), 0),
    "busybox": (frozenset(), 0),
}
_AWKS = frozenset({"awk", "gawk", "mawk", "nawk", "busybox-awk"})
# git settings and options that name a program git runs (through a shell, often)
_GIT_EXEC_KEYS = re.compile(
    r"^(alias\.|core\.(pager|editor|sshcommand|fsmonitor|hookspath|askpass|gitproxy)$|"
    r"diff\.external$|diff\..*\.(command|textconv)$|merge\..*\.driver$|pager\.|filter\.|"
    r"sequence\.editor$|credential\.helper$|gpg\.(.*\.)?program$|uploadpack\.|"
    r"remote\..*\.(uploadpack|receivepack|proxy|vcs)$|protocol\.|url\.|include\.|includeif\.)",
    re.IGNORECASE,
)
_GIT_EXEC_OPTIONS = ("--upload-pack", "--receive-pack", "--exec", "--config-env", "-u", "--ssh")
# tar options that run a program
_TAR_EXEC_OPTIONS = (
    "--to-command",
    "--checkpoint-action",
    "--use-compress-program",
    "--rsh-command",
    "--rmt-command",
    "--info-script",
    "--new-volume-script",
    "-I",
    "-F",
)
# sed scripts with e (run a command), r/R/w/W (files anywhere) or s///e, s///w
_SED_ESCAPE = re.compile(
    r"(^|[;\n{}]|\d|\$|/)\s*[eEwWrR](\s|$)|s(.).*?\3.*?\3[gpIiMm0-9]*[ew]",
)
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
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
    r"^(LD_|DYLD_|PYTHONSTARTUP$|PYTHONPATH$|PYTHONHOME$|PYTHONUSERBASE$|PYTHONINSPECT$|"
    r"PERL5OPT$|PERL5LIB$|PERLLIB$|PERL5DB$|NODE_OPTIONS$|NODE_PATH$|RUBYOPT$|RUBYLIB$|"
    r"LUA_INIT|LUA_PATH|LUA_CPATH|BASH_ENV$|BASH_FUNC_|ENV$|IFS$|PATH$|SHELLOPTS$|BASHOPTS$|"
    r"PS4$|PROMPT_COMMAND$|GCONV_PATH$|MALLOC_|GLIBC_TUNABLES$|GIT_EXEC_PATH$|GIT_SSH|"
    r"GIT_CONFIG|GIT_PAGER$|GIT_EDITOR$|GIT_EXTERNAL_DIFF$|GIT_ASKPASS$|GIT_PROXY_COMMAND$|"
    r"TAR_OPTIONS$|PAGER$|EDITOR$|VISUAL$|LESSOPEN$|LESSCLOSE$|MANPAGER$|BROWSER$|"
    r"SSH_ASKPASS$|JAVA_TOOL_OPTIONS$|_JAVA_OPTIONS$|JDK_JAVA_OPTIONS$)",
    re.IGNORECASE,
)
# awk programs that reach a shell: system(...), print | "cmd", "cmd" | getline
_AWK_SHELL = re.compile(r"system\s*\(|\|\s*\"|\"\s*\|\s*getline|\|&")
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
    """Why ``argv`` (the program, then its arguments; never empty) may not run, or None.

    A wrapper (``env``, ``timeout``, ``nice``, ``xargs``, ``find -exec``, ...) is judged by
    what it runs as well, so ``env sh -c ...`` is a shell like ``sh -c ...`` is."""
    for inner in programs_run(list(argv)):
        found = _refusal(inner, allow_shell=allow_shell)
        if found is not None:
            return found
    return None


def programs_run(argv: list[str], depth: int = 0) -> list[list[str]]:
    """``argv`` and every command line its wrappers would run."""
    out = [argv]
    if depth > 8 or not argv:
        return out
    name = program_name(argv[0])
    args = argv[1:]
    if name in _WRAPPERS:
        valued, operands = _WRAPPERS[name]
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                i += 1
                break
            if name == "env" and "=" in arg and not arg.startswith("-"):
                i += 1  # NAME=value
                continue
            if not arg.startswith("-") or arg == "-":
                break
            if name == "env" and (arg == "-S" or arg.startswith("--split-string")):
                # `env -S "sh -c ..."` splits one argument into a command line
                if arg == "-S":
                    split, rest = (args[i + 1] if i + 1 < len(args) else ""), args[i + 2 :]
                else:
                    split, rest = arg.partition("=")[2], args[i + 1 :]
                return out + programs_run(split.split() + rest, depth + 1)
            i += 2 if arg in valued else 1
        i += operands
        if i < len(args):
            out += programs_run(args[i:], depth + 1)
    elif name == "find":
        for i, arg in enumerate(args):
            if arg in _FIND_EXEC and i + 1 < len(args):
                end = next((j for j in range(i + 1, len(args)) if args[j] in (";", "+")), len(args))
                out += programs_run(args[i + 1 : end], depth + 1)
    return out


def _refusal(argv: Sequence[str], *, allow_shell: bool) -> Refusal | None:
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
    escape = None if allow_shell else _program_escape(name, args)
    if escape is not None:
        return Refusal(
            "shell_command",
            f"{name} {escape} runs another program (a shell, often); call the program directly, "
            "or ask an operator to set command_allow_shell",
        )
    if name in _AWKS and not allow_shell and any(_AWK_SHELL.search(a) for a in args):
        return Refusal(
            "shell_command",
            f"{name} program runs shell commands (system(), pipes); call the program directly, "
            "or ask an operator to set command_allow_shell",
        )
    message = _argument_refusal(name, args)
    return Refusal("destructive_command", message) if message else None


def _program_escape(name: str, args: Sequence[str]) -> str | None:
    """The option of ``name`` (git, tar, sed) that would make it run another program."""
    if name == "git":
        for i, arg in enumerate(args):
            key = None
            if arg == "-c" and i + 1 < len(args):
                key = args[i + 1].partition("=")[0]
            elif arg.startswith("-c") and len(arg) > 2:
                key = arg[2:].partition("=")[0]
            if key is not None and _GIT_EXEC_KEYS.match(key):
                return f"setting {key}"
            if arg.split("=", 1)[0] in _GIT_EXEC_OPTIONS or arg.startswith("ext::"):
                return f"option {arg.split('=', 1)[0]}"
    if name in ("tar", "gtar", "bsdtar"):
        for arg in args:
            option = arg.split("=", 1)[0]
            if option in _TAR_EXEC_OPTIONS or (
                len(option) > 2 and option[:2] in ("-I", "-F") and not option.startswith("--")
            ):
                return f"option {option}"
    if name in ("sed", "gsed") and "--sandbox" not in args:
        for arg in args:
            if not arg.startswith("-") and _SED_ESCAPE.search(arg):
                return "script (an e, r or w command; run sed with --sandbox)"
    return None


def _argument_refusal(name: str, args: Sequence[str]) -> str | None:
    operands = [a for a in args if not a.startswith("-")]
    if name == "rm":
        for t in operands:
            if (
                t in _WIDE_TARGETS
                or t.rstrip("/") in ("", *_WIDE_TARGETS)
                or t.startswith("/")
                or ".." in t.replace("\\", "/").split("/")
            ):
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
