"""What each component kind's factory receives and what the module it builds must do.

The factory Protocols below are the one written form of each kind's contract. Registration checks a
factory's signature against them (no torch import, so listing plugins stays fast); :func:`smoke_check`
builds a tiny instance and runs it forward and backward on a padded batch (``mmolre plugins --check``,
and plugin test suites). Kinds without a written contract are registered unchecked.

Shapes: B batch, T frames, D input features, d model width, N experts, τ tasks. A ``mask`` is bool
(B, T), True at valid frames; a row without any is a clip that lacks the modality (length 0).

One file on purpose: a kind's contract is a Protocol and one smoke function of some 30 lines, and the
four share the padded-batch inputs and the checks of shape, padding and gradients below. Split per
kind, each module would hold little beyond imports of those helpers, and a plugin author reads every
contract in one place (docs/plugins.md points here).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mmolre_cli.config import SmokeSizes
from mmolre_cli.errors import MmolreError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from mmolre_cli.model.routers import Route


@dataclass(frozen=True)
class Component:
    """One registered component: ``factory`` builds it, ``plugin`` names who provided it."""

    kind: str
    name: str
    factory: Callable
    plugin: str
    description: str = ""


class Encoder(Protocol):
    """An ``nn.Module``: features x (B, T, D), mask (B, T) → (B, T, d), zero at padded frames."""

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor: ...


class EncoderFactory(Protocol):
    """Builds one modality's encoder from its feature size D = ``input_dim``."""

    def __call__(self, *, input_dim: int, d_model: int, dropout: float) -> Encoder: ...


class ExpertBank(Protocol):
    """An ``nn.Module`` holding N experts f_1..f_N of one block.

    x (B, T, d), mask (B, T), weights (B, N) → Σ_n w_n · f_n(x): (B, T, d), zero at padded frames, and
    no padded frame may change a valid frame's output. Weights are zero for experts a router dropped;
    a task-specific expert is a bank with N = 1 called with weights of ones.
    """

    def __call__(self, x: Tensor, mask: Tensor, weights: Tensor) -> Tensor: ...


class ExpertFactory(Protocol):
    """Builds a bank of ``n_experts`` experts; ``rank`` is the bottleneck width r."""

    def __call__(self, *, d_model: int, n_experts: int, rank: int, dropout: float) -> ExpertBank: ...


class Router(Protocol):
    """An ``nn.Module``: one pooled vector per utterance (B, d) → :class:`~mmolre_cli.model.routers.Route`.

    ``Route.weights`` (B, N) ≥ 0 mixes the experts (zero for unused ones), ``Route.probs`` (B, N) is the
    router's full distribution (rows sum to 1), ``Route.balance_loss`` is an unweighted scalar auxiliary
    loss (1.0 for a perfectly even router); the model sums it over routers and never back-propagates it
    inside ``forward``.
    """

    def __call__(self, pooled: Tensor) -> Route: ...


class RouterFactory(Protocol):
    """Builds a router over ``n_experts`` experts that keeps ``topk`` of them."""

    def __call__(self, *, d_model: int, n_experts: int, topk: int) -> Router: ...


