"""The benchmark's Markdown page, its plot and its verdict on each target."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from bench import compile_depth, mlp
from bench import worked_example as we

RERUN_COMMAND = "nox -s bench"
SCRIPT_COMMAND = "python experiments/benchmark.py --out docs"
MIB = 2**20


def _rows_by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows if "skipped" not in row}


def _target(
    name: str, measure: str, value: float | None, limit: float, higher_is_better: bool
) -> dict[str, Any]:
    if value is None:
        met = None
    else:
        met = value >= limit if higher_is_better else value <= limit
    return {
        "target": name,
        "measure": measure,
        "value": value,
        "limit": limit,
        "higher_is_better": higher_is_better,
        "met": met,
    }


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare the measured ratios with the targets; None marks one not measured."""
    worked = _rows_by_name(results["worked_example"]["rows"])
    jbp = worked[we.JBP]["timing"]["best_s"]

    def slower_by(name: str) -> float | None:
        row = worked.get(name)
        return None if row is None else row["timing"]["best_s"] / jbp

    c_row = worked.get(we.C_LOOP)
    targets = [
        _target(
            "worked example within 1.5x of the C loop",
            "jbp.train time / C loop time",
            None if c_row is None else jbp / c_row["timing"]["best_s"],
            1.5,
            higher_is_better=False,
        ),
        _target(
            "worked example >= 100x faster than the NumPy loop",
            "NumPy loop time / jbp.train time",
            slower_by(we.NUMPY_LOOP),
            100.0,
            higher_is_better=True,
        ),
        _target(
            "worked example >= 100x faster than a Python loop of jitted steps",
            "Python loop time / jbp.train time",
            slower_by(we.PYTHON_LOOP),
            100.0,
            higher_is_better=True,
        ),
    ]
    for index, spec_result in enumerate(results["mlp"]):
        rows = _rows_by_name(spec_result["rows"])
        scan = rows[mlp.SCAN]
        name = spec_result["spec"]["name"]
        targets.append(
            _target(
                f"{name}: >= 2x PyTorch eager",
                f"{mlp.SCAN} samples/s / PyTorch eager samples/s",
                scan.get("speedup_over_torch"),
                2.0,
                higher_is_better=True,
            )
        )
        if index == 0:
            targets.append(
                _target(
                    f"{name}: >= 80% of the jnp.dot peak",
                    f"{mlp.SCAN} FLOP/s / fastest jnp.dot FLOP/s at its shapes",
                    scan["fraction_of_peak"],
                    0.8,
                    higher_is_better=True,
                )
            )
    return targets


def verdict(target: dict[str, Any]) -> str:
    if target["met"] is None:
        return "not measured"
    return "met" if target["met"] else "**missed**"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.3f}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _machine_section(machine: dict[str, Any], end_load: float | None) -> list[str]:
    rows = [
        ["CPU", f"{machine['cpu_model']}"],
        ["cores", f"{machine['usable_cores']} usable of {machine['cpu_count']}"],
        [
            "load average (1 min) at start / end",
            f"{machine['load_average_1min']:.2f} / {end_load:.2f}"
            if end_load is not None and machine["load_average_1min"] is not None
            else "unknown",
        ],
        ["platform", machine["platform"]],
        ["Python", machine["python"]],
        ["JAX / jaxlib", f"{machine['jax']} / {machine['jaxlib']}"],
        [
            "JAX backend",
            f"{machine['jax_backend']} ({', '.join(machine['jax_devices'])})",
        ],
        ["NumPy", str(machine["numpy"])],
        ["Optax", str(machine["optax"])],
        ["PyTorch", str(machine["torch"] or "not installed")],
        ["PyTorch BLAS", str(machine["torch_blas"] or "-")],
        ["C compiler", str(machine["c_compiler_version"] or "none found")],
        ["jbp commit", str(machine["jbp_commit"] or "unknown")],
        ["date (UTC)", machine["date_utc"]],
    ]
    return ["## Machine", "", *_table(["", ""], rows), ""]


