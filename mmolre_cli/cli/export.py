"""``mmolre export``: hand a canonical file to other toolkits in their own format."""

from __future__ import annotations

from pathlib import Path

import typer

from mmolre_cli.cli.common import console, user_errors
from mmolre_cli.cli.help import App
from mmolre_cli.cli.prepare import check_out

export_app = App(help="Export a canonical HDF5 file to another toolkit's format.", no_args_is_help=True)


@export_app.command("mmsa")
@user_errors
def mmsa(
    file: Path = typer.Argument(..., help="Canonical HDF5 file with text, audio and vision."),
    out: Path = typer.Option(..., help="Output pickle (MMSA's aligned_50.pkl / unaligned_50.pkl layout)."),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Write an MMSA toolkit pickle (placeholder text_bert token ids consistent with the text lengths)."""
    from mmolre_cli.data.canonical import read_canonical
    from mmolre_cli.data.mmsa import write_mmsa

    check_out(out, force, file)
    data = read_canonical(file)
    write_mmsa(data, out, source=str(file), force=force)
    sizes = ", ".join(f"{name} {split.size}" for name, split in data.splits.items())
    console.print(f"wrote {out} ({data.dataset}: {sizes})", highlight=False)
