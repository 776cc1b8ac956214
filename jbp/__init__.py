"""jbp: backpropagation in JAX, from the classic worked example to deep networks.

The public API, bottom to top: activations and losses, the network and its forward
pass, gradients by ``jax.grad`` and by the explicit chain rule, and training in one
compiled ``lax.scan``.
"""

from jbp.activations import ACTIVATIONS, Activation, get_activation
from jbp.backprop import (
    Backward,
    autodiff_grad,
    backpropagate,
    chain_rule_grad,
    loss_value,
)
from jbp.derivation import Derivation, derive
from jbp.errors import ValidationError
from jbp.gradcheck import GradientCheck, check_gradients
from jbp.losses import LOSSES, Loss, get_loss
from jbp.netfile import NetworkFile, parse_network, read_network_file
from jbp.network import (
    Dense,
    Network,
    Params,
    Trace,
    default_initializer,
    forward,
    forward_trace,
    init_params,
    params_from_lists,
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
    "LOSSES",
    "RULES",
    "Activation",
    "Backward",
    "Dense",
    "Derivation",
    "GradientCheck",
    "Loss",
    "Network",
    "NetworkFile",
    "Params",
    "Trace",
    "TrainResult",
    "ValidationError",
    "autodiff_grad",
    "backpropagate",
    "chain_rule_grad",
    "check_gradients",
    "default_initializer",
    "derive",
    "forward",
    "forward_trace",
    "get_activation",
    "get_loss",
    "init_opt_state",
    "init_params",
    "loss_value",
    "make_step",
    "params_from_lists",
    "parse_network",
    "read_network_file",
    "train",
    "with_frozen",
]

__version__ = "0.1.0"