def _busy_warning(machine: dict[str, Any], end_load: float | None) -> list[str]:
    loads = [machine["load_average_1min"], end_load]
    busiest = max((load for load in loads if load is not None), default=None)
    if busiest is None or busiest <= machine["usable_cores"]:
        return []
    return [
        f"> **Provisional.** Other work shared this machine during the run (load "
        f"average up to {busiest:.1f} on {machine['usable_cores']} cores), so every "
        "time here is inflated by an unknown amount and the ratios are noisy. "
        "Re-run on a quiet machine before quoting them.",
        "",
    ]


def _worked_section(worked: dict[str, Any]) -> list[str]:
    rows = []
    for row in worked["rows"]:
        timing = row["timing"]
        rows.append(
            [
                row["name"],
                _ms(timing["best_s"]),
                f"{row['per_step_ns']:,.0f}",
                _ms(timing["first_s"]),
                f"{row['ratio_to_reference']:,.2f}",
                f"{row['final_loss']:.12e}",
                row["note"],
            ]
        )
    lines = [
        f"## 1. The worked example: {worked['steps']:,} SGD steps, float64",
        "",
        "Time per run is the fastest steady-state run after the first call; the "
        "first call includes tracing and compilation. Every contender starts from "
        "the example's weights, and every final weight and loss agrees with "
        f"jbp.train's to a relative {worked['max_relative_deviation']:.1e} (the "
        f"run stops if any strays past {we.AGREEMENT_RTOL:g}).",
        "",
        *_table(
            [
                "contender",
                "ms per run",
                "ns per step",
                "first call (ms)",
                "time / jbp.train",
                "final loss",
                "note",
            ],
            rows,
        ),
        "",
    ]
    for skipped in worked["skipped"]:
        lines.append(f"- {skipped['name']} was skipped: {skipped['reason']}.")
    if worked["skipped"]:
        lines.append("")
    return lines


def _loop_anatomy(worked: dict[str, Any]) -> list[str]:
    rows = _rows_by_name(worked["rows"])
    loop, unrolled = worked["loop"], worked["loop_unrolled"]
    lines = ["### What XLA runs inside jbp's loop", ""]
    if loop is not None:
        operations = ", ".join(
            f"{count} {op}" for op, count in loop["operations"].items()
        )
        lines.append(
            f"- XLA:CPU {'compiles' if loop['small_call'] else 'does not compile'} "
            f"the whole while loop into one function (the `xla_cpu_small_call` "
            f"attribute), and each step runs {loop['operation_count']} operations: "
            f"{operations}. The C compiler inlines the whole step into one loop body."
        )
    if unrolled is not None and we.UNROLLED in rows and we.LOOP_ALONE in rows:
        ratio = (
            rows[we.UNROLLED]["timing"]["best_s"]
            / rows[we.LOOP_ALONE]["timing"]["best_s"]
        )
        lines.append(
            f"- With `lax.scan(unroll=8)` the loop is "
            f"{'still' if unrolled['small_call'] else 'no longer'} compiled as one "
            f"function, and it takes {ratio:.2f}x the time of the plain scan, so "
            "jbp does not unroll."
        )
    if we.JBP in rows and we.LOOP_ALONE in rows:
        fixed = (
            rows[we.JBP]["timing"]["best_s"] - rows[we.LOOP_ALONE]["timing"]["best_s"]
        )
        share = fixed / rows[we.JBP]["timing"]["best_s"]
        lines.append(
            f"- `jbp.train` spends {fixed * 1e3:.3f} ms per call outside the compiled "
            f"loop ({share:.0%} of its time here): input checks, conversion of the "
            "parameters, and initialising the optimiser state eagerly."
        )
    sigmoid = worked.get("sigmoid")
    if sigmoid is not None and we.LOOP_ALONE in rows and we.C_LOOP in rows:
        gap = rows[we.LOOP_ALONE]["per_step_ns"] - rows[we.C_LOOP]["per_step_ns"]
        sigmoids = 2 * (sigmoid["xla_ns_per_step"] - sigmoid["c_ns_per_step"])
        lines.append(
            f"- A float64 sigmoid of {sigmoid['size']} values costs "
            f"{sigmoid['xla_ns_per_step']:.1f} ns in XLA and "
            f"{sigmoid['c_ns_per_step']:.1f} ns in C (the C library's `exp`), each "
            "in a loop of its own. A step applies two, so XLA's sigmoids cost "
            f"{sigmoids:.0f} ns more per step than C's, against a gap of {gap:.0f} "
            "ns per step between the compiled loop and the C loop."
        )
    return [*lines, ""]


