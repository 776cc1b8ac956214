"""MLP training throughput in float32: jbp against PyTorch eager and the matmul peak.

Every contender trains the same network from the same initial weights with SGD on
the same batches, using the mean softmax cross-entropy over integer labels. Before
timing, :func:`check_agreement` runs each one for a few steps on one repeated batch
and requires the same loss history, so no contender can look fast by skipping work.

A contender is a name, a flag for training on one fixed batch (as ``jbp.train``
does) rather than a different batch each step, and a builder. The builder takes the
:class:`MlpData` and returns a :class:`Prepared` run, or raises :class:`Skipped`.
Adding one is one builder and one line in :data:`CONTENDERS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jbp
from bench.loops import scan_over_batches, sgd
from bench.timing import Timing, measure_interleaved
from bench.worked_example import Skipped

LOSS = "cross_entropy"

AGREEMENT_RTOL = 1e-4
"""How far a contender's loss history may stray from the first contender's.

float32 matmuls that sum in different orders differ by about 1e-6 relatively, and
a few SGD steps at a small learning rate do not amplify that much. A contender that
skips or changes work differs in the first or second digit.
"""


class MlpSpec(NamedTuple):
    """One network to time.

    Attributes:
        name: the label in the report.
        sizes: layer widths, inputs first; hidden layers use ReLU and the last
            layer's net input is the logits.
        batch: examples per step.
        steps: SGD steps per timed run.
        rate: the SGD learning rate.
    """

    name: str
    sizes: tuple[int, ...]
    batch: int
    steps: int
    rate: float = 0.01


class MlpData(NamedTuple):
    """The network, initial parameters and batches that every contender trains on.

    Attributes:
        spec: the network and batch settings.
        network: the jbp network.
        params: the initial float32 parameters.
        xs: inputs, shape ``(steps, batch, n_in)``: batch ``i`` is used at step ``i``.
        ts: integer labels, shape ``(steps, batch)``.
    """

    spec: MlpSpec
    network: jbp.Network
    params: jbp.Params
    xs: np.ndarray
    ts: np.ndarray

    @property
    def steps(self) -> int:
        """How many steps a run over this data takes: one per batch."""
        return self.xs.shape[0]


class Prepared(NamedTuple):
    """A contender ready to time: ``run`` returns the loss of every step."""

    run: Callable[[], Any]
    losses: Callable[[Any], np.ndarray]
    note: str = ""


class Contender(NamedTuple):
    """A name, whether it trains on the first batch only, and its builder."""

    name: str
    fixed_batch: bool
    build: Callable[[MlpData], Prepared]


def mlp_network(sizes: tuple[int, ...]) -> jbp.Network:
    """Build a ReLU network whose last layer outputs logits."""
    activations = ("relu",) * (len(sizes) - 2) + ("identity",)
    return jbp.Network(sizes=tuple(sizes), activations=activations)


def make_data(spec: MlpSpec, steps: int | None = None, seed: int = 0) -> MlpData:
    """Draw He-initialised parameters and ``steps`` batches of Gaussian inputs."""
    steps = spec.steps if steps is None else steps
    network = mlp_network(spec.sizes)
    params = jbp.init_params(network, jax.random.key(seed), jnp.float32)
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((steps, spec.batch, spec.sizes[0]), dtype=np.float32)
    ts = rng.integers(0, spec.sizes[-1], (steps, spec.batch), dtype=np.int32)
    return MlpData(spec, network, params, xs, ts)


def repeat_first_batch(data: MlpData, steps: int) -> MlpData:
    """Return ``data`` with its first batch repeated for ``steps`` steps."""
    xs = np.repeat(data.xs[:1], steps, axis=0)
    ts = np.repeat(data.ts[:1], steps, axis=0)
    return data._replace(xs=xs, ts=ts)


def layer_flops(sizes: tuple[int, ...], batch: int) -> list[int]:
    """Count each layer's matmul FLOPs in one SGD step (a multiply-add is two).

    The forward pass, the weight gradient and the input gradient each cost
    ``2 * batch * n_in * n_out``, except that no gradient flows into the data, so
    the first layer has no input gradient. Elementwise work is left out.
    """
    flops = [6 * batch * n_in * n_out for n_in, n_out in itertools.pairwise(sizes)]
    flops[0] -= 2 * batch * sizes[0] * sizes[1]
    return flops


def train_flops(sizes: tuple[int, ...], batch: int) -> int:
    """Count the matmul FLOPs of one SGD step; see :func:`layer_flops`."""
    return sum(layer_flops(sizes, batch))


def build_jbp_train(data: MlpData) -> Prepared:
    """``jbp.train``: every step on the first batch, in one compiled scan."""
    optimizer = sgd(data.spec.rate)
    x, t = data.xs[0], data.ts[0]

    def run():
        result = jbp.train(
            data.network, data.params, x, t, optimizer, data.steps, loss=LOSS
        )
        return result.losses

    return Prepared(run, np.asarray, note="the public call on one batch")


def build_jbp_scan(data: MlpData) -> Prepared:
    """``jbp.make_step`` in a jitted scan over a stack of different batches."""
    optimizer = sgd(data.spec.rate)
    loop = scan_over_batches(data.network, optimizer, LOSS)
    opt_state = optimizer.init(data.params)
    xs, ts = jnp.asarray(data.xs), jnp.asarray(data.ts)

    def run():
        return loop(data.params, opt_state, xs, ts)[2]

    return Prepared(run, np.asarray, note="jit(lax.scan(jbp.make_step)) over batches")


def build_torch_eager(data: MlpData) -> Prepared:
    """``torch.nn.Linear`` layers, autograd and ``torch.optim.SGD``, eager, float32."""
    try:
        import torch
    except ImportError:
        raise Skipped(
            "PyTorch is not installed; install the bench extra to add it"
        ) from None

    xs = torch.from_numpy(data.xs)
    ts = torch.from_numpy(data.ts.astype(np.int64))
    weights = [(np.array(p.w), np.array(p.b)) for p in data.params]

    def run():
        layers: list[torch.nn.Module] = []
        for i, (w, b) in enumerate(weights):
            linear = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if i < len(weights) - 1:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        optimizer = torch.optim.SGD(model.parameters(), lr=data.spec.rate)

        losses = []
        for x, t in zip(xs, ts, strict=True):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), t)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        return torch.stack(losses)

    note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return Prepared(run, lambda losses: losses.numpy(), note=note)


JBP = "jbp.train (one fixed batch)"
SCAN = "jbp scan over batches"
TORCH = "PyTorch eager"

CONTENDERS: tuple[Contender, ...] = (
    Contender(JBP, True, build_jbp_train),
    Contender(SCAN, False, build_jbp_scan),
    Contender(TORCH, False, build_torch_eager),
)
"""Every MLP contender. Speed-ups are taken over :data:`TORCH`."""


def _data_for(contender: Contender, data: MlpData) -> MlpData:
    return repeat_first_batch(data, data.steps) if contender.fixed_batch else data


def check_agreement(
    data: MlpData, contenders: tuple[Contender, ...], steps: int
) -> float:
    """Run each contender ``steps`` steps on one repeated batch; compare losses.

    Returns:
        The largest relative deviation of any loss history from the first one.

    Raises:
        AssertionError: when a history strays more than :data:`AGREEMENT_RTOL`.
    """
    repeated = repeat_first_batch(data, steps)
    reference_name, reference = None, None
    worst = 0.0
    for contender in contenders:
        try:
            prepared = contender.build(repeated)
        except Skipped:
            continue
        losses = prepared.losses(jax.block_until_ready(prepared.run()))
        if reference is None:
            reference_name, reference = contender.name, losses
            continue
        deviation = float(np.max(np.abs(losses - reference) / np.abs(reference)))
        assert deviation <= AGREEMENT_RTOL, (
            f"{contender.name} loss history {losses} differs from {reference_name}'s "
            f"{reference} (relative deviation {deviation:.3g} > {AGREEMENT_RTOL:g})"
        )
        worst = max(worst, deviation)
    return worst


def _orthonormal(n_in: int, n_out: int, seed: int) -> np.ndarray:
    """Draw an ``(n_in, n_out)`` matrix whose rows or columns are orthonormal."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((max(n_in, n_out), min(n_in, n_out))))
    return (q if n_in >= n_out else q.T).astype(np.float32)


