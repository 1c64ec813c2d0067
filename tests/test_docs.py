"""The docs cannot fall behind the code: hooks, contracts, commands, options and metrics are checked."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import json
from pathlib import Path

import numpy as np
import pluggy
import pytest
import typer
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import RunConfig
from mmolre_cli.data.canonical import read_canonical, write_canonical
from mmolre_cli.data.synthetic import generate_synthetic
from mmolre_cli.metrics import MER_SUMMARY, MSA_METRICS
from mmolre_cli.plugins import KINDS, hookspecs
from mmolre_cli.plugins.contracts import CONTRACTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def load_script(path: Path):
    """A script under docs/ (not a package module), imported from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_cli = load_script(DOCS / "gen_cli.py")
gen_config = load_script(DOCS / "gen_config.py")
gen_main_job = load_script(DOCS / "gen_main_job.py")


def hook_signatures(specs: object, project: str = hookspecs.PROJECT) -> dict[str, str]:
    """Hook name → its exact signature, ``name(args)``, for every hook specification in ``specs``."""
    return {
        name: f"{name}{inspect.signature(function)}"
        for name, function in vars(specs).items()
        if callable(function) and hasattr(function, f"{project}_spec")
    }


def undocumented_hooks(signatures: dict[str, str], text: str) -> list[str]:
    """Signatures without their own ``### `signature` `` heading in ``text``."""
    headings = {line.strip() for line in text.splitlines() if line.startswith("#")}
    return [signature for signature in signatures.values() if f"### `{signature}`" not in headings]


def untested_hooks(signatures: dict[str, str], test_names: set[str]) -> list[str]:
    """Hooks without a ``test_hook_<name>`` test."""
    return [name for name in signatures if f"test_hook_{name}" not in test_names]


def defined_functions(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}


def test_every_hook_is_documented_with_its_exact_signature():
    assert undocumented_hooks(hook_signatures(hookspecs), (DOCS / "plugins.md").read_text()) == []


def test_every_hook_has_a_test():
    assert untested_hooks(hook_signatures(hookspecs), defined_functions(ROOT / "tests" / "test_plugins.py")) == []


def test_the_hook_checkers_catch_a_made_up_hook():
    marker = pluggy.HookspecMarker("madeup")

    class Specs:
        @marker
        def register_widgets(register, size):
            """Register widgets."""

    signatures = hook_signatures(Specs, project="madeup")
    assert signatures == {"register_widgets": "register_widgets(register, size)"}
    assert undocumented_hooks(signatures, "# Hooks\n\nregister_widgets is great.\n") == [
        "register_widgets(register, size)"
    ]
    assert undocumented_hooks(signatures, "### `register_widgets(register)`\n") == ["register_widgets(register, size)"]
    assert undocumented_hooks(signatures, "### `register_widgets(register, size)`\n") == []
    assert untested_hooks(signatures, {"test_hook_register_widget", "test_widgets"}) == ["register_widgets"]
    assert untested_hooks(signatures, {"test_hook_register_widgets"}) == []


def test_every_contract_is_documented_with_its_factory_call():
    text = (DOCS / "plugins.md").read_text()
    missing = [f"{kind}: {c.describe()}" for kind, c in CONTRACTS.items() if f"`{c.describe()}`" not in text]
    assert missing == []


def test_cli_md_matches_the_live_help():
    problems = gen_cli.problems(app, (DOCS / "cli.md").read_text())
    assert problems == [], "docs/cli.md is stale; run `python docs/gen_cli.py`:\n" + "\n".join(problems)


@pytest.fixture
def made_up_app() -> typer.Typer:
    made_up = typer.Typer()

    @made_up.callback()
    def main() -> None:
        """A made-up tool."""

    @made_up.command()
    def greet(
        name: str = typer.Option("you", help="Who to greet."),
        loud: bool = typer.Option(False, "--loud", help="Shout."),
    ) -> None:
        """Say hello."""

    return made_up


