"""``mmolre plugins``: what is registered, by kind, with the plugin that provided it."""

from __future__ import annotations

import typer
from rich.table import Table

from mmolre_cli.cli.common import console, print_json, registry
from mmolre_cli.plugins import KINDS


def plugins(json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List registered encoders, experts, routers and fusions, and plugins that failed to load."""
    loaded = registry()
    if json_output:
        print_json(
            {
                "components": {
                    kind: [
                        {"name": c.name, "plugin": c.plugin, "description": c.description}
                        for c in loaded
                        if c.kind == kind
                    ]
                    for kind in KINDS
                },
                "failures": [{"plugin": f.plugin, "stage": f.stage, "error": f.error} for f in loaded.failures],
            }
        )
        return
    table = Table(title="mmolre components")
    for column in ("kind", "name", "plugin", "description"):
        table.add_column(column)
    for component in loaded:
        table.add_row(component.kind, component.name, component.plugin, component.description)
    console.print(table)