def _mlp_section(results: list[dict[str, Any]]) -> list[str]:
    lines = ["## 2. MLP training throughput, float32", ""]
    lines.append(
        "Every contender trains with SGD on the same batches from the same He-"
        "initialised weights, with mean softmax cross-entropy over integer labels. "
        "`jbp.train` trains on one fixed batch, as its API does; the others take a "
        "different batch each step. FLOP/s counts the matmuls of the forward pass, "
        "the weight gradients and the input gradients (none for the data). The peak "
        "is the fastest `jnp.dot` measured in this run at the network's layer "
        "shapes, inside one jitted loop. The matmul share is the time the step's "
        "matmuls would take at the measured `jnp.dot` rate of each layer's shape, "
        "over the measured step time."
    )
    lines.append("")
    for result in results:
        spec = result["spec"]
        lines.append(
            f"### {spec['name']}: batch {spec['batch']}, {spec['steps']} steps per "
            f"run, {result['flops_per_step'] / 1e9:.3f} GFLOP per step"
        )
        lines.append("")
        rows = []
        for row in result["rows"]:
            if "skipped" in row:
                rows.append(
                    [row["name"], "skipped", "-", "-", "-", "-", row["skipped"]]
                )
                continue
            speedup = row.get("speedup_over_torch")
            rows.append(
                [
                    row["name"],
                    f"{row['samples_per_s']:,.0f}",
                    f"{row['flops_per_s'] / 1e9:.1f}",
                    f"{row['fraction_of_peak']:.0%}",
                    f"{row['matmul_share']:.0%}",
                    "-" if speedup is None else f"{speedup:.2f}x",
                    row["note"],
                ]
            )
        lines += _table(
            [
                "contender",
                "samples/s",
                "GFLOP/s",
                "of peak",
                "matmul share",
                "vs PyTorch eager",
                "note",
            ],
            rows,
        )
        lines.append("")
        torch_rates = {
            tuple(e["shape"]): e["flops_per_s"] for e in result["torch_matmul"]
        }
        matmul_rows = [
            [
                "x".join(map(str, entry["shape"])),
                f"{entry['flops_per_s'] / 1e9:.1f}",
                (
                    f"{torch_rates[tuple(entry['shape'])] / 1e9:.1f}"
                    if tuple(entry["shape"]) in torch_rates
                    else "-"
                ),
            ]
            for entry in result["matmul"]
        ]
        lines += _table(
            ["matmul (batch x n_in x n_out)", "jnp.dot GFLOP/s", "torch.mm GFLOP/s"],
            matmul_rows,
        )
        lines.append("")
        lines.append(
            f"Peak: {result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s. Loss histories "
            f"agree over {result['agreement_steps']} steps on one batch to a relative "
            f"{result['max_relative_deviation']:.1e}."
        )
        lines.append("")
    return lines


def _process_section(process: dict[str, Any]) -> list[str]:
    names = {
        "python": "Python alone",
        "jax_startup": "JAX start-up",
        "jbp_reproduce": "`jbp reproduce`",
    }
    rows = [
        [
            names[key],
            f"`{shlex.join(['python', *entry['command'][1:]])}`",
            f"{entry['wall_s_best']:.2f}",
            f"{entry['peak_rss_bytes'] / MIB:,.0f}",
        ]
        for key, entry in process.items()
    ]
    reproduce = process["jbp_reproduce"]["wall_s_best"]
    startup = process["jax_startup"]["wall_s_best"]
    return [
        "## 3. `jbp reproduce` as a whole process",
        "",
        "Wall time is the fastest of the runs. Peak memory is the maximum resident "
        "set size, `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, of a small "
        "wrapper process whose only child is the command.",
        "",
        *_table(["process", "command", "wall (s)", "peak memory (MiB)"], rows),
        "",
        f"JAX's start-up is {startup / reproduce:.0%} of `jbp reproduce`'s wall time.",
        "",
    ]


