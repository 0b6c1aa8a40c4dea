"""The ``puraify`` command line (Typer + rich). One module per command group; this one holds
the root app, shared options and the error boundary."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape

from ..errors import PuraifyError
from ._shared import (
    JsonOpt,
    console,
    err_console,
    fail,
    follow,
    load_settings,
    print_result,
    with_application,
)
from .errors import EXIT_INVALID, EXIT_OK, report_error, write_json

# Heavy modules (pydantic models, httpx, Jinja2) are imported inside the commands, so that
# `puraify --help` starts fast.

if TYPE_CHECKING:
    from ..settings import SafetyLevel

__all__ = ["app", "run_app"]

_SAFETY_LEVELS = ("off", "permissive", "standard", "strict")

app = typer.Typer(
    name="puraify",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="puraify: run automation missions (YAML/JSON DAGs) and single actions, reliably and safely.",
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"puraify {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """puraify: run automation missions (YAML/JSON DAGs) and single actions, reliably and safely."""


safety_app = typer.Typer(no_args_is_help=True, help="Static safety analysis of missions.")
actions_app = typer.Typer(no_args_is_help=True, help="The catalogue of step types.")
app.add_typer(safety_app, name="safety")
app.add_typer(actions_app, name="actions")


def _register_groups() -> None:
    from .control import audit_app, engines_app, flags_app, init, platforms_app, policy_app
    from .runs import db_app, runs_app
    from .serve import serve, tokens_app
    from .vault import vault_app

    app.add_typer(runs_app, name="runs")
    app.add_typer(db_app, name="db")
    app.add_typer(tokens_app, name="tokens")
    app.command("serve")(serve)
    app.command("init")(init)
    app.add_typer(engines_app, name="engines")
    app.add_typer(platforms_app, name="platforms")
    app.add_typer(flags_app, name="flags")
    app.add_typer(policy_app, name="policy")
    app.add_typer(audit_app, name="audit")
    app.add_typer(vault_app, name="vault")


FileArg = Annotated[Path, typer.Argument(help="Mission file (YAML or JSON).", show_default=False)]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Unknown keys are errors, not warnings.")]


def _preparer(settings: Any) -> Any:
    """Validation needs the catalogue and the limits, never a runtime engine or the store."""
    from ..runtime.prepare import Preparer

    return Preparer.from_settings(settings)


def _parse_vars(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--var needs KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@app.command()
def run(
    file: Annotated[
        Path | None, typer.Argument(help="Mission file (YAML or JSON).", show_default=False)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate, plan and analyse; run nothing.")
    ] = False,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="KEY=VALUE (JSON values allowed); repeatable.")
    ] = None,
    as_json: JsonOpt = False,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", help="Directory file steps are confined to (default: current directory)."
        ),
    ] = None,
    strict: StrictOpt = False,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue run RUN_ID where its engine stopped.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Reuse the run created with this key (continue it, or show its result).",
        ),
    ] = None,
    safety_level: Annotated[
        str | None,
        typer.Option(
            "--safety-level",
            help="off, permissive, standard or strict: how strict the safety analysis the "
            "mission must pass before it runs is (default: the `safety_level` setting).",
            show_default=False,
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            help="The project whose vault credentials the steps use (default: `default`).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a mission, with a live view of its steps. Every run is recorded in the run store.

    The mission must pass the safety analysis first (`puraify safety validate` shows it); a
    failing verdict exits 2 and runs nothing, and so does `--dry-run`."""
    from .progress import LiveProgress

    if file is None and resume is None:
        raise typer.BadParameter("give a mission FILE, or --resume RUN_ID")
    if safety_level is not None and safety_level not in _SAFETY_LEVELS:
        raise typer.BadParameter(
            "--safety-level must be off, permissive, standard or strict",
            param_hint="--safety-level",
        )
    hooks = [] if as_json else [LiveProgress(console)]
    try:
        settings = load_settings(workspace)
        if resume is not None:

            async def go(app: Any) -> Any:
                await app.runs.resume(resume)
                return await follow(app, resume)

            result = with_application(settings, go, hooks=hooks)
            raise typer.Exit(print_result(result, as_json))
        assert file is not None
        variables = _parse_vars(var or [])
        preparer = _preparer(settings)
        prepared = preparer.prepare(file, strict=strict, context_names=variables)
        for warning in prepared.warnings:
            err_console.print(
                f"[yellow]warning[/] {escape(('line ' + str(warning.line) + ': ' if warning.line else '') + warning.message)}"
            )
        level = cast("SafetyLevel", safety_level or settings.safety_level)
        if dry_run:
            verdicts = _policy_preview(settings, prepared.mission)
            passed = _print_dry_run(prepared, preparer.registry, as_json, level, verdicts)
            raise typer.Exit(EXIT_OK if passed else EXIT_INVALID)
        # The mission and its compiled steps (and every module) live as long as this process:
        # keep them out of the cyclic collector's passes, which would walk them all again and
        # again while the run allocates (a third of a 10,000-step run's collector time).
        gc.freeze()

        async def start(app: Any) -> Any:
            run_id, _ = await app.runs.submit(
                prepared.compiled,
                project_id=project,
                context=variables,
                idempotency_key=idempotency_key,
                safety_level=level,
                safety=prepared.safety,
            )
            return await follow(app, run_id)

        result = with_application(settings, start, hooks=hooks)
    except PuraifyError as exc:
        raise fail(exc, as_json) from None
    raise typer.Exit(print_result(result, as_json))


