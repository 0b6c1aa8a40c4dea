"""SEC-03: the command guard and the safety analysis read one table (``mission.programs``).

Every command the guard refuses is a finding of the analysis, and a command the guard runs is
none of the analysis's refusal findings; the table below is built from the shared lists.
"""

from __future__ import annotations

import json
from typing import get_args

import pytest

from puraify.actions import default_registry
from puraify.errors import GuardError
from puraify.mission.loader import load_mission
from puraify.mission.programs import (
    PRIVILEGE_PROGRAMS,
    SHELL_PROGRAMS,
    SYSTEM_PROGRAMS,
    Rule,
)
from puraify.mission.safety import analyze
from puraify.runtime.guards import CommandPolicy

REGISTRY = default_registry(entry_points=False)
REFUSAL_RULES = set(get_args(Rule))


def guard_refusal(argv: list[str], env: dict[str, str] | None = None) -> GuardError | None:
    try:
        CommandPolicy().check(argv, env or {})
    except GuardError as exc:
        return exc
    return None


def analysis_rules(argv: list[str], env: dict[str, str] | None = None, **aliases: str) -> set[str]:
    params: dict[str, object] = {"command": argv[0], "args": argv[1:]}
    if env:
        params["env"] = env
    for alias, canonical in aliases.items():
        params[alias] = params.pop(canonical)
    step = {"id": "c", "step_type": "command", "timeout_seconds": 5, "parameters": params}
    mission = load_mission(json.dumps({"steps": [step]})).mission
    return {f.rule for f in analyze(mission, REGISTRY).findings}


REFUSED: list[tuple[list[str], str]] = [
    *(([name, "-c", "id"], "shell_command") for name in sorted(SHELL_PROGRAMS)),
    *(([name, "id"], "privilege_escalation") for name in sorted(PRIVILEGE_PROGRAMS)),
    *(([name], "destructive_command") for name in sorted(SYSTEM_PROGRAMS)),
    (["/usr/bin/SUDO", "id"], "privilege_escalation"),
    (["/sbin/mkfs.ext4", "/dev/sda"], "destructive_command"),
    (["/bin/systemctl", "stop", "sshd"], "destructive_command"),
    (["rm", "-rf", "/"], "destructive_command"),
    (["rm", "-r", "~/"], "destructive_command"),
    (["rm", "./"], "destructive_command"),
    (["rm", "/tmp/x"], "destructive_command"),
    (["dd", "if=/dev/zero", "of=/dev/sda"], "destructive_command"),
    (["chmod", "-R", "777", "/"], "destructive_command"),
    (["chown", "nobody", "."], "destructive_command"),
    (["kill", "-9", "1"], "destructive_command"),
    (["kill", "-9", "-1"], "destructive_command"),
    (["echo hi && rm -rf /"], "shell_syntax"),
    (["ls;id"], "shell_syntax"),
    # wrappers are judged by what they run
    (["env", "bash", "-c", "echo x > pwned.txt"], "shell_command"),
    (["env", "-i", "A=1", "sh", "-c", "id"], "shell_command"),
    (["env", "-S", "sh -c id"], "shell_command"),
    (["env", "--split-string=bash -c id"], "shell_command"),
    (["timeout", "3", "sh", "-c", "id"], "shell_command"),
    (["timeout", "-s", "KILL", "3", "bash"], "shell_command"),
    (["nice", "-n", "5", "zsh"], "shell_command"),
    (["nohup", "setsid", "bash"], "shell_command"),
    (["xargs", "-I", "{}", "sh", "-c", "id"], "shell_command"),
    (["find", ".", "-exec", "sh", "-c", "id", ";"], "shell_command"),
    (["awk", 'BEGIN{system("id")}'], "shell_command"),
    (["rbash"], "shell_command"),
    (["runuser", "-u", "nobody", "id"], "privilege_escalation"),
    (["setpriv", "--reuid=0", "id"], "privilege_escalation"),
    (["env", "sudo", "id"], "privilege_escalation"),
    (["rm", "-rf", "../victim"], "destructive_command"),
    (["rm", "-rf", "a/../../victim"], "destructive_command"),
    # programs with options that run another program
    (["git", "-c", "alias.x=!id", "x"], "shell_command"),
    (["git", "-c", "core.pager=sh -c id", "log"], "shell_command"),
    (["git", "clone", "--upload-pack=touch pwned", "repo"], "shell_command"),
    (["git", "clone", "ext::sh -c id", "dir"], "shell_command"),
    (
        ["tar", "cf", "a.tar", "--checkpoint=1", "--checkpoint-action=exec=sh -c id", "x"],
        "shell_command",
    ),
    (["tar", "xf", "a.tar", "--to-command=sh"], "shell_command"),
    (["tar", "-Ish", "-cf", "a.tar", "b"], "shell_command"),
    (["sed", "-n", "1e id", "f.txt"], "shell_command"),
    (["sed", "s/a/b/e", "f.txt"], "shell_command"),
    (["sed", "-n", "w /tmp/out", "f.txt"], "shell_command"),
]