def _scaling_section(scaling: dict[str, Any]) -> list[str]:
    batch_rows = [
        [
            str(row["batch"]),
            str(row["steps"]),
            f"{row['samples_per_s']:,.0f}",
            f"{row['flops_per_s'] / 1e9:.1f}",
        ]
        for row in scaling["batch"]
        if "skipped" not in row
    ]
    device_rows = []
    for row in scaling["devices"]:
        if "error" in row:
            device_rows.append([str(row["devices"]), "failed", "-", row["error"]])
            continue
        device_rows.append(
            [
                str(row["devices"]),
                f"{row['samples_per_s']:,.0f}",
                "yes" if row["all_reduce_in_program"] else "no",
                row["device_kind"],
            ]
        )
    spec = scaling["device_spec"]
    return [
        "## 4. Scaling",
        "",
        f"Samples per second of {mlp.SCAN} against batch size, for "
        f"{scaling['batch_spec']['name']}; each run trains on the same number of "
        "examples.",
        "",
        *_table(["batch", "steps", "samples/s", "GFLOP/s"], batch_rows),
        "",
        f"Against device count, for {spec['name']} at a global batch of "
        f"{spec['batch']} split over a 1-D mesh with `NamedSharding` (each count "
        f"in its own process; {scaling['device_note']}).",
        "",
        *_table(
            ["devices", "samples/s", "all-reduce in program", "device"], device_rows
        ),
        "",
    ]


def _compile_section(depth: dict[str, Any]) -> list[str]:
    rows = []
    for row in depth["rows"]:
        unrolled, scanned = row["jbp_train"], row["scanned_layers"]
        rows.append(
            [
                str(row["depth"]),
                f"{unrolled['trace_and_lower_s']:.2f}",
                f"{unrolled['xla_compile_s']:.2f}",
                f"{unrolled['timing']['compile_s']:.2f}",
                f"{compile_depth.compile_seconds(scanned):.2f}",
                _ms(unrolled["timing"]["best_s"]),
                _ms(scanned["timing"]["best_s"]),
            ]
        )
    first = depth["rows"][0]
    exponents = depth["growth_exponent"]

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    return [
        "## 5. Compile time against depth",
        "",
        f"Networks of width {first['width']}, batch {first['batch']}, "
        f"{first['steps']} steps per run. jbp's program is compiled ahead of time "
        "to split tracing from XLA's compilation; the first-call column is what "
        "`jbp.train` itself adds on its first call. The scanned form stacks the "
        "hidden layers and runs one `lax.scan` over them; its loss history equals "
        "jbp's at every depth.",
        "",
        *_table(
            [
                "depth",
                "jbp trace + lower (s)",
                "jbp XLA compile (s)",
                "jbp.train first call excess (s)",
                "scanned layers compile (s)",
                "jbp ms per run",
                "scanned ms per run",
            ],
            rows,
        ),
        "",
        f"Fitted over the deeper half, compile time grows as depth^"
        f"{shown(exponents['jbp_train'])} for jbp's Python loop over layers and as "
        f"depth^{shown(exponents['scanned_layers'])} for the scanned form.",
        "",
    ]