def _policy_preview(settings: Any, mission: Any) -> dict[str, dict[str, Any]]:
    """Each step's verdict from Engine Control now (read, not audited); what went wrong
    asking, per step, if it could not be asked."""

    async def preview(app: Any) -> list[dict[str, Any]]:
        return await app.runs.policy_preview(mission)  # type: ignore[no-any-return]

    try:
        rows = with_application(settings, preview)
    except PuraifyError as exc:
        return {
            step.id: {"allowed": None, "reason": exc.code, "message": exc.message}
            for step in mission.steps
        }
    return {row.pop("step_id"): row for row in rows}


def _print_dry_run(
    prepared: Any,
    registry: Any,
    as_json: bool,
    level: SafetyLevel,
    verdicts: dict[str, dict[str, Any]],
) -> bool:
    """Print the plan; whether the mission passes the safety analysis at ``level``."""
    mission = prepared.mission
    steps_info = []
    for step in mission.steps:
        action = registry.get(step.step_type)
        said = verdicts.get(step.id, {})
        steps_info.append(
            {
                "id": step.id,
                "step_type": action.name,
                "platform": action.platform,
                "delivery": action.delivery,
                "depends_on": list(step.depends_on),
                "policy_check": f"{action.platform}.{action.name}",
                "policy": {k: said.get(k) for k in ("allowed", "reason", "message")},
                "credentials": [] if action.platform == "local" else [action.platform],
            }
        )
    report = prepared.safety.to_dict(level)
    if as_json:
        write_json(
            {
                "mission": mission.display_name,
                "levels": prepared.levels,
                "critical_path": prepared.critical_path,
                "steps": steps_info,
                "safety": report,
                "warnings": [w.to_dict() for w in prepared.warnings],
            }
        )
        return bool(report["passed"])
    console.print(
        f"[bold]{escape(mission.display_name)}[/]: {len(mission.steps)} steps, "
        f"max {mission.config.max_concurrent_steps} in parallel — dry run, nothing executed"
    )
    for i, level in enumerate(prepared.levels):
        console.print(
            f"  level {i}: " + ", ".join(level) + (" [dim](parallel)[/]" if len(level) > 1 else "")
        )
    console.print(f"  critical path: {' → '.join(prepared.critical_path)}")
    for info in steps_info:
        creds = ", ".join(info["credentials"]) or "none"
        said = info["policy"]
        allowed = (
            "[green]allowed[/]"
            if said["allowed"]
            else f"[red]{'denied' if said['allowed'] is False else 'unknown'}[/] ({said['reason']})"
        )
        console.print(
            f"  {info['id']}: {info['step_type']} [dim]policy {info['policy_check']}[/] "
            f"{allowed}[dim], credentials {creds}, delivery {info['delivery']}[/]"
        )
    verdict = "pass" if report["passed"] else "FAIL: `puraify run` would refuse it"
    console.print(f"  safety: score {report['score']} at level {report['level']}, {verdict}")
    for f in report["findings"]:
        console.print(
            f"    [{'red' if f['severity'] in ('high', 'critical') else 'yellow'}]{f['severity']}[/] {escape(str(f['step_id']) + ': ' + f['message'])}"
        )
    return bool(report["passed"])


@app.command()
def validate(file: FileArg, strict: StrictOpt = False, as_json: JsonOpt = False) -> None:
    """Check a mission (structure, types, parameters, templates) without running it."""
    try:
        prepared = _preparer(load_settings()).prepare(file, strict=strict)
    except PuraifyError as exc:
        raise fail(exc, as_json) from None
    if as_json:
        write_json(
            {
                "valid": True,
                "warnings": [w.to_dict() for w in prepared.warnings],
                "levels": prepared.levels,
            }
        )
    else:
        for w in prepared.warnings:
            console.print(
                f"[yellow]warning[/] {escape(('line ' + str(w.line) + ': ' if w.line else '') + w.message)}"
            )
        console.print(
            f"[green]valid[/] {escape(str(file))}: {len(prepared.mission.steps)} steps in {len(prepared.levels)} levels"
        )
    raise typer.Exit(EXIT_OK)


