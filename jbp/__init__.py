"""jbp: backpropagation in JAX, from the classic worked example to deep networks.

The public API, bottom to top: activations and losses, the network and its forward
pass, gradients by ``jax.grad`` and by the explicit chain rule, training in one
compiled ``lax.scan``, data parallelism across devices and checkpoints.
"""

from jbp.activations import ACTIVATIONS, Activation, get_activation
from jbp.backprop import (
    Backward,
    autodiff_grad,
    backpropagate,
    chain_rule_grad,
    loss_value,
)
from jbp.checkpoint import checkpoint_steps, restore_checkpoint, save_checkpoint
from jbp.data import Batches, Split, epoch_batches, num_batches, train_test_split
from jbp.derivation import Derivation, derive
from jbp.errors import DivergenceError, TrainingInterrupted, ValidationError
from jbp.gradcheck import GradientCheck, check_gradients
from jbp.losses import LOSSES, Loss, get_loss
from jbp.netfile import NetworkFile, parse_network, read_network_file
from jbp.network import (
    INITIALIZERS,
    Dense,
    Network,
    Params,
    Trace,
    default_initializer,
    forward,
    forward_trace,
    get_initializer,
    init_params,
    params_from_lists,
)
from jbp.sharding import (
    DATA_AXIS,
    batch_sharding,
    constrain_batch,
    data_mesh,
    masked_loss_value,
    pad_batch,
    replicate,
    replicated_sharding,
    shard_batch,
)
from jbp.trainer import (
    FitResult,
    History,
    TrainState,
    fit,
    init_state,
    set_hyperparameter,
)
from jbp.training import (
    RULES,
    TrainResult,
    init_opt_state,
    make_step,
    train,
    with_frozen,
)

__all__ = [
    "ACTIVATIONS",
    "DATA_AXIS",
    "INITIALIZERS",
    "LOSSES",
    "RULES",
    "Activation",
    "Backward",
    "Batches",
    "Dense",
    "Derivation",
    "DivergenceError",
    "FitResult",
    "GradientCheck",
    "History",
    "Loss",
    "Network",
    "NetworkFile",
    "Params",
    "Split",
    "Trace",
    "TrainResult",
    "TrainState",
    "TrainingInterrupted",
    "ValidationError",
    "autodiff_grad",
    "backpropagate",
    "batch_sharding",
    "chain_rule_grad",
    "check_gradients",
    "checkpoint_steps",
    "constrain_batch",
    "data_mesh",
    "default_initializer",
    "derive",
    "epoch_batches",
    "fit",
    "forward",
    "forward_trace",
    "get_activation",
    "get_initializer",
    "get_loss",
    "init_opt_state",
    "init_params",
    "init_state",
    "loss_value",
    "make_step",
    "masked_loss_value",
    "num_batches",
    "pad_batch",
    "params_from_lists",
    "parse_network",
    "read_network_file",
    "replicate",
    "replicated_sharding",
    "restore_checkpoint",
    "save_checkpoint",
    "set_hyperparameter",
    "shard_batch",
    "train",
    "train_test_split",
    "with_frozen",
]

__version__ = "0.1.0"
