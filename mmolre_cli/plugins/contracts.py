"""What each component kind's factory receives and what the module it builds must do.

The factory Protocols below are the one written form of each kind's contract. Registration checks a
factory's signature against them (no torch import, so listing plugins stays fast); :func:`smoke_check`
builds a tiny instance and runs it forward and backward on a padded batch (``mmolre plugins --check``,
and plugin test suites). Kinds without a written contract are registered unchecked.

Shapes: B batch, T frames, D input features, d model width, N experts, τ tasks. A ``mask`` is bool
(B, T), True at valid frames; every valid row has at least one valid frame.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mmolre_cli.errors import MmolreError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from mmolre_cli.model.routers import Route
    from mmolre_cli.plugins.registry import Component


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
    smoke: Callable[[Callable[..., Any]], list[str]]

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


def smoke_check(component: Component) -> None:
    """Build a tiny instance of ``component`` and run it on a padded batch (ContractError on a problem)."""
    contract = CONTRACTS.get(component.kind)
    if contract is None:
        return
    try:
        problems = contract.smoke(component.factory)
    except PluginError as error:  # its factory raised or built no module; the message names the plugin
        raise ContractError(str(error)) from error
    except PLUGIN_ERRORS as error:  # foreign code: any failure is the plugin's, reported by name
        problems = [f"raised {type(error).__name__}: {error}"]
    if problems:
        raise ContractError(f"plugin {component.plugin!r}: {component.kind} {component.name!r}: {'; '.join(problems)}")


# Tiny smoke inputs: three rows with 6, 3 and 1 valid frames, so every padding pattern occurs.
BATCH_LENGTHS = (6, 3, 1)
D_MODEL = 8


def _mask(lengths: tuple[int, ...], length: int) -> Tensor:
    import torch

    return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]


def _generator():
    import torch

    return torch.Generator().manual_seed(0)


def module_problems(module: object, what: str) -> list[str]:
    """``[]`` when ``module`` is a torch nn.Module, else the one problem, naming ``what`` built it."""
    from torch import nn

    return [] if isinstance(module, nn.Module) else [f"{what} built a {type(module).__name__}, not a torch nn.Module"]


def _output_problems(out: object, shape: tuple[int, ...], like: Tensor, what: str = "output") -> list[str]:
    """What is wrong with ``out``: not a Tensor of ``shape`` with ``like``'s dtype and device, or not finite."""
    import torch

    if not isinstance(out, torch.Tensor):
        return [f"{what} is a {type(out).__name__}, not a Tensor"]
    if tuple(out.shape) != shape:
        return [f"{what} has shape {tuple(out.shape)}, expected {shape}"]
    if out.dtype != like.dtype or out.device != like.device:
        return [f"{what} is {out.dtype} on {out.device}, expected the input's {like.dtype} on {like.device}"]
    if not torch.isfinite(out).all():
        return [f"{what} is not finite"]
    return []


def _padding_problems(out: Tensor, perturbed: Tensor, mask: Tensor) -> list[str]:
    import torch

    problems = []
    if (~mask).any() and out[~mask].abs().max().item() > 0:
        problems.append("output is not zero at padded frames")
    if not torch.allclose(out[mask], perturbed[mask], atol=1e-5):
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


def smoke_encoder(factory: Callable[..., Any]) -> list[str]:
    """An encoder maps (B, T, D) to (B, T, d), zero at padding, padding not leaking, and trains."""
    import torch

    generator, input_dim, length = _generator(), 5, max(BATCH_LENGTHS)
    encoder = factory(input_dim=input_dim, d_model=D_MODEL, dropout=0.0)
    if problems := module_problems(encoder, "the factory"):
        return problems
    mask = _mask(BATCH_LENGTHS, length)
    x = torch.randn(len(BATCH_LENGTHS), length, input_dim, generator=generator) * mask[..., None]
    noise = torch.randn(x.shape, generator=generator) * ~mask[..., None]
    encoder.eval()
    with torch.no_grad():
        out, perturbed = encoder(x, mask), encoder(x + noise, mask)
    if problems := _output_problems(out, (len(BATCH_LENGTHS), length, D_MODEL), x):
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


