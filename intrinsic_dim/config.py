"""IntrinsicDimConfig: every option of `intrinsic_dim.measure` (and `autoprompt intrinsic-dim`, whose
--help text is the field help), with validation. The seed is part of it.

Options that only make sense together are refused here with one line naming the field (SAID or
params outside model space, CMA-ES with a d too large for its covariance, ...); what needs the
model (a prefix on an architecture without a key/value cache, a template without [T] slots) is
refused by the method's `prepare` and `fit` (intrinsic_dim.fit) before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.configs import at_least, field_error, name_of, one_of, positive
from frozen_lm.errors import UserError
from frozen_lm.prompts.init import parse_init
from intrinsic_dim.projections import PROJECTIONS

SPACES = ("model", "prompt", "prefix")
OPTIMIZERS = ("adam", "sgd", "cma")
HEADS = ("none", "linear")
LOSSES = ("classes", "vocab")
CMA_MAX_DIM = 2000  # CMA-ES keeps a d x d covariance and decomposes it every generation
# learning rate of full training by space: the pretrained weights; a prompt as `autoprompt tune`
# trains it (0.03); prefix key/values trained directly (softprompt's 5e-3)
BASELINE_LR = {"model": 1e-4, "prompt": 0.03, "prefix": 5e-3}
# CMA-ES's first step, relative to theta_0's spread: BBT's scale for prompts, a small one for weights
CMA_SIGMA = {"model": 0.02, "prompt": 1.0, "prefix": 1.0}


@dataclass
class IntrinsicDimConfig:
    """Subspace training theta = theta_0 + P(theta_d) and the d90 sweep, in model, prompt or prefix space."""

    space: str = field(default="model", metadata={
        "help": "what moves: model = the model's weights; prompt = soft-prompt vectors at the [T] slots; prefix = "
                "key/values every layer attends to (prompt and prefix start from --init, as `autoprompt tune`)",
        "choices": list(SPACES)})
    num_virtual_tokens: int | None = field(default=None, metadata={
        "help": "prompt space: prepend this many [T] slots to the template (default: the template's own); prefix "
                "space: the prefix length (default: the number of [T] slots, which are then removed)"})
    init: str = field(default="vocab", metadata={
        "help": "prompt/prefix space: theta_0, as `autoprompt tune --init`: random, vocab (frequent tokens), labels, "
                "or text:\"...\""})
    projection: str = field(default="fastfood", metadata={
        "help": f"random projection P: {', '.join(PROJECTIONS)} (dense needs D*d floats; fastfood about 4*D)"})
    params: str = field(default="all", metadata={
        "help": "which weight tensors move: all, attention, mlp, or a regular expression over parameter names"})
    said: bool = field(default=False, metadata={
        "help": "SAID: one learned scale per moving tensor (counted in d); model space with gradient training only"})
    head: str = field(default="none", metadata={
        "help": "objective: none = label words at [P]; linear = a classification head on the [P] hidden state "
                "(its weights are part of theta and count in d)", "choices": list(HEADS)})
    loss: str = field(default="classes", metadata={
        "help": "label-word loss: cross-entropy over the classes' words, or -log p(word) over the vocabulary",
        "choices": list(LOSSES)})
    dims: list[int] | None = field(default=None, metadata={
        "help": "comma-separated subspace sizes, e.g. 10,30,100,300,1000; default: automatic (log grid, then bisection)"})
    seeds: int = field(default=1, metadata={"help": "projection seeds per d (d90 is reported with its spread)"})
    max_dim: int = field(default=100_000, metadata={"help": "largest d the automatic search tries"})
    bisect_steps: int = field(default=3, metadata={"help": "bisection runs between the last failing and first passing d"})
    threshold: float = field(default=0.9, metadata={"help": "fraction of the baseline score that defines d90"})
    baseline_score: float | None = field(default=None, metadata={
        "help": "full training score to compare against (default: train all D numbers first); taken as given, "
                "without the --min-gain check"})
    min_gain: float = field(default=0.05, metadata={
        "help": "d90 is reported only when full training beats both the dev majority-class rate and the theta_0 score "
                "(the manual template; the untouched prompt) by this much (absolute); else no d90, and "
                "results.json's d90_refused says why"})
    steps: int = field(default=100, metadata={"help": "training steps per run (CMA-ES: generations)"})
    baseline_steps: int | None = field(default=None, metadata={"help": "full training steps (default: --steps)"})
    batch_size: int = field(default=8, metadata={"help": "examples per training step"})
    lr: float | None = field(default=None, metadata={
        "help": "learning rate of theta_d (default: baseline-lr * sqrt(D / d), the same step length in theta)"})
    baseline_lr: float | None = field(default=None, metadata={
        "help": "learning rate of full training (default: 1e-4 model space, 0.03 prompt, 5e-3 prefix)"})
    optimizer: str = field(default="adam", metadata={
        "help": "adam or sgd: gradient training; cma: CMA-ES without gradients (Black-Box Tuning), for the subspace "
                f"runs (full training stays adam), d up to {CMA_MAX_DIM}; needs `pip install cmaes`",
        "choices": list(OPTIMIZERS)})
    popsize: int | None = field(default=None, metadata={
        "help": "CMA-ES: candidates per generation, all scored on the same --batch-size examples (default 4 + 3 ln d)"})
    sigma: float | None = field(default=None, metadata={
        "help": "CMA-ES: first step size, relative: a candidate moves each of the D numbers by about sigma x their "
                "standard deviation in theta_0 (default 1.0 in prompt/prefix space, as BBT; 0.02 in model space)"})
    max_forward_passes: int | None = field(default=None, metadata={
        "help": "budget of each subspace run in forward passes of one example (CMA-ES: examples x candidates): "
                "--steps is cut to fit (full training is not cut)"})
    max_train: int | None = field(default=None, metadata={"help": "use at most this many training examples (seeded sample)"})
    max_dev: int | None = field(default=None, metadata={"help": "score at most this many dev examples (seeded sample)"})
    eval_batch_size: int = field(default=32, metadata={"help": "examples per scoring pass"})
    max_projection_gib: float | None = field(default=None, metadata={
        "help": "memory a projection may take, GiB (default: a quarter of free memory)"})
    plot: bool = field(default=True, metadata={"help": "write d90.png (needs matplotlib)"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same result on CPU"})

    # what a resumed run may change: neither changes a number (the plot; a memory limit that only refuses)
    RESUMABLE = ("plot", "max_projection_gib")

    def __post_init__(self):
        one_of(self, "projection", PROJECTIONS)
        for name, choices in (("space", SPACES), ("head", HEADS), ("loss", LOSSES), ("optimizer", OPTIMIZERS)):
            one_of(self, name, choices)
        at_least(self, 1, "seeds", "max_dim", "steps", "batch_size", "eval_batch_size", "num_virtual_tokens",
                 "max_forward_passes", "baseline_steps")
        at_least(self, 2, "popsize")
        at_least(self, 0, "min_gain", "bisect_steps")
        if not 0 < self.threshold <= 1:
            raise field_error(self, "threshold", f"must be in (0, 1], got {self.threshold!r}")
        positive(self, "lr", "baseline_lr", "max_projection_gib", "sigma")
        self.dims = parse_dims(self.dims, name_of(self, "dims"))
        self._check_space()
        self._check_cma()
        if self.baseline_lr is None:
            self.baseline_lr = BASELINE_LR[self.space]

    def _check_space(self) -> None:
        """Options that belong to one space only."""
        parse_init(self.init, name_of(self, "init"))
        space = name_of(self, "space")
        if self.space == "model":
            if self.num_virtual_tokens is not None:
                raise field_error(self, "num_virtual_tokens", f"is for {space} prompt or prefix; {space} model moves "
                                  f"weights (got {self.num_virtual_tokens})")
            return
        where = f"{space} {self.space} moves the {'prompt vectors' if self.space == 'prompt' else 'prefix key/values'}"
        if self.params != "all":
            raise field_error(self, "params", f"picks model weights, but {where}; leave it at 'all' (got "
                              f"{self.params!r}) or use {space} model")
        if self.said:
            raise field_error(self, "said", f"scales each weight tensor of the model and does not apply here: {where}, "
                              f"a single tensor; leave it off or use {space} model")
        if self.head != "none":
            raise field_error(self, "head", f"{self.head} trains a head with the model's weights; {where} and reads "
                              f"the label words; leave it at 'none' or use {space} model")

    def _check_cma(self) -> None:
        if self.optimizer != "cma":
            return
        optimizer = f"{name_of(self, 'optimizer')} cma"
        if self.said:
            raise field_error(self, "said", f"with {optimizer}: the SAID scales train by gradient; use "
                              f"{name_of(self, 'optimizer')} adam")
        if self.dims and max(self.dims) > CMA_MAX_DIM:
            raise field_error(self, "dims", f"has d={max(self.dims):,} with {optimizer}: CMA-ES keeps a d x d "
                              f"covariance and decomposes it every generation; use d up to {CMA_MAX_DIM:,} or "
                              f"{name_of(self, 'optimizer')} adam")

    @property
    def sigma_relative(self) -> float:
        """CMA-ES's first step relative to theta_0's standard deviation (the option or the space's default)."""
        return self.sigma if self.sigma is not None else CMA_SIGMA[self.space]


def parse_dims(dims, name: str = "IntrinsicDimConfig.dims") -> list[int] | None:
    """Subspace sizes, sorted and unique, from a list or a comma-separated string ('10,100', as
    older configs saved them); None for the automatic search. UserError naming `name` (the field)."""
    if dims is None:
        return None
    if isinstance(dims, str):
        parts = [p.strip() for p in dims.split(",") if p.strip()]
    else:
        parts = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if not parts:
        raise UserError(f"{name} is empty; give sizes like [10, 30, 100], or None for the automatic search")
    try:
        out = [_whole(p) for p in parts]
    except (TypeError, ValueError):
        raise UserError(f"{name} {dims!r}: every size must be a whole number, e.g. [10, 30, 100]") from None
    bad = [d for d in out if d < 1]
    if bad:
        raise UserError(f"{name}: d must be at least 1, got {bad[0]}")
    return sorted(set(out))


def _whole(value) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)
