"""``mmolre prepare``: turn a data source into the canonical HDF5 file."""

from __future__ import annotations

from pathlib import Path

import typer

from mmolre_cli.cli.common import console, user_errors

prepare_app = typer.Typer(help="Prepare a dataset as a canonical HDF5 file.", no_args_is_help=True)


@prepare_app.command("synthetic")
@user_errors
def synthetic(
    out: Path = typer.Option(..., help="Output HDF5 file."),
    like: str = typer.Option("mosei", help="Shapes to imitate: mosi or mosei."),
    scale: float = typer.Option(1.0, help="Fraction of the real dataset's clip counts."),
    seed: int = typer.Option(0, help="Random seed (same seed, same file)."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Sequence length (default 50)."),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Generate data with the shapes of CMU-MOSI or CMU-MOSEI and labels from hidden factors."""
    from mmolre_cli.data.canonical import write_canonical
    from mmolre_cli.data.synthetic import generate_synthetic

    data = generate_synthetic(like=like, scale=scale, seed=seed, seq_len=seq_len)
    write_canonical(data, out, force=force)
    sizes = ", ".join(f"{name} {split.size}" for name, split in data.splits.items())
    console.print(f"wrote {out} ({data.dataset}: {sizes})")
