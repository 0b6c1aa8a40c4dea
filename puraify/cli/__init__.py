"""The command line: Typer + rich, one module per command group.

May import everything below it; nothing below ``cli`` imports Typer.
Invariant: exit codes come from ``cli.errors`` only; users never see a traceback.
"""
