"""The one exception type jbp raises for a value a caller can fix."""


class ValidationError(ValueError):
    """An argument, array or file that jbp rejects.

    The message names the value, what was expected and what was found, so that the
    command-line tools can print it as one line and exit with status 2. Errors of any
    other type are bugs and keep their traceback.
    """


class DivergenceError(ArithmeticError):
    """Training stopped because a step's loss or parameters were not finite.

    Attributes:
        result: the :class:`~jbp.trainer.FitResult` at the chunk boundary where training
            stopped. Its state contains the last finite parameters and optimiser state,
            and ``result.nonfinite_step`` is the first step that was not applied.
    """

    def __init__(self, result) -> None:
        self.result = result
        step = result.nonfinite_step
        super().__init__(
            f"training diverged: step {step} (epoch {int(result.state.epoch) + 1}) "
            "gave a non-finite loss or parameters, so it was not applied and training "
            f"stopped; the parameters after step {step - 1} are kept. Lower the "
            "learning rate or clip the gradients"
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with the state at the last completed chunk.

    A subclass of ``KeyboardInterrupt``, so code that handles Ctrl-C still does.

    Attributes:
        result: the :class:`~jbp.trainer.FitResult` at the last chunk boundary.
    """

    def __init__(self, result) -> None:
        self.result = result
        super().__init__(
            f"training interrupted after epoch {int(result.state.epoch)}, "
            f"step {int(result.state.step)}"
        )