def _missed_section(results: dict[str, Any]) -> list[str]:
    """Explain each missed target with figures from this run."""
    missed = [t["target"] for t in results["targets"] if t["met"] is False]
    if not missed:
        return []
    lines = ["## Where a target is missed", ""]
    worked = results["worked_example"]
    rows = _rows_by_name(worked["rows"])
    if any("C loop" in name for name in missed) and we.LOOP_ALONE in rows:
        loop = rows[we.LOOP_ALONE]["timing"]["best_s"]
        c_loop = rows[we.C_LOOP]["timing"]["best_s"]
        lines.append(
            f"- **C loop.** Without `jbp.train`'s fixed cost per call, the compiled "
            f"loop alone takes {loop / c_loop:.2f}x the C loop's time. The rest is "
            "XLA's: its float64 exponential is slower than the C library's, and the "
            "step runs as separate small kernels rather than one inlined body (see "
            "*What XLA runs inside jbp's loop*). The fixed cost belongs to jbp: "
            "the checks of shapes, dtypes and finite values at the API boundary."
        )
    for result in results["mlp"]:
        name = result["spec"]["name"]
        if not any(name in target and "PyTorch" in target for target in missed):
            continue
        rows_by_name = _rows_by_name(result["rows"])
        torch_row = rows_by_name.get(mlp.TORCH)
        scan = rows_by_name[mlp.SCAN]
        if torch_row is None:
            continue
        torch_share = torch_row["matmul_share"]
        lines.append(
            f"- **{name}, against PyTorch eager.** PyTorch eager's matmuls already "
            f"take {torch_share:.0%} of its step time at the rates measured here, so "
            f"a contender whose step were nothing but matmuls could be at most "
            f"{1 / torch_share:.2f}x faster. jbp's matmuls take "
            f"{scan['matmul_share']:.0%} of its step. Where that bound is below 2x, "
            "the target cannot be reached on this machine; otherwise the gap is "
            "jbp's elementwise work (activations, softmax cross-entropy, update)."
        )
    for result in results["mlp"]:
        name = result["spec"]["name"]
        if not any(name in target and "peak" in target for target in missed):
            continue
        bound = result["matmul_bound_s_per_step"]
        cap = result["flops_per_step"] / bound / result["peak_flops_per_s"]
        scan = _rows_by_name(result["rows"])[mlp.SCAN]
        rates = ", ".join(
            f"{'x'.join(map(str, entry['shape']))} at "
            f"{entry['flops_per_s'] / 1e9:.1f} GFLOP/s"
            for entry in result["matmul"]
        )
        lines.append(
            f"- **{name}, fraction of the peak.** The peak is the fastest shape, but "
            f"the layers' matmuls run at different rates ({rates}). A step that did "
            f"nothing but its matmuls, each at its own shape's rate, would reach "
            f"{cap:.0%} of the peak. At those rates the matmuls account for "
            f"{scan['matmul_share']:.0%} of jbp's measured step time. The rest is "
            "elementwise work (ReLU and its derivative, the softmax cross-entropy, "
            "the SGD update) and the weight-gradient matmuls running slower than "
            "the measured shapes, whose layouts the peak loop does not cover."
        )
    return [*lines, ""]


def _targets_section(targets: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            target["target"],
            target["measure"],
            "-" if target["value"] is None else f"{target['value']:,.2f}",
            f"{'>=' if target['higher_is_better'] else '<='} {target['limit']:g}",
            verdict(target),
        ]
        for target in targets
    ]
    return [
        "## Targets",
        "",
        *_table(["target", "measure", "measured", "limit", "verdict"], rows),
        "",
    ]


def headline(results: dict[str, Any]) -> str:
    """Write one sentence with the worked example's ratios to the Python loop and C."""
    rows = _rows_by_name(results["worked_example"]["rows"])
    jbp = rows[we.JBP]["timing"]["best_s"]
    python_loop = rows[we.PYTHON_LOOP]["timing"]["best_s"]
    sentence = (
        f"jbp trains the worked example {python_loop / jbp:,.0f}x faster than a "
        "Python loop of jitted steps"
    )
    if we.C_LOOP in rows:
        c_loop = rows[we.C_LOOP]["timing"]["best_s"]
        sentence += f", within {jbp / c_loop:.1f}x of a plain C loop"
    return sentence + "."


