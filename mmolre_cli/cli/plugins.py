"""``mmolre plugins``: what is registered, by kind, with the plugin that provided it."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from mmolre_cli.cli.common import console, err_console, print_json, registry
from mmolre_cli.plugins import KINDS, Component


def check_components(components) -> dict[tuple[str, str], str]:
    """(kind, name) → ``ok``, ``no contract``, or why the component fails its kind's smoke check."""
    from mmolre_cli.model.pretrained import takes_pretrained
    from mmolre_cli.plugins.contracts import CONTRACTS, ContractError, smoke_check

    results = {}
    for component in components:
        try:
            smoke_check(component)
        except ContractError as error:
            results[(component.kind, component.name)] = str(error)
        else:
            checked = component.kind in CONTRACTS and not (
                component.kind == "encoder" and takes_pretrained(component.factory)
            )
            results[(component.kind, component.name)] = "ok" if checked else "no contract"
    return results


def plugins(
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check: bool = typer.Option(
        False, "--check", help="Build each component small and run it on a padded batch against its kind's contract."
    ),
) -> None:
    """List registered components by kind, with the plugin that provided each, and plugins that failed to load."""
    loaded = registry()
    checks = check_components(loaded) if check else {}
    failed = [result for result in checks.values() if result not in ("ok", "no contract")]

    def checked(component: Component) -> dict[str, str]:
        return {"check": checks[(component.kind, component.name)]} if check else {}

    if json_output:
        print_json(
            {
                "components": {
                    kind: [
                        {"name": c.name, "plugin": c.plugin, "description": c.description, **checked(c)}
                        for c in loaded
                        if c.kind == kind
                    ]
                    for kind in KINDS
                },
                "failures": [{"plugin": f.plugin, "stage": f.stage, "error": f.error} for f in loaded.failures],
            }
        )
    else:
        table = Table(title="mmolre components")
        for column in ("kind", "name", "plugin", "description", *(("check",) if check else ())):
            table.add_column(column)
        for c in loaded:
            result = checked(c).get("check")
            status = () if result is None else (result if result in ("ok", "no contract") else "failed",)
            table.add_row(c.kind, c.name, c.plugin, c.description, *status)
        console.print(table)
        for message in failed:
            err_console.print(f"[red]Contract:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