class MatmulRun(NamedTuple):
    """A timed loop of matmuls at one layer's shapes, and the FLOPs of one call."""

    shape: tuple[int, int, int]
    run: Callable[[], Any]
    flops: int


def _matmul_iterations(batch: int, n_in: int, n_out: int, seconds: float) -> int:
    # Sized for a rough 5e10 FLOP/s, so that one call lasts about ``seconds``.
    return max(1, int(seconds * 5e10 / (4 * batch * n_in * n_out)))


def prepare_matmul(batch: int, n_in: int, n_out: int, seconds: float) -> MatmulRun:
    """Prepare a jitted loop of ``jnp.dot`` at one layer's shapes.

    Each iteration multiplies ``x (batch, n_in)`` by ``w (n_in, n_out)`` and the
    result by ``w.T``: the shapes of the layer's forward and input-gradient
    matmuls. The product feeds the next iteration, so XLA can neither hoist nor
    skip a matmul. ``w`` has orthonormal rows or columns, which keeps the values
    bounded for any number of iterations.

    Args:
        batch, n_in, n_out: the matmul shapes.
        seconds: the rough length of one call; sets the iteration count.
    """
    w = _orthonormal(n_in, n_out, seed=n_in * 7919 + n_out)
    w_back = np.ascontiguousarray(w.T)
    x = np.random.default_rng(0).standard_normal((batch, n_in), dtype=np.float32)
    iterations = _matmul_iterations(batch, n_in, n_out, seconds)

    @jax.jit
    def loop(x, w, w_back):
        return jax.lax.fori_loop(
            0, iterations, lambda _, x: jnp.dot(jnp.dot(x, w), w_back), x
        )

    x, w, w_back = jnp.asarray(x), jnp.asarray(w), jnp.asarray(w_back)
    flops = 4 * batch * n_in * n_out * iterations
    return MatmulRun((batch, n_in, n_out), lambda: loop(x, w, w_back), flops)