ALLOWED: list[list[str]] = [
    ["echo", "hi"],
    ["dd", "if=in.bin", "of=out.bin", "bs=1M"],
    ["rm", "-rf", "build"],
    ["chmod", "+x", "run.sh"],
    ["kill", "1234"],
    ["python3", "script.py"],
    ["/usr/bin/git", "status"],
    ["mkfsx"],
    ["env", "FOO=1", "python3", "x.py"],
    ["timeout", "3", "echo", "hi"],
    ["find", ".", "-name", "*.py"],
    ["awk", "{print $1}", "data.txt"],
    ["xargs", "echo"],
    ["git", "-c", "user.name=me", "commit", "-m", "x"],
    ["tar", "czf", "a.tgz", "dir"],
    ["sed", "-i", "s/a/b/g", "file.txt"],
    ["sed", "--sandbox", "-n", "/x/p", "f.txt"],
]


@pytest.mark.parametrize(
    ("argv", "rule"), REFUSED, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_what_the_guard_refuses_the_analysis_reports(argv: list[str], rule: str) -> None:
    refused = guard_refusal(argv)
    assert refused is not None and refused.code == "command_refused", argv
    assert rule in analysis_rules(argv)


@pytest.mark.parametrize("argv", ALLOWED, ids=" ".join)
def test_what_the_guard_runs_the_analysis_does_not_refuse(argv: list[str]) -> None:
    assert guard_refusal(argv) is None
    assert not analysis_rules(argv) & REFUSAL_RULES


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "DYLD_INSERT_LIBRARIES",
        "PYTHONPATH",
        "PATH",
        "BASH_FUNC_ls%%",
        "PERLLIB",
        "NODE_PATH",
    ],
)
def test_loader_hijacking_environment_refused_and_reported(name: str) -> None:
    env = {name: "/tmp/evil.so"}
    refused = guard_refusal(["echo", "x"], env)
    assert refused is not None and refused.code == "command_refused" and refused.field == "env"
    assert "loader_hijack" in analysis_rules(["echo", "x"], env)
    assert guard_refusal(["echo", "x"], {"MY_FLAG": "1"}) is None
    assert not analysis_rules(["echo", "x"], {"MY_FLAG": "1"}) & REFUSAL_RULES


def test_the_analysis_reads_the_parameter_aliases_the_step_accepts() -> None:
    assert "privilege_escalation" in analysis_rules(["sudo", "id"], program="command")
    assert "destructive_command" in analysis_rules(["rm", "/"], cmd="command", arguments="args")


def test_shells_an_operator_allows_still_count_as_a_risk() -> None:
    CommandPolicy(allow_shell=True).check(["bash", "-c", "true"], {})
    assert "shell_command" in analysis_rules(["bash", "-c", "true"])


def test_a_templated_program_is_left_to_the_guard_at_run_time() -> None:
    assert not analysis_rules(["{{ inputs.tool }}", "--version"]) & REFUSAL_RULES
