"""``mmolre prepare``: turn a data source into the canonical HDF5 file."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer

from mmolre_cli.cli.common import console, err_console, registry, user_errors, warn
from mmolre_cli.cli.help import App
from mmolre_cli.errors import DataError, UsageError

prepare_app = App(help="Prepare a dataset as a canonical HDF5 file.", no_args_is_help=True)

_SEQ_LEN_HELP = "Steps per sample: longer inputs are truncated, shorter ones zero-padded at the end."


def check_out(out: Path, force: bool, *inputs: Path | None) -> None:
    """Refuse an output that is one of the ``inputs``, or that exists without ``force``, before a long read."""
    for path in filter(None, inputs):
        if out.resolve() == path.resolve() or (out.exists() and path.exists() and out.samefile(path)):
            raise UsageError(f"--out {out}: is the input file")
    if out.resolve().exists() and not force:  # resolved: "missing/../x.h5" is x.h5
        raise DataError(f"{out}: already exists (use --force to overwrite)")


def _report(data, out: Path) -> None:
    """Say what was written and how many values preparation cleaned."""
    sizes = ", ".join(f"{name} {split.size}" for name, split in data.splits.items())
    console.print(f"wrote {out} ({data.dataset}: {sizes})", highlight=False)
    cleaned = data.options.get("cleaned", {})
    for what, label in (("nonfinite", "non-finite"), ("padding", "non-zero padding")):
        counts = {m: n for m, n in cleaned.get(what, {}).items() if n}
        if counts:
            detail = ", ".join(f"{m} {n}" for m, n in counts.items())
            console.print(f"replaced {sum(counts.values())} {label} feature values by 0 ({detail})", highlight=False)


@prepare_app.command("synthetic")
@user_errors
def synthetic(
    out: Path = typer.Option(..., help="Output HDF5 file."),
    like: str = typer.Option("mosei", help="Shapes to imitate: mosi or mosei."),
    scale: float = typer.Option(1.0, help="Fraction of the real dataset's clip counts."),
    seed: int = typer.Option(0, help="Random seed (same seed, same file)."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Sequence length (default 50)."),
    emotion_labels: float | None = typer.Option(  # default read in the body: data.synthetic imports h5py
        None,
        help="Fraction of MOSEI-like training clips that keep their emotion labels (valid and test keep all; "
        "default 0.5, as the built-in dataset).",
    ),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Generate data with the shapes of CMU-MOSI or CMU-MOSEI and labels from hidden factors."""
    from mmolre_cli.data.canonical import write_canonical
    from mmolre_cli.data.synthetic import EMOTION_LABELS, generate_synthetic

    fraction = EMOTION_LABELS if emotion_labels is None else emotion_labels
    data = generate_synthetic(like=like, scale=scale, seed=seed, seq_len=seq_len, emotion_labels=fraction)
    write_canonical(data, out, force=force)
    sizes = ", ".join(f"{name} {split.size}" for name, split in data.splits.items())
    console.print(f"wrote {out} ({data.dataset}: {sizes})")