def smoke_expert(factory: Callable[..., Any]) -> list[str]:
    """A bank returns Σ_n w_n f_n(x): linear in the weights, zero at padding, padding not leaking.

    A bank whose output is zero everywhere as built (as the built-in ones: their last layer starts at
    zero) is checked with its parameters redrawn at random, so that the checks see what it computes."""
    import torch

    generator, n_experts, length, batch = _generator(), 3, max(BATCH_LENGTHS), len(BATCH_LENGTHS)
    bank = factory(d_model=D_MODEL, n_experts=n_experts, rank=2, dropout=0.0)
    if problems := module_problems(bank, "the factory"):
        return problems
    mask = _mask(BATCH_LENGTHS, length)
    x = torch.randn(batch, length, D_MODEL, generator=generator) * mask[..., None]
    noise = torch.randn(x.shape, generator=generator) * ~mask[..., None]
    weights = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    bank.eval()
    with torch.no_grad():
        out = bank(x, mask, weights)
        if isinstance(out, torch.Tensor) and not out.any():
            redraw_parameters(bank, generator)
            out = bank(x, mask, weights)
        perturbed = bank(x + noise, mask, weights)
        if problems := _output_problems(out, (batch, length, D_MODEL), x):
            return problems
        single = [bank(x, mask, torch.eye(n_experts)[n].expand(batch, n_experts)) for n in range(n_experts)]
        mixture = sum(weights[:, n, None, None] * single[n] for n in range(n_experts))
    problems = _padding_problems(out, perturbed, mask)
    if not torch.allclose(out, mixture, atol=1e-4):
        problems.append("output is not the weighted sum Σ_n w_n · f_n(x) of the experts' outputs")
    bank.train()
    return problems + _backward_problems(bank, bank(x, mask, weights).square().sum())


def smoke_router(factory: Callable[..., Any]) -> list[str]:
    """A router returns weights (B, N) ≥ 0, probs (B, N) summing to 1, and a scalar balance loss."""
    import torch

    n_experts, batch = 4, 5
    router = factory(d_model=D_MODEL, n_experts=n_experts, topk=2)
    if problems := module_problems(router, "the factory"):
        return problems
    pooled = torch.randn(batch, D_MODEL, generator=_generator())
    route = router(pooled)
    fields = ("weights", "probs", "balance_loss")
    if not all(hasattr(route, field) for field in fields):
        return [f"returned a {type(route).__name__}, not a Route ({', '.join(fields)})"]
    problems = []
    for field in ("weights", "probs"):
        problems += _output_problems(getattr(route, field), (batch, n_experts), pooled, f"Route.{field}")
    balance = route.balance_loss
    problems += _output_problems(balance, (), pooled, "Route.balance_loss")
    if problems:
        return problems
    if (route.weights < 0).any():
        problems.append("Route.weights has negative entries")
    if not torch.allclose(route.probs.sum(-1), torch.ones(batch), atol=1e-4):
        problems.append("Route.probs rows do not sum to 1")
    return problems + _backward_problems(router, route.weights.square().sum() + balance)


def smoke_fusion(factory: Callable[..., Any]) -> list[str]:
    """A fusion maps per-task features of every modality to (τ, B, d), ignoring padded frames."""
    import torch

    generator, modalities, tasks, batch = _generator(), ["text", "audio"], ["sa", "er"], len(BATCH_LENGTHS)
    fusion = factory(d_model=D_MODEL, modalities=modalities, tasks=tasks, dropout=0.0)
    if problems := module_problems(fusion, "the factory"):
        return problems
    lengths = {"text": BATCH_LENGTHS, "audio": BATCH_LENGTHS[::-1]}
    masks = {m: _mask(lengths[m], 4 + i) for i, m in enumerate(modalities)}
    features = {
        m: torch.randn(len(tasks), batch, masks[m].shape[1], D_MODEL, generator=generator) * masks[m][..., None]
        for m in modalities
    }
    noisy = {
        m: features[m] + torch.randn(features[m].shape, generator=generator) * ~masks[m][..., None] for m in modalities
    }
    fusion.eval()
    with torch.no_grad():
        out, perturbed = fusion(features, masks), fusion(noisy, masks)
    if problems := _output_problems(out, (len(tasks), batch, D_MODEL), features["text"]):
        return problems
    problems = [] if torch.allclose(out, perturbed, atol=1e-5) else ["padded frames change the fused vectors"]
    fusion.train()
    return problems + _backward_problems(fusion, fusion(features, masks).square().sum())


#: Kind → its contract. Kinds missing here (e.g. ``text_encoder``) are registered unchecked.
CONTRACTS: dict[str, Contract] = {
    "encoder": Contract(EncoderFactory, smoke_encoder),
    "expert": Contract(ExpertFactory, smoke_expert),
    "router": Contract(RouterFactory, smoke_router),
    "fusion": Contract(FusionFactory, smoke_fusion),
}