@safety_app.command("validate")
def safety_validate(
    file: FileArg,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            help="permissive, standard or strict (default: the `safety_level` setting, or "
            "standard when it is off).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a mission's risk; the exit code is 0 when it passes, 2 when it does not."""
    if level is not None and level not in ("permissive", "standard", "strict"):
        raise typer.BadParameter("level must be permissive, standard or strict")
    try:
        settings = load_settings()
        prepared = _preparer(settings).prepare(file)
    except PuraifyError as exc:
        raise fail(exc, as_json) from None
    if level is None:
        level = "standard" if settings.safety_level == "off" else settings.safety_level
    report = prepared.safety.to_dict(cast("SafetyLevel", level))
    if as_json:
        write_json(report)
    else:
        verdict = "[green]pass[/]" if report["passed"] else "[bold red]fail[/]"
        console.print(
            f"{verdict} {escape(str(file))}: risk score {report['score']}/100 at level {level}"
        )
        for f in report["findings"]:
            console.print(
                f"  {f['severity']:<8} {escape((f['step_id'] or '-') + ': ' + f['message'])} [dim]({f['rule']})[/]"
            )
    raise typer.Exit(EXIT_OK if report["passed"] else EXIT_INVALID)


@app.command()
def graph(
    file: FileArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid, dot or svg.")] = "mermaid",
) -> None:
    """Print the mission's DAG as Mermaid, DOT or SVG."""
    from ..mission.graph import to_dot, to_mermaid, to_svg

    renderers = {"mermaid": to_mermaid, "dot": to_dot, "svg": to_svg}
    if fmt not in renderers:
        raise typer.BadParameter("format must be mermaid, dot or svg")
    try:
        prepared = _preparer(load_settings()).prepare(file)
    except PuraifyError as exc:
        raise fail(exc, False) from None
    sys.stdout.write(renderers[fmt](prepared.mission))


@app.command()
def doctor(as_json: JsonOpt = False) -> None:
    """Check what this machine and configuration give the engine: the safety profile `serve`
    runs with, the command sandbox, the run store, disk space and the action sandbox's
    workers. Exits 1 when a check failed."""
    import asyncio

    from ..service.doctor import diagnose

    checks = asyncio.run(diagnose(load_settings()))
    failed = any(c.status == "failed" for c in checks)
    if as_json:
        write_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        colour = {"ok": "green", "warning": "yellow", "failed": "red"}
        for check in checks:
            console.print(
                f"[{colour[check.status]}]{check.status:<7}[/] [bold]{escape(check.name)}[/]: "
                f"{escape(check.detail)}"
            )
    raise typer.Exit(1 if failed else EXIT_OK)


@actions_app.command("list")
def actions_list(as_json: JsonOpt = False) -> None:
    """List every step type with its aliases, platform and delivery class."""
    from ..actions import default_registry

    registry = default_registry()
    if as_json:
        write_json(registry.catalog())
        return
    from rich.table import Table

    table = Table(title="step types")
    for col in ("name", "aliases", "platform", "delivery", "description"):
        table.add_column(col)
    for action in registry.actions():
        table.add_row(
            action.name,
            ", ".join(action.aliases),
            action.platform,
            action.delivery,
            action.description,
        )
    console.print(table)


@actions_app.command("show")
def actions_show(
    name: Annotated[str, typer.Argument(help="Step type or alias.")], as_json: JsonOpt = False
) -> None:
    """Show a step type's parameter schema, output schema and an example step."""
    from ..actions import default_registry

    registry = default_registry()
    try:
        action = registry.get(name)
    except KeyError:
        error = PuraifyError(
            f"unknown step type {name!r}; see `puraify actions list`", code="unknown_action"
        )
        raise fail(error, as_json) from None
    info = action.describe()
    if as_json:
        write_json(info)
        return
    import yaml

    console.print(f"[bold]{info['name']}[/] ({info['platform']}, {info['delivery']} delivery)")
    if info["aliases"]:
        console.print(f"aliases: {', '.join(info['aliases'])}")
    console.print(info["description"])
    console.print("\n[bold]parameters[/]")
    console.print_json(json.dumps(info["parameters"]))
    console.print("\n[bold]output[/]")
    console.print_json(json.dumps(info["output"]))
    console.print("\n[bold]example[/]")
    example = {"id": "example", "step_type": info["name"], "parameters": info["example"]}
    console.print(yaml.safe_dump([example], sort_keys=False, allow_unicode=True), markup=False)


def run_app(args: list[str] | None = None) -> None:
    """Typer on ``args`` (default: the command line), with a last-resort boundary that never
    prints a traceback (``puraify.cli.main`` is the entry point: it sets up Ctrl-C first).
    Ends with ``SystemExit`` carrying the exit code, as a process would."""
    _register_groups()
    args = sys.argv[1:] if args is None else args
    as_json = "--json" in args
    try:
        if not as_json:
            app(args=args, prog_name="puraify")
        # with --json, a usage error is the failure envelope on stdout too, not click's box
        status = app(args=args, prog_name="puraify", standalone_mode=False)
    except Exception as exc:
        usage = getattr(exc, "format_message", None)  # a usage error (click's, as Typer has it)
        if as_json and callable(usage):
            error = PuraifyError(str(usage()), code="invalid_arguments")
            sys.exit(report_error(console, error, as_json=True))
        # last resort: a structured message, never a traceback
        sys.exit(report_error(console if as_json else err_console, exc, as_json=as_json))
    sys.exit(status if isinstance(status, int) else 0)
