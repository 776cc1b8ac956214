"""Sizes, step counts and repeats of a full run and of the ``--smoke`` run."""

from __future__ import annotations

from typing import NamedTuple

from bench.mlp import MlpSpec


class Settings(NamedTuple):
    """Everything that sets how long the benchmark runs.

    Attributes:
        worked_steps: SGD steps of the worked example per run.
        repeats: steady-state repeats of every timed call (at least).
        min_total_s: fast calls repeat until their steady-state runs add up to
            this many seconds.
        mlp_specs: the networks of the throughput comparison.
        agreement_steps: steps of the loss-agreement check before MLP timing.
        matmul_seconds: rough length of one timed matmul-peak call.
        batch_spec: the network of the batch-size sweep.
        batches: the batch sizes of the sweep.
        batch_samples: examples per timed run of the sweep, at every batch size.
        device_counts: device counts of the device sweep (capped by the devices
            a GPU machine has).
        device_spec: the network and global batch of the device sweep.
        reproduce_steps: ``--steps`` for ``jbp reproduce``; None keeps its default.
        process_repeats: runs of each whole-process command.
        depths: depths of the compile-time sweep.
        depth_width: the width of every layer in that sweep.
        depth_batch: its batch size.
        depth_steps: its steps per run.
    """

    worked_steps: int
    repeats: int
    min_total_s: float
    mlp_specs: tuple[MlpSpec, ...]
    agreement_steps: int
    matmul_seconds: float
    batch_spec: MlpSpec
    batches: tuple[int, ...]
    batch_samples: int
    device_counts: tuple[int, ...]
    device_spec: MlpSpec
    reproduce_steps: int | None
    process_repeats: int
    depths: tuple[int, ...]
    depth_width: int
    depth_batch: int
    depth_steps: int


WIDE = MlpSpec("wide 784-1024-1024-10", (784, 1024, 1024, 10), batch=256, steps=20)
DEEP = MlpSpec("deep narrow, 20 layers of 64", (64,) * 21, batch=256, steps=100)

FULL = Settings(
    worked_steps=10_000,
    repeats=5,
    min_total_s=1.0,
    mlp_specs=(WIDE, DEEP),
    agreement_steps=3,
    matmul_seconds=0.2,
    batch_spec=WIDE,
    batches=(16, 32, 64, 128, 256, 512, 1024),
    batch_samples=4096,
    device_counts=(1, 2, 4, 8),
    device_spec=WIDE._replace(steps=10),
    reproduce_steps=None,
    process_repeats=3,
    depths=(2, 4, 8, 16, 32, 64, 128),
    depth_width=64,
    depth_batch=64,
    depth_steps=10,
)

SMOKE = Settings(
    worked_steps=100,
    repeats=1,
    min_total_s=0.0,
    mlp_specs=(MlpSpec("tiny", (32, 16, 10), batch=8, steps=2),),
    agreement_steps=2,
    matmul_seconds=1e-4,
    batch_spec=MlpSpec("tiny", (32, 16, 10), batch=8, steps=2),
    batches=(8,),
    batch_samples=16,
    device_counts=(2,),
    device_spec=MlpSpec("tiny", (8, 4), batch=4, steps=2),
    reproduce_steps=1,
    process_repeats=1,
    depths=(2, 3),
    depth_width=8,
    depth_batch=4,
    depth_steps=2,
)