class Fusion(Protocol):
    """An ``nn.Module``: features {m: (τ, B, T_m, d)}, masks {m: (B, T_m)} → (τ, B, d) in ``tasks`` order.

    Padded frames (zero in ``features``) must not change the result.
    """

    def __call__(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor: ...


class FusionFactory(Protocol):
    """Builds a fusion of ``modalities`` (in the order the model passes them) for ``tasks``."""

    def __call__(self, *, d_model: int, modalities: list[str], tasks: list[str], dropout: float) -> Fusion: ...


class ContractError(TypeError):
    """A component that does not meet its kind's contract; the message names the plugin."""


class PluginError(MmolreError):
    """A plugin's factory that raised, or built no module, while a model was built; the message names the plugin."""


#: What foreign code may raise that is reported as its plugin's failure: any error, and SystemExit (a
#: plugin's ``sys.exit`` or argparse must not end mmolre); KeyboardInterrupt still stops mmolre.
PLUGIN_ERRORS = (Exception, SystemExit)


@dataclass(frozen=True)
class Contract:
    """A kind's factory Protocol and the smoke test its built modules must pass."""

    factory: type
    smoke: Callable[[Callable[..., Any], SmokeSizes], list[str]]

    @property
    def keywords(self) -> tuple[str, ...]:
        """The keyword arguments every factory of this kind is called with."""
        return tuple(name for name in inspect.signature(self.factory.__call__).parameters if name != "self")

    def describe(self) -> str:
        """``factory(*, a, b)``: the call the model makes, as the docs print it."""
        return f"factory(*, {', '.join(self.keywords)})"


def check_factory(kind: str, name: str, factory: Callable[..., Any], plugin: str) -> None:
    """Refuse a factory that cannot be called with its kind's keyword arguments (ContractError)."""
    contract = CONTRACTS.get(kind)
    if contract is None:
        return
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # C callables may expose no signature; their call will tell
        return
    parameters = signature.parameters.values()
    by_keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    accepted = {p.name for p in parameters if p.kind in by_keyword}
    missing = [] if takes_any else [k for k in contract.keywords if k not in accepted]
    unexpected = [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind not in variadic
        and not (p.kind in by_keyword and p.name in contract.keywords)
    ]
    problems = [f"does not accept {', '.join(missing)}"] if missing else []
    problems += [f"requires {', '.join(unexpected)}, which the model never passes"] if unexpected else []
    if problems:
        raise ContractError(
            f"plugin {plugin!r}: {kind} {name!r}: factory{signature} {'; '.join(problems)} "
            f"(the contract is {contract.describe()})"
        )


#: The sizes ``mmolre plugins --check`` builds every component at.
TINY = SmokeSizes()


def smoke_check(component: Component, sizes: SmokeSizes = TINY) -> None:
    """Build ``component`` at ``sizes`` and run it on a padded batch (ContractError on a problem); an encoder
    on raw input (:func:`takes_pretrained`) is not checked."""
    from mmolre_cli.model.pretrained import takes_pretrained

    contract = CONTRACTS.get(component.kind)
    if contract is None or (component.kind == "encoder" and takes_pretrained(component.factory)):
        return
    try:
        problems = contract.smoke(component.factory, sizes)
    except PluginError as error:  # its factory raised or built no module; the message names the plugin
        raise ContractError(str(error)) from error
    except PLUGIN_ERRORS as error:  # foreign code: any failure is the plugin's, reported by name
        problems = [f"raised {type(error).__name__}: {error}"]
    if problems:
        raise ContractError(f"plugin {component.plugin!r}: {component.kind} {component.name!r}: {'; '.join(problems)}")


def batch_lengths(frames: int) -> tuple[int, int, int]:
    """Valid frames of the smoke batch's three rows: all, half and one, so every padding pattern occurs."""
    return frames, max(1, frames // 2), 1


def _mask(lengths: tuple[int, ...], length: int, device: str = "cpu") -> Tensor:
    import torch

    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).to(device)


def _randn(shape: tuple[int, ...], generator: torch.Generator, device: str) -> Tensor:
    """Seeded normal draws (on the CPU, so that every device checks the same numbers) on ``device``."""
    import torch

    return torch.randn(shape, generator=generator).to(device)


def _generator():
    import torch

    return torch.Generator().manual_seed(0)


def module_problems(module: object, what: str) -> list[str]:
    """``[]`` when ``module`` is a torch nn.Module, else the one problem, naming ``what`` built it."""
    from torch import nn

    return [] if isinstance(module, nn.Module) else [f"{what} built a {type(module).__name__}, not a torch nn.Module"]


def _output_problems(
    out: object, shape: tuple[int, ...], like: Tensor, what: str = "output", same_dtype: bool = True
) -> list[str]:
    """What is wrong with ``out``: not a Tensor of ``shape`` on ``like``'s device with its dtype (or, without
    ``same_dtype``, any floating dtype), or not finite."""
    import torch

    if not isinstance(out, torch.Tensor):
        return [f"{what} is a {type(out).__name__}, not a Tensor"]
    if tuple(out.shape) != shape:
        return [f"{what} has shape {tuple(out.shape)}, expected {shape}"]
    if out.device != like.device or (out.dtype != like.dtype if same_dtype else not out.is_floating_point()):
        expected = f"the input's {like.dtype}" if same_dtype else "a floating dtype"
        return [f"{what} is {out.dtype} on {out.device}, expected {expected} on {like.device}"]
    if not torch.isfinite(out).all():
        return [f"{what} is not finite"]
    return []


def _close(a: Tensor, b: Tensor, tolerance: float) -> bool:
    """``a`` equals ``b`` element by element up to ``tolerance`` (relative, and absolute near zero), or up to
    the float32 rounding of sums as large as ``a``'s largest magnitude, whichever is larger."""
    import torch

    return torch.allclose(a, b, rtol=tolerance, atol=max(tolerance, 1e-6 * a.abs().max().item()))


def _padding_problems(out: Tensor, perturbed: Tensor, mask: Tensor) -> list[str]:
    problems = []
    if (~mask).any() and out[~mask].abs().max().item() > 0:
        problems.append("output is not zero at padded frames")
    if not _close(out[mask], perturbed[mask], 1e-5):
        problems.append("padded frames leak into valid frames' output")
    return problems


def _backward_problems(module: nn.Module, loss: Tensor) -> list[str]:
    parameters = [p for p in module.parameters() if p.requires_grad]
    if not parameters:
        return []
    loss.backward()
    if all(p.grad is None for p in parameters):
        return ["no parameter receives a gradient"]
    return []


def smoke_encoder(factory: Callable[..., Any], sizes: SmokeSizes) -> list[str]:
    """An encoder maps (B, T, D) to (B, T, d), zero at padding, padding not leaking, and trains."""
    import torch

    lengths = batch_lengths(sizes.frames)
    generator, length, device = _generator(), max(lengths), sizes.device
    encoder = factory(input_dim=sizes.input_dim, d_model=sizes.d_model, dropout=0.0)
    if problems := module_problems(encoder, "the factory"):
        return problems
    encoder.to(device)
    mask = _mask(lengths, length, device)
    x = _randn((len(lengths), length, sizes.input_dim), generator, device) * mask[..., None]
    noise = _randn(tuple(x.shape), generator, device) * ~mask[..., None]
    encoder.eval()
    with torch.no_grad():
        out, perturbed = encoder(x, mask), encoder(x + noise, mask)
    if problems := _output_problems(out, (len(lengths), length, sizes.d_model), x):
        return problems
    encoder.train()
    return _padding_problems(out, perturbed, mask) + _backward_problems(encoder, encoder(x, mask).square().sum())


def redraw_parameters(module: nn.Module, generator: torch.Generator, scale: float = 0.5) -> None:
    """Draw every parameter of ``module`` anew from N(0, scale²), so that a layer that starts at zero
    (the built-in experts' last) cannot hide what the rest of the module computes."""
    import torch

    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def smoke_expert(factory: Callable[..., Any], sizes: SmokeSizes) -> list[str]:
    """A bank returns Σ_n w_n f_n(x): linear in the weights, zero at padding, padding not leaking.

    A bank whose output is zero everywhere as built (as the built-in ones: their last layer starts at
    zero) is checked with its parameters redrawn at random, so that the checks see what it computes."""
    import torch

    lengths = batch_lengths(sizes.frames)
    generator, length, batch, device = _generator(), max(lengths), len(lengths), sizes.device
    n_experts, d_model = sizes.n_experts, sizes.d_model
    bank = factory(d_model=d_model, n_experts=n_experts, rank=sizes.rank, dropout=0.0)
    if problems := module_problems(bank, "the factory"):
        return problems
    bank.to(device)
    mask = _mask(lengths, length, device)
    x = _randn((batch, length, d_model), generator, device) * mask[..., None]
    noise = _randn(tuple(x.shape), generator, device) * ~mask[..., None]
    # Rows mixing two experts, two others and one alone (fewer when there are fewer experts).
    weights = torch.zeros(batch, n_experts)
    weights[0, 0], weights[1, -1], weights[2, 0] = 0.7, 0.5, 1.0
    weights[0, 1 % n_experts] += 0.3
    weights[1, -2 % n_experts] += 0.5
    weights = weights.to(device)
    bank.eval()
    with torch.no_grad():
        out = bank(x, mask, weights)
        if isinstance(out, torch.Tensor) and not out.any():
            redraw_parameters(bank, generator)
            out = bank(x, mask, weights)
        perturbed = bank(x + noise, mask, weights)
        if problems := _output_problems(out, (batch, length, d_model), x):
            return problems
        alone = torch.eye(n_experts, device=device)
        single = [bank(x, mask, alone[n].expand(batch, n_experts)) for n in range(n_experts)]
        mixture = sum(weights[:, n, None, None] * single[n] for n in range(n_experts))
    problems = _padding_problems(out, perturbed, mask)
    if not _close(out, mixture, 1e-4):
        problems.append("output is not the weighted sum Σ_n w_n · f_n(x) of the experts' outputs")
    bank.train()
    return problems + _backward_problems(bank, bank(x, mask, weights).square().sum())


def smoke_router(factory: Callable[..., Any], sizes: SmokeSizes) -> list[str]:
    """A router returns weights (B, N) ≥ 0 in the input's dtype, probs (B, N) summing to 1, and a scalar
    balance loss (both of any floating dtype)."""
    import torch

    batch, n_experts = 5, sizes.n_experts
    router = factory(d_model=sizes.d_model, n_experts=n_experts, topk=sizes.topk)
    if problems := module_problems(router, "the factory"):
        return problems
    router.to(sizes.device)
    pooled = _randn((batch, sizes.d_model), _generator(), sizes.device)
    route = router(pooled)
    fields = ("weights", "probs", "balance_loss")
    if not all(hasattr(route, field) for field in fields):
        return [f"returned a {type(route).__name__}, not a Route ({', '.join(fields)})"]
    problems = _output_problems(route.weights, (batch, n_experts), pooled, "Route.weights")
    problems += _output_problems(route.probs, (batch, n_experts), pooled, "Route.probs", same_dtype=False)
    balance = route.balance_loss
    problems += _output_problems(balance, (), pooled, "Route.balance_loss", same_dtype=False)
    if problems:
        return problems
    if (route.weights < 0).any():
        problems.append("Route.weights has negative entries")
    if not torch.allclose(route.probs.sum(-1).float().cpu(), torch.ones(batch), atol=1e-4):
        problems.append("Route.probs rows do not sum to 1")
    return problems + _backward_problems(router, route.weights.square().sum() + balance)


def smoke_fusion(factory: Callable[..., Any], sizes: SmokeSizes) -> list[str]:
    """A fusion maps per-task features of every modality to (τ, B, d), ignoring padded frames."""
    import torch

    lengths = batch_lengths(sizes.frames)
    generator, batch, device = _generator(), len(lengths), sizes.device
    modalities, tasks = list(sizes.modalities), list(sizes.tasks)
    fusion = factory(d_model=sizes.d_model, modalities=modalities, tasks=tasks, dropout=0.0)
    if problems := module_problems(fusion, "the factory"):
        return problems
    fusion.to(device)
    # Modalities of different lengths, padded in different rows.
    widths = [max(lengths[0] - 2 + i, 1) for i in range(len(modalities))]
    masks = {m: _mask(lengths[:: (-1) ** i], widths[i], device) for i, m in enumerate(modalities)}
    features = {
        m: _randn((len(tasks), batch, masks[m].shape[1], sizes.d_model), generator, device) * masks[m][..., None]
        for m in modalities
    }
    noisy = {
        m: features[m] + _randn(tuple(features[m].shape), generator, device) * ~masks[m][..., None] for m in modalities
    }
    fusion.eval()
    with torch.no_grad():
        out, perturbed = fusion(features, masks), fusion(noisy, masks)
    if problems := _output_problems(out, (len(tasks), batch, sizes.d_model), features[modalities[0]]):
        return problems
    problems = [] if _close(out, perturbed, 1e-5) else ["padded frames change the fused vectors"]
    fusion.train()
    return problems + _backward_problems(fusion, fusion(features, masks).square().sum())


#: Kind → its contract. Kinds missing here (e.g. ``text_encoder``) are registered unchecked.
CONTRACTS: dict[str, Contract] = {
    "encoder": Contract(EncoderFactory, smoke_encoder),
    "expert": Contract(ExpertFactory, smoke_expert),
    "router": Contract(RouterFactory, smoke_router),
    "fusion": Contract(FusionFactory, smoke_fusion),
}