def prepare_torch_matmul(
    batch: int, n_in: int, n_out: int, seconds: float
) -> MatmulRun | None:
    """Prepare the same loop with ``torch.mm``, or return None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    w = torch.from_numpy(_orthonormal(n_in, n_out, seed=n_in * 7919 + n_out))
    w_back = w.T.contiguous()
    x0 = torch.randn(batch, n_in)
    iterations = _matmul_iterations(batch, n_in, n_out, seconds)

    def run():
        x = x0
        for _ in range(iterations):
            x = torch.mm(torch.mm(x, w), w_back)
        return x

    flops = 4 * batch * n_in * n_out * iterations
    return MatmulRun((batch, n_in, n_out), run, flops)


def layer_shapes(spec: MlpSpec) -> list[tuple[int, int, int]]:
    """List the distinct ``(batch, n_in, n_out)`` matmul shapes of the layers."""
    pairs = itertools.pairwise(spec.sizes)
    return sorted({(spec.batch, n_in, n_out) for n_in, n_out in pairs})


def _prepare_contenders(
    contenders: tuple[Contender, ...], data: MlpData, log
) -> tuple[dict[str, tuple[Contender, Prepared]], list[dict[str, Any]]]:
    prepared, skipped = {}, []
    for contender in contenders:
        try:
            prepared[contender.name] = (
                contender,
                contender.build(_data_for(contender, data)),
            )
        except Skipped as reason:
            log(f"  {contender.name}: skipped ({reason})")
            skipped.append({"name": contender.name, "skipped": str(reason)})
    return prepared, skipped


def _contender_row(
    contender: Contender,
    prepared: Prepared,
    timing: Timing,
    result: Any,
    data: MlpData,
    log,
) -> dict[str, Any]:
    losses = prepared.losses(result)
    flops_per_step = train_flops(data.spec.sizes, data.spec.batch)
    row = {
        "name": contender.name,
        "note": prepared.note,
        "fixed_batch": contender.fixed_batch,
        "timing": timing.to_json(),
        "samples_per_s": data.steps * data.spec.batch / timing.best_s,
        "flops_per_s": data.steps * flops_per_step / timing.best_s,
        "final_loss": float(losses[-1]),
    }
    log(
        f"  {contender.name}: {row['samples_per_s']:,.0f} samples/s, "
        f"{row['flops_per_s'] / 1e9:.1f} GFLOP/s (first call {timing.first_s:.2f} s)"
    )
    return row


def _matmul_entry(matmul: MatmulRun, timing: Timing) -> dict[str, Any]:
    return {
        "shape": list(matmul.shape),
        "timing": timing.to_json(),
        "flops_per_s": matmul.flops / timing.best_s,
    }


def run_spec(
    spec: MlpSpec,
    repeats: int,
    agreement_steps: int,
    matmul_seconds: float,
    contenders: tuple[Contender, ...] = CONTENDERS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time every contender on ``spec`` and the matmul peak at its shapes, in turns.

    The contenders and the ``jnp.dot`` and ``torch.mm`` loops are timed in
    interleaved rounds (:func:`~bench.timing.measure_interleaved`), so the
    speed-ups and fractions of the peak compare runs from the same moments.

    Returns:
        The rows, the matmul rates of ``jnp.dot`` and ``torch.mm`` at every layer
        shape, the peak (the fastest ``jnp.dot`` rate), and for each row its
        fraction of the peak, its speed-up over PyTorch eager and its
        ``matmul_share``: the time the step's matmuls would take at the measured
        ``jnp.dot`` rate of each layer's shape, over the measured step time.
    """
    log(f" {spec.name}, batch {spec.batch}, {spec.steps} steps per run")
    data = make_data(spec)
    deviation = check_agreement(data, contenders, agreement_steps)
    prepared, skipped = _prepare_contenders(contenders, data, log)
    shapes = layer_shapes(spec)
    matmuls = {
        f"jnp.dot {shape}": prepare_matmul(*shape, matmul_seconds) for shape in shapes
    }
    for shape in shapes:
        torch_matmul = prepare_torch_matmul(*shape, matmul_seconds)
        if torch_matmul is not None:
            matmuls[f"torch.mm {shape}"] = torch_matmul

    runs = {name: entry.run for name, (_, entry) in prepared.items()}
    runs.update({name: matmul.run for name, matmul in matmuls.items()})
    timings = measure_interleaved(runs, repeats)

    rows = [
        _contender_row(contender, entry, *timings[name], data, log)
        for name, (contender, entry) in prepared.items()
    ]
    dots = [
        _matmul_entry(matmul, timings[name][0])
        for name, matmul in matmuls.items()
        if name.startswith("jnp.dot")
    ]
    torch_dots = [
        _matmul_entry(matmul, timings[name][0])
        for name, matmul in matmuls.items()
        if name.startswith("torch.mm")
    ]
    peak = max(entry["flops_per_s"] for entry in dots)
    log(f"  jnp.dot peak at these shapes: {peak / 1e9:.1f} GFLOP/s")
    rate = {tuple(entry["shape"]): entry["flops_per_s"] for entry in dots}
    pairs = itertools.pairwise(spec.sizes)
    matmul_bound_s = sum(
        flops / rate[(spec.batch, n_in, n_out)]
        for flops, (n_in, n_out) in zip(
            layer_flops(spec.sizes, spec.batch), pairs, strict=True
        )
    )

    torch_row = next((row for row in rows if row["name"] == TORCH), None)
    for row in rows:
        row["fraction_of_peak"] = row["flops_per_s"] / peak
        row["matmul_share"] = matmul_bound_s * spec.steps / row["timing"]["best_s"]
        if torch_row is not None:
            row["speedup_over_torch"] = (
                row["samples_per_s"] / torch_row["samples_per_s"]
            )
    return {
        "spec": spec._asdict(),
        "flops_per_step": train_flops(spec.sizes, spec.batch),
        "agreement_steps": agreement_steps,
        "max_relative_deviation": deviation,
        "rows": rows + skipped,
        "matmul": dots,
        "torch_matmul": torch_dots,
        "peak_flops_per_s": peak,
        "matmul_bound_s_per_step": matmul_bound_s,
    }


def run_batch_scaling(
    spec: MlpSpec,
    batches: tuple[int, ...],
    samples: int,
    repeats: int,
    contenders: tuple[Contender, ...] = (CONTENDERS[1],),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Measure samples per second of ``contenders`` at each batch size.

    Each run trains on about ``samples`` examples (at least two steps), so every
    batch size does the same work.
    """
    results = []
    for batch in batches:
        steps = max(2, samples // batch)
        data = make_data(spec._replace(batch=batch, steps=steps))
        prepared, skipped = _prepare_contenders(contenders, data, log)
        runs = {name: entry.run for name, (_, entry) in prepared.items()}
        timings = measure_interleaved(runs, repeats)
        for name, (contender, entry) in prepared.items():
            row = _contender_row(contender, entry, *timings[name], data, log)
            results.append({"batch": batch, "steps": steps, **row})
        results.extend({"batch": batch, "steps": steps, **row} for row in skipped)
    return results