@prepare_app.command("mmsa")
@user_errors
def mmsa(
    file: Path = typer.Argument(..., help="MMSA pickle (aligned_50.pkl or unaligned_50.pkl)."),
    out: Path = typer.Option(..., help="Output HDF5 file."),
    dataset: str | None = typer.Option(None, help="Dataset name (default: recognised from the file)."),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Convert an MMSA toolkit pickle, loaded with an unpickler that admits only NumPy arrays."""
    from mmolre_cli.data.canonical import write_canonical
    from mmolre_cli.data.mmsa import describe_text_lengths, read_mmsa

    check_out(out, force, file)
    data = read_mmsa(file, dataset=dataset)
    if data.options["published"]:
        console.print(f"recognised the published MMSA file {data.options['published']} (SHA-256)", highlight=False)
    write_canonical(data, out, force=force)
    _report(data, out)
    console.print(describe_text_lengths(data.options["text_lengths"]), highlight=False)


@prepare_app.command("csd")
@user_errors
def csd(
    text: Path = typer.Option(..., help="Word-level text sequence (.csd); its intervals are the reference."),
    labels: Path = typer.Option(..., help="Label sequence (.csd): All Labels (MOSEI) or Opinion Segment Labels."),
    out: Path = typer.Option(..., help="Output HDF5 file."),
    audio: Path | None = typer.Option(None, help="Audio sequence (.csd), e.g. COVAREP."),
    vision: Path | None = typer.Option(None, help="Vision sequence (.csd), e.g. FACET or OpenFace."),
    dataset: str | None = typer.Option(None, help="mosi or mosei (default: from the label column count)."),
    seq_len: int = typer.Option(50, "--seq-len", help=_SEQ_LEN_HELP),
    keep: str = typer.Option("first", help="Which words a long segment keeps: first or last."),
    folds: Path | None = typer.Option(None, help="Folds JSON (train/valid/test video ids) instead of the standard."),
    allow_missing: bool = typer.Option(False, help="Continue when fold videos are absent from the data."),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Align CMU-MultimodalSDK computational sequences to words, cut segments and split by folds."""
    from mmolre_cli.data.canonical import write_canonical
    from mmolre_cli.data.csd import read_csd

    check_out(out, force, text, labels, audio, vision, folds)
    sequences = {m: p for m, p in (("text", text), ("audio", audio), ("vision", vision)) if p is not None}
    data = read_csd(
        sequences, labels, dataset=dataset, seq_len=seq_len, keep=keep, folds=folds, allow_missing=allow_missing
    )
    if data.options["absent_fold_videos"]:
        warn(f"{data.options['absent_fold_videos']} fold videos are absent from the data and were skipped")
    write_canonical(data, out, force=force)
    _report(data, out)
    if data.options["dropped_segments"]:
        console.print(f"dropped {data.options['dropped_segments']} segments without words", highlight=False)


@prepare_app.command("csv")
@user_errors
def csv(
    file: Path = typer.Argument(..., help="MMSA label.csv: video_id, clip_id, text, label, …, mode."),
    out: Path = typer.Option(..., help="Output HDF5 file."),
    text_encoder: str = typer.Option("hf", help="Text-encoder plugin (see `mmolre plugins`)."),
    model: str | None = typer.Option(None, help="What the encoder loads, e.g. a local model directory for hf."),
    dataset: str | None = typer.Option(None, help="Dataset name (default: the CSV's folder name)."),
    seq_len: int = typer.Option(50, "--seq-len", help=_SEQ_LEN_HELP),
    audio_dir: Path | None = typer.Option(
        None, "--audio-dir", help="Audio files <video_id>/<clip_id>.wav (or .flac): adds the modality audio."
    ),
    audio_encoder: str = typer.Option("hf", "--audio-encoder", help="Audio-encoder plugin (see `mmolre plugins`)."),
    audio_model: str | None = typer.Option(
        None, "--audio-model", help="What the audio encoder loads, e.g. a local speech model directory for hf."
    ),
    audio_len: int = typer.Option(
        50, "--audio-len", help="Most audio steps: frames are averaged into at most this many."
    ),
    audio_align: str = typer.Option(
        "pool", "--audio-align", help="pool: at most --audio-len steps; text: one audio step per text token."
    ),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Refuse an audio clip longer than this."),
    waveforms: bool = typer.Option(
        True, "--waveforms/--no-waveforms", help="Keep the waveforms (raw_audio) for the hf_audio encoder."
    ),
    force: bool = typer.Option(False, help="Overwrite an existing output file."),
) -> None:
    """Embed raw transcripts with a text encoder into token-level text features, and with --audio-dir each
    clip's audio with an audio encoder into frame-level audio features."""
    from mmolre_cli.data.canonical import write_canonical
    from mmolre_cli.data.transcripts import prepare_transcripts

    check_out(out, force, file)
    component = registry().get("text_encoder", text_encoder, option="--text-encoder")
    audio = registry().get("audio_encoder", audio_encoder, option="--audio-encoder") if audio_dir else None
    who = f"plugin {component.plugin!r}: text_encoder {text_encoder!r}"
    text = component.factory(model)
    speech = audio.factory(audio_model) if audio else None  # before the long work: a bad model fails fast
    data = prepare_transcripts(file, text, seq_len=seq_len, dataset=dataset, who=who)
    data.options.update(text_encoder=text_encoder, model=model)
    if audio is not None:
        from mmolre_cli.data.audio import add_audio

        with _clips_progress() as progress:
            add_audio(
                data, audio_dir, speech, audio_len=audio_len, align=audio_align, max_seconds=max_seconds,
                keep_waveforms=waveforms, who=f"plugin {audio.plugin!r}: audio_encoder {audio_encoder!r}",
                progress=progress,
            )  # fmt: skip
        data.options["audio"].update(encoder=audio_encoder, model=audio_model)
    write_canonical(data, out, force=force)
    _report(data, out)


@contextmanager
def _clips_progress():
    """A progress bar over the clips read, then encoded, with clips/s; yields its ``progress(stage, done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class ClipsPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.1f} clips/s" if task.speed else "– clips/s")

    columns = (
        TextColumn("[bold]{task.description} audio clips"),
        BarColumn(),
        MofNCompleteColumn(),
        ClipsPerSecond(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal, transient=True) as bar:
        task = bar.add_task("reading", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            if bar.tasks[0].description != stage:
                bar.reset(task, total=total, description=stage)
            bar.update(task, completed=done, total=total)

        yield progress