def test_the_cli_checker_catches_a_missing_or_changed_option(made_up_app):
    text = gen_cli.render(made_up_app, prog="tool")
    assert "| `--loud` | Shout. |" in text
    assert gen_cli.problems(made_up_app, text, prog="tool") == []
    assert gen_cli.problems(made_up_app, text.replace("| `--loud` | Shout. |\n", ""), prog="tool") == [
        "`tool greet`: option `--loud` is in --help but not documented"
    ]
    changed = gen_cli.problems(made_up_app, text.replace("Shout.", "Whisper."), prog="tool")
    assert len(changed) == 1 and changed[0].startswith("`tool greet`: option `--loud` is documented as")
    extra = text.replace("| `--loud` | Shout. |", "| `--loud` | Shout. |\n| `--quiet` | Hush. |")
    assert gen_cli.problems(made_up_app, extra, prog="tool") == [
        "`tool greet`: option `--quiet` is documented but not in --help"
    ]


def test_the_cli_checker_catches_an_undocumented_command(made_up_app):
    text = gen_cli.render(made_up_app, prog="tool")

    @made_up_app.command()
    def wave() -> None:
        """Wave."""

    assert gen_cli.problems(made_up_app, text, prog="tool") == ["`tool wave` is in --help but not documented"]


def test_config_md_documents_every_config_key_as_config_py_defines_it():
    problems = gen_config.problems((DOCS / "config.md").read_text())
    assert problems == [], "\n".join(problems)
    keys = [row["key"] for row in gen_config.rows()]
    assert "train.epochs" in keys and "model.experts.rank" in keys and "model.experts" not in keys


def test_the_config_checker_reads_each_meaning_and_catches_a_stale_page():
    @dataclasses.dataclass
    class Made:
        #: how loud,
        #: in decibels
        volume: int = 3
        pitch: float = 1.0  # in Hz, one of SCHEDULES
        mood: str = "calm"

    assert gen_config.field_meanings(Made) == {
        "volume": "how loud, in decibels",
        "pitch": "in Hz, one of SCHEDULES",
        "mood": "",
    }
    rows = {row["key"]: row for row in gen_config.rows(Made, "x.")}
    assert rows["x.pitch"]["meaning"] == "in Hz, one of `constant`, `cosine`, `plateau`"
    assert rows["x.volume"]["default"] == "3" and rows["x.volume"]["type"] == "int"
    page = gen_config.render()
    stale = page.replace(f"| `{RunConfig().train.epochs}` |", "| `31` |", 1)
    assert stale != page and gen_config.problems(stale) == [
        "docs/config.md differs from mmolre_cli/config.py; run `python docs/gen_config.py`"
    ]


def test_the_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    (command,) = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("pip install")]
    assert f"```bash\n{command}\n```" in readme


def test_the_main_job_table_is_rendered_from_a_multi_seed_run_into_the_readme_block():
    metrics = {"MAE": 0.9, "Corr": 0.65, "Acc_7": 0.31}
    result = {
        "seeds": [1, 2],
        "mean": {"test": metrics},
        "std": {"test": {"MAE": 0.01, "Corr": 0.02, "Acc_7": 0.015}},
        "trivial_test": {"MAE": 1.2, "Corr": None},
    }
    runs = {s: {"selected_epoch": 4 + s, "history": [{}] * (8 + s), "metrics": {"test": metrics}} for s in (1, 2)}
    block = gen_main_job.render(result, runs, "measured on a test")
    assert "`mmolre train --experts shared=4 --topk 2 --seeds 1,2` trains" in block and ": 5/9, 6/10." in block
    assert "| MMoLRE, mean ± std over 2 seeds | 0.9000 ± 0.0100 | 0.6500 ± 0.0200 |" in block
    assert "| trivial predictor | 1.2000 | – |" in block
    readme = (ROOT / "README.md").read_text()
    rewritten = gen_main_job.replace_block(readme, block)
    assert block in rewritten and rewritten.replace(block, "") == readme.replace(
        readme[readme.index(gen_main_job.START) : readme.index(gen_main_job.END) + len(gen_main_job.END)], ""
    )


