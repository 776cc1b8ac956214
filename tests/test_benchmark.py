"""The benchmark script: its smoke run end to end, and the pieces its figures rest on.

No test here asserts a speed. The tests check that the script runs, that its
contenders compute what the report claims, and that its FLOP counts,
HLO reading and memory measurement agree with independent routes.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jbp
import reference
from bench import compile_depth, hlo, mlp, process, timing
from bench import worked_example as we

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_writes_report(tmp_path):
    script = ROOT / "experiments" / "benchmark.py"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "benchmarks.json").read_text())
    for section in ("machine", "worked_example", "mlp", "process", "scaling"):
        assert section in results
    assert results["machine"]["jax"] == jax.__version__
    assert len(results["targets"]) == 5

    page = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets" in page
    assert "## 5. Compile time against depth" in page
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (tmp_path / "benchmarks.md").unlink()
    rerender = subprocess.run(
        [sys.executable, str(script), "--rerender", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerender.returncode == 0, rerender.stderr[-3000:]
    assert (tmp_path / "benchmarks.md").read_text() == page


def test_c_loop_matches_reference():
    example = we.load_worked_example(steps=25)
    try:
        prepared = we.build_c_loop(example)
    except we.Skipped as reason:
        pytest.skip(str(reason))
    state = prepared.final(prepared.run())
    hidden_w, output_w, errors = reference.run(25, layerwise=False)
    np.testing.assert_allclose(state.w1, hidden_w, rtol=1e-13)
    np.testing.assert_allclose(state.w2, output_w, rtol=1e-13)
    np.testing.assert_allclose(state.last_step_loss, errors[-1], rtol=1e-13)


@pytest.mark.parametrize(
    "build",
    [we.build_numpy_loop, we.build_python_loop, we.build_jbp_train],
    ids=["numpy", "python-loop", "jbp-train"],
)
def test_worked_contender_matches_reference(build):
    example = we.load_worked_example(steps=25)
    prepared = build(example)
    state = prepared.final(jax.block_until_ready(prepared.run()))
    hidden_w, output_w, errors = reference.run(25, layerwise=False)
    np.testing.assert_allclose(state.w1, hidden_w, rtol=1e-12)
    np.testing.assert_allclose(state.w2, output_w, rtol=1e-12)
    np.testing.assert_allclose(state.last_step_loss, errors[-1], rtol=1e-12)


def test_agreement_check_rejects_drift():
    rows = [
        {"name": "a", "weights": [1.0, 2.0], "final_loss": 0.5, "last_step_loss": 0.6},
        {
            "name": "b",
            "weights": [1.0, 2.0001],
            "final_loss": 0.5,
            "last_step_loss": 0.6,
        },
    ]
    with pytest.raises(AssertionError, match="b ends at weights"):
        we.check_agreement(rows)


def test_train_flops_hand_count():
    # 3-4-2 at batch 5: forward 2*5*(12 + 8) = 200, weight gradients 200, and only
    # the second layer has an input gradient, 2*5*8 = 80.
    assert mlp.train_flops((3, 4, 2), 5) == 480


def test_train_flops_match_xla_cost_analysis():
    spec = mlp.MlpSpec("check", (64, 128, 32), batch=32, steps=1)
    data = mlp.make_data(spec)
    optimizer = optax.sgd(0.1)
    step = jax.jit(jbp.make_step(data.network, optimizer, mlp.LOSS))
    compiled = step.lower(
        data.params, optimizer.init(data.params), data.xs[0], data.ts[0]
    ).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    counted = mlp.train_flops(spec.sizes, spec.batch)
    # XLA also counts the elementwise work, which is a few percent here.
    assert counted <= analysis["flops"]
    assert analysis["flops"] <= 1.1 * counted


def test_inspect_while_loop_counts_body():
    @jax.jit
    def loop(x):
        return jax.lax.fori_loop(0, 10, lambda _, v: jnp.exp(jnp.dot(v, v.T)), x)

    summary = hlo.inspect_while_loop(loop.lower(jnp.ones((4, 4))).compile().as_text())
    assert summary is not None
    assert summary["operation_count"] >= 2
    assert summary["operation_count"] == sum(summary["operations"].values())


def test_inspect_while_loop_without_loop():
    text = jax.jit(jnp.sin).lower(jnp.ones(3)).compile().as_text()
    assert hlo.inspect_while_loop(text) is None


def test_growth_exponent_recovers_power():
    depths = [2, 4, 8, 16, 32]
    seconds = [0.01 * depth**1.5 for depth in depths]
    assert compile_depth.growth_exponent(depths, seconds) == pytest.approx(1.5)


def test_scanned_layers_match_jbp_loss():
    spec = mlp.MlpSpec("check", (8, 8, 8, 8, 4), batch=6, steps=1)
    data = mlp.make_data(spec)
    x, t = data.xs[0], data.ts[0]
    expected = jbp.loss_value(data.network, data.params, x, t, mlp.LOSS)
    scanned = compile_depth.scanned_loss(compile_depth.stack_hidden(data.params), x, t)
    np.testing.assert_allclose(scanned, expected, rtol=1e-6)


def test_measure_process_peak_memory():
    small = process.measure_process([sys.executable, "-c", "pass"], repeats=1)
    large = process.measure_process(
        [
            sys.executable,
            "-c",
            "b = bytearray(256 * 2**20); b[::4096] = b'x' * len(b[::4096])",
        ],
        repeats=1,
    )
    assert large["peak_rss_bytes"] >= 256 * 2**20
    assert small["peak_rss_bytes"] < 128 * 2**20


def test_measure_process_failing_command():
    with pytest.raises(RuntimeError, match="exited with status 3"):
        process.measure_process([sys.executable, "-c", "raise SystemExit(3)"], 1)


def test_measure_counts_calls():
    calls = []
    result, last = timing.measure(lambda: calls.append(1) or len(calls), 2, 0.0)
    assert result.repeats == 2
    assert len(calls) == 3
    assert last == 3
    assert result.best_s <= result.median_s


def test_measure_repeats_until_total():
    def nap():
        time.sleep(0.01)

    result, _ = timing.measure(nap, repeats=1, min_total_s=0.05)
    # Each nap lasts at least 10 ms, and longer on a loaded machine, so the
    # 50 ms total takes more than the one requested repeat and at most five.
    assert result.repeats >= 2
    assert result.repeats <= 5


def test_measure_interleaved_takes_turns():
    order = []
    runs = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    timings = timing.measure_interleaved(runs, repeats=3)
    assert order == ["a", "b"] * 4
    assert timings["a"][0].repeats == 3
    assert timings["b"][0].repeats == 3


def test_c_loop_skipped_without_compiler(monkeypatch):
    monkeypatch.setattr(we, "find_c_compiler", lambda: None)
    we.compile_c_library.cache_clear()
    try:
        with pytest.raises(we.Skipped, match="no C compiler found"):
            we.build_c_loop(we.load_worked_example(steps=5))
    finally:
        we.compile_c_library.cache_clear()