def markdown(results: dict[str, Any], plot_name: str | None) -> str:
    """Render the whole page."""
    machine = results["machine"]
    end_load = results.get("load_average_1min_end")
    lines = [
        "# Benchmarks",
        "",
        "Generated by `experiments/benchmark.py`; do not edit by hand. Re-run with "
        f"`{RERUN_COMMAND}`, which installs the `bench` extra and runs "
        f"`{SCRIPT_COMMAND}`.",
        "",
        *_busy_warning(machine, end_load),
        f"Headline: {headline(results)}",
        "",
        *_targets_section(results["targets"]),
        *_missed_section(results),
    ]
    if plot_name:
        lines += [f"![benchmark plots]({plot_name})", ""]
    lines += _machine_section(machine, end_load)
    lines += _worked_section(results["worked_example"])
    lines += _loop_anatomy(results["worked_example"])
    lines += _mlp_section(results["mlp"])
    lines += _process_section(results["process"])
    lines += _scaling_section(results["scaling"])
    lines += _compile_section(results["compile_depth"])
    return "\n".join(lines).rstrip() + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw the six panels into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(17, 9.5))

    worked = results["worked_example"]
    names = [row["name"] for row in worked["rows"]]
    axis = axes[0, 0]
    axis.barh(names, [row["timing"]["best_s"] * 1e3 for row in worked["rows"]])
    axis.set_xscale("log")
    axis.invert_yaxis()
    axis.set_xlabel(f"ms per {worked['steps']:,} steps (log)")
    axis.set_title("1. Worked example, float64")

    axis = axes[0, 1]
    labels, values, peaks = [], [], []
    for result in results["mlp"]:
        for row in result["rows"]:
            if "skipped" in row:
                continue
            labels.append(f"{result['spec']['name'].split(' ')[0]}\n{row['name']}")
            values.append(row["flops_per_s"] / 1e9)
            peaks.append(result["peak_flops_per_s"] / 1e9)
    positions = range(len(labels))
    axis.bar(positions, values, label="training step")
    axis.scatter(
        positions, peaks, marker="_", s=600, color="black", label="jnp.dot peak"
    )
    axis.set_xticks(list(positions), labels, rotation=70, fontsize=7)
    axis.set_ylabel("GFLOP/s")
    axis.set_title("2. MLP training, float32")
    axis.legend(fontsize=8)

    axis = axes[0, 2]
    process = results["process"]
    axis.bar(
        ["Python", "JAX start-up", "jbp reproduce"],
        [
            process[key]["wall_s_best"]
            for key in ("python", "jax_startup", "jbp_reproduce")
        ],
    )
    axis.set_ylabel("wall time (s)")
    axis.set_title("3. Whole processes")

    axis = axes[1, 0]
    batch_rows = [row for row in results["scaling"]["batch"] if "skipped" not in row]
    axis.plot(
        [row["batch"] for row in batch_rows],
        [row["samples_per_s"] for row in batch_rows],
        marker="o",
    )
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("batch size")
    axis.set_ylabel("samples/s")
    axis.set_title("4a. Throughput against batch size")

    axis = axes[1, 1]
    device_rows = [row for row in results["scaling"]["devices"] if "error" not in row]
    axis.plot(
        [row["devices"] for row in device_rows],
        [row["samples_per_s"] for row in device_rows],
        marker="o",
    )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("devices")
    axis.set_ylabel("samples/s")
    axis.set_title("4b. Throughput against device count")

    axis = axes[1, 2]
    depth_rows = results["compile_depth"]["rows"]
    depths = [row["depth"] for row in depth_rows]
    for form, label in (
        ("jbp_train", "jbp (loop over layers)"),
        ("scanned_layers", "scan over layers"),
    ):
        axis.plot(
            depths,
            [compile_depth.compile_seconds(row[form]) for row in depth_rows],
            marker="o",
            label=label,
        )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("depth (layers)")
    axis.set_ylabel("trace + compile (s)")
    axis.set_title("5. Compile time against depth")
    axis.legend(fontsize=8)

    figure.suptitle(
        f"jbp benchmarks on {results['machine']['cpu_model']}, "
        f"{results['machine']['usable_cores']} cores, JAX {results['machine']['jax']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