def test_metrics_md_defines_every_reported_metric():
    text = (DOCS / "metrics.md").read_text()
    assert [name for name in (*MSA_METRICS, *MER_SUMMARY) if f"`{name}`" not in text] == []


def test_architecture_md_places_every_plugin_kind():
    text = (DOCS / "architecture.md").read_text()
    assert [kind for kind in KINDS if f"`{kind}`" not in text] == []


def test_every_experimental_design_of_ablations_md_generates_a_canonical_file(tmp_path):
    designs = load_script(DOCS / "experiments" / "factor_designs.py")
    text = (DOCS / "ablations.md").read_text()
    for name, design in designs.DESIGNS.items():
        assert f"**{name}**" in text, name
        path = write_canonical(designs.generate(name, scale=0.01, seq_len=12), tmp_path / f"{name}.h5")
        train = read_canonical(path).splits["train"]
        labelled = np.isfinite(train.emotion).all(-1).mean()
        assert labelled == pytest.approx(design.get("known", 1.0), abs=0.01), name
        assert np.abs(train.sentiment).max() <= 3


def test_the_linear_readout_of_ablations_md_learns_more_from_more_clips():
    readout = load_script(DOCS / "experiments" / "linear_readout.py")
    correlations = readout.readout(generate_synthetic("mosei", 0.01, 0, 8, emotion_labels=1.0), sizes=(12, 163))
    assert set(correlations) == {"sentiment", "happy"}
    assert correlations["sentiment"][163] > max(0.4, correlations["sentiment"][12])


@pytest.mark.parametrize(("experts", "topk"), [("shared=2,rank=4", "2"), ("shared=4,rank=4", "1")])
def test_the_route_agreement_of_ablations_md_fits_the_routing_frequencies_of_metrics_json(
    tiny_data, tmp_path, experts, topk
):
    """Over a split, the mean overlap of two top-k routes lies between bounds set by each expert's
    frequency in either route: Σ max(f_sa + f_er − 1, 0) / k and Σ min(f_sa, f_er) / k."""
    script = load_script(DOCS / "experiments" / "route_agreement.py")
    args = ["train", "--data", str(tiny_data), "--d-model", "16", "--experts", experts, "--topk", topk]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--no-track", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    shares = script.agreement(tmp_path / "run", read_canonical(tiny_data))
    routing = json.loads((tmp_path / "run" / "metrics.json").read_text())["routing"]["test"]
    assert sorted(shares) == [f"{m} {b}" for m in sorted(routing) for b in (1, 2)]
    k = int(topk)
    for cell, share in shares.items():
        modality, block = cell.split()
        sa, er = (np.array(routing[modality][block][task]["frequency"]) for task in ("sa", "er"))
        assert np.maximum(sa + er - 1, 0).sum() / k - 1e-6 <= share <= np.minimum(sa, er).sum() / k + 1e-6, cell
    if experts.startswith(f"shared={k},"):  # top-k of k: both tasks take every expert
        assert set(shares.values()) == {1.0}


def test_docs_hold_documentation_and_the_studies_their_readme_describes():
    """No patches or stray scripts: pages, their generators (gen_*.py), and the scripts docs/experiments/README.md
    lists."""
    studies = (DOCS / "experiments" / "README.md").read_text()
    stray = [
        str(path.relative_to(DOCS))
        for path in DOCS.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".md"
        and not (path.parent == DOCS and path.name.startswith("gen_") and path.suffix == ".py")
        and not (path.parent.name == "experiments" and path.suffix == ".py" and f"`{path.name}`" in studies)
    ]
    assert stray == []
