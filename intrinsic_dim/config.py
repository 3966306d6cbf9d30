"""IntrinsicDimConfig: every option of `intrinsic_dim.measure` (and `autoprompt intrinsic-dim`, whose
--help text is the field help), with validation. The seed is part of it.

Options that only make sense together are refused here with one line (SAID or --params outside
model space, CMA-ES with a d too large for its covariance, ...); what needs the model (a prefix on an
architecture without a key/value cache, a template without [T] slots) is refused by `measure` before
any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.errors import UserError
from intrinsic_dim.projections import PROJECTIONS

SPACES = ("model", "prompt", "prefix")
OPTIMIZERS = ("adam", "sgd", "cma")
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
                "(its weights are part of theta and count in d)", "choices": ["none", "linear"]})
    loss: str = field(default="classes", metadata={
        "help": "label-word loss: cross-entropy over the classes' words, or -log p(word) over the vocabulary",
        "choices": ["classes", "vocab"]})
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
        if self.projection not in PROJECTIONS:
            raise UserError(f"unknown projection {self.projection!r}; choose one of: {', '.join(PROJECTIONS)}")
        for name, choices in (("space", SPACES), ("head", ("none", "linear")), ("loss", ("classes", "vocab")),
                              ("optimizer", OPTIMIZERS)):
            if getattr(self, name) not in choices:
                raise UserError(f"unknown --{name} {getattr(self, name)!r}; choose {', '.join(choices)}")
        for name in ("seeds", "max_dim", "steps", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        for name in ("num_virtual_tokens", "max_forward_passes"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.popsize is not None and self.popsize < 2:
            raise UserError(f"--popsize must be at least 2 (got {self.popsize})")
        if not self.min_gain >= 0:
            raise UserError(f"--min-gain must be 0 or more (got {self.min_gain})")
        if self.baseline_steps is not None and self.baseline_steps < 1:
            raise UserError(f"--baseline-steps must be at least 1 (got {self.baseline_steps})")
        if self.bisect_steps < 0:
            raise UserError("--bisect-steps must be 0 or more")
        if not 0 < self.threshold <= 1:
            raise UserError(f"--threshold must be in (0, 1] (got {self.threshold})")
        for name in ("lr", "baseline_lr", "max_projection_gib", "sigma"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive (got {value})")
        self.dims = parse_dims(self.dims)
        self._check_space()
        self._check_cma()
        if self.baseline_lr is None:
            self.baseline_lr = BASELINE_LR[self.space]

    def _check_space(self) -> None:
        """Options that belong to one space only."""
        from softprompt.config import parse_init

        parse_init(self.init)
        if self.space == "model":
            if self.num_virtual_tokens is not None:
                raise UserError("--num-virtual-tokens is for --space prompt or prefix; model space moves weights")
            return
        where = f"--space {self.space} moves the {'prompt vectors' if self.space == 'prompt' else 'prefix key/values'}"
        if self.params != "all":
            raise UserError(f"--params picks model weights, but {where}; leave --params out or use --space model")
        if self.said:
            raise UserError(f"--said scales each weight tensor of the model and does not apply here: {where}, a "
                            "single tensor; leave --said out or use --space model")
        if self.head != "none":
            raise UserError(f"--head linear trains a head with the model's weights; {where} and reads the label "
                            "words; leave --head out or use --space model")

    def _check_cma(self) -> None:
        if self.optimizer != "cma":
            return
        if self.said:
            raise UserError("--said with --optimizer cma: the SAID scales train by gradient; use --optimizer adam")
        if self.dims and max(self.dims) > CMA_MAX_DIM:
            raise UserError(f"--optimizer cma with d={max(self.dims):,}: CMA-ES keeps a d x d covariance and "
                            f"decomposes it every generation; use d up to {CMA_MAX_DIM:,} or --optimizer adam")

    @property
    def sigma_relative(self) -> float:
        """CMA-ES's first step relative to theta_0's standard deviation (the option or the space's default)."""
        return self.sigma if self.sigma is not None else CMA_SIGMA[self.space]


def parse_dims(dims) -> list[int] | None:
    """Subspace sizes, sorted and unique, from a list or a comma-separated string ('10,100', as
    older configs saved them); None for the automatic search."""
    if dims is None:
        return None
    if isinstance(dims, str):
        parts = [p.strip() for p in dims.split(",") if p.strip()]
    else:
        parts = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if not parts:
        raise UserError("--dims is empty; give sizes like 10,30,100 or leave it out for the automatic search")
    try:
        out = [_whole(p) for p in parts]
    except (TypeError, ValueError):
        raise UserError(f"--dims {dims!r}: every size must be a whole number, e.g. 10,30,100") from None
    bad = [d for d in out if d < 1]
    if bad:
        raise UserError(f"--dims: d must be at least 1 (got {bad[0]})")
    return sorted(set(out))


def _whole(value) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)
