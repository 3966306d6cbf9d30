"""The configs of the discrete searches: `AutoPromptConfig` (Shin et al., 2020) and `GCGConfig` (Zou et
al., 2023, as nanoGCG), each a dataclass whose fields carry their help text; the command line is
generated from them and they are saved verbatim (seed included) in the artifact's config.json.

Both share `SearchOptions`, the options of the search loop itself (iterations, batches, scoring, the
start, fluency). GCG's probe sampling is a nested option group, `ProbeSamplingConfig`, as nanoGCG
nests it (None: no probe sampling), and so are its time-to-target techniques, `GCGSchedule` (None:
plain GCG; a preset name such as 'acg' fills the switches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.configs import at_least, field_error, name_of, one_of

SCORES = ("auto", "loglik", "accuracy", "margin")
LOSSES = ("vocab", "classes")


@dataclass
class SearchOptions:
    """Options of the discrete search loop (every discrete search method has them)."""

    iters: int = field(default=20, metadata={"help": "search iterations"})
    batch_size: int = field(default=32, metadata={"help": "training examples per gradient batch"})
    accumulation_steps: int = field(default=1, metadata={"help": "gradient batches averaged per iteration"})
    eval_size: int = field(default=32, metadata={"help": "training examples every candidate is scored on per iteration"})
    dev_size: int = field(default=0, metadata={"help": "dev examples used to pick the best trigger (0 = all)"})
    score: str = field(default="auto", metadata={
        "help": "candidate score on the scoring batch: label log-likelihood (paper); accuracy, ties by "
                "log-likelihood; margin = accuracy, ties by how far the wrong answers are below the top token; "
                "auto = margin for facts (P@1: the answer must beat every other token), log-likelihood for label words",
        "choices": list(SCORES)})
    loss: str = field(default="classes", metadata={
        "help": "loss for gradients and log-likelihood scores: cross-entropy over the classes' label words "
                "(default) or -log p(label words) over the vocabulary (the paper's; facts always use the vocabulary)",
        "choices": list(LOSSES)})
    initial_trigger: str = field(default="auto", metadata={
        "help": "start trigger: 'mask' (masked LMs), 'the', a text with one token per [T], or auto (mask for "
                "masked LMs, as the paper; else 'the')"})
    patience: int = field(default=0, metadata={
        "help": "stop after this many iterations without dev improvement (score, or log-likelihood at equal "
                "score; 0 = never)"})
    no_capitalized: bool = field(default=False, metadata={"help": "never use tokens with capital letters as triggers",
                                                          "flag": "--no-capitalized"})
    ascii_only: bool = field(default=False, metadata={
        "help": "triggers use printable ASCII tokens only (no non-ASCII letters, newlines, tabs or control characters)"})
    packing: str = field(default="auto", metadata={
        "help": "score causal-LM candidates packed behind one shared prefix per example (auto = when possible)",
        "choices": ["auto", "on", "off"]})
    from_template: str | None = field(default=None, metadata={
        "help": "start from a hand-written template, e.g. 'The opposite of {sub_label} is [P]': each of its word "
                "tokens becomes a [T] slot that starts as that token (the task's template is replaced); the "
                "result is never worse on dev than this start"})
    keep: str | None = field(default=None, metadata={
        "help": "with a from_template start: words that stay as written and never change, comma-separated, e.g. 'is,of'"})
    extra_slots: int = field(default=0, metadata={
        "help": "with a from_template start: free [T] slots added before [P] (they start as initial_trigger's token)"})
    mellowmax: bool = field(default=False, metadata={
        "help": "target strings: rank and differentiate the mellowmax of the target's -logits (nanoGCG's option) "
                "instead of their cross-entropy"})
    early_stop: bool = field(default=False, metadata={
        "help": "stop once the best trigger is right on every dev example (target strings: greedy decoding "
                "reproduces every target)"})
    fluency_weight: float = field(default=0.0, metadata={
        "help": "add this times the trigger's own log-likelihood under the model (causal LMs) to the objective, "
                "for readable prompts (FluentPrompt, ARCA); results report the prompt's perplexity. Start small "
                "(0.01): a swap moves this term by nats and a label's log-likelihood by tenths, and 0.1 already "
                "gave 'the the the' at chance accuracy on SST-2 (docs/results/fluency.md)"})
    cross_gradients: bool = field(default=True, metadata={
        "help": "searching several models (--model a,b; models= in the API), one of another tokenizer: it also adds its gradient to the proposals, through the "
                "tokens whose text is one token on it (--no-cross-gradients: it only scores the candidates' text)"})
    gradient_mix: str = field(default="sum", metadata={
        "help": "searching several models: how their one-hot gradients make the proposals. sum: added as they are "
                "(the gradient of the mean score; where one model's gradient is larger, it chooses the candidates); "
                "turns: the models propose in turn (a slot's num_cand candidates are each model's best num_cand / "
                "models tokens), so each has an equal say in the proposals; the mean score still picks",
        "choices": ["sum", "turns"]})
    score_mix: str = field(default="mean", metadata={
        "help": "searching several models: how their scores rank the candidates. mean: the models' mean score "
                "(a large gain on one model can pay for a loss on another); worst: a candidate's smallest gain "
                "over the current trigger among the models, so a swap is kept when it helps every model (or, "
                "in a beam, hurts the least); the best trigger is still the one with the best mean dev score",
        "choices": ["mean", "worst"], "added": "0.3.0"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same result on CPU"})

    def check_search(self) -> None:
        """UserError (naming the field) for options out of range or that need another option."""
        at_least(self, 1, "iters", "batch_size", "accumulation_steps", "eval_size")
        at_least(self, 0, "dev_size", "patience", "extra_slots", "fluency_weight")
        one_of(self, "score", SCORES)
        one_of(self, "loss", LOSSES)
        one_of(self, "packing", ("auto", "on", "off"))
        one_of(self, "gradient_mix", ("sum", "turns"))
        one_of(self, "score_mix", ("mean", "worst"))
        if (self.keep or self.extra_slots) and not self.from_template:
            which = "keep" if self.keep else "extra_slots"
            raise field_error(self, which, f"shapes a start from a hand-written template; give {type(self).__name__}"
                              ".from_template too")
        if self.from_template is not None and not self.from_template.strip():
            raise field_error(self, "from_template", "is empty; give a hand-written template with [P], e.g. "
                              "'{sentence} It was [P] .'")
        if self.from_template and self.initial_trigger not in ("auto", "the", "mask"):
            raise field_error(self, "initial_trigger", f"is {self.initial_trigger!r}, but a from_template start sets "
                              "the start trigger itself; leave it out (or give the/mask for the extra slots)")

    @property
    def ascii_tokens(self) -> bool:
        """Whether triggers are restricted to printable-ASCII tokens."""
        return self.ascii_only


@dataclass
class AutoPromptConfig(SearchOptions):
    """AutoPrompt (Shin et al., 2020): each iteration swaps one slot (or every slot) to the HotFlip
    candidate that scores best on a fresh training batch (the paper's behaviour is the default)."""

    num_cand: int = field(default=10, metadata={"help": "HotFlip candidates per slot (top-k of -grad . E)"})
    slots: str = field(default="random", metadata={
        "help": "which slots get candidates each iteration: one random slot (paper) or all slots",
        "choices": ["random", "all"]})
    beam_size: int = field(default=1, metadata={"help": "trigger sequences kept per iteration (1 = greedy, as the paper)"})

    def __post_init__(self):
        self.check_search()
        at_least(self, 1, "num_cand", "beam_size")
        one_of(self, "slots", ("random", "all"))


@dataclass
class ProbeSamplingConfig:
    """GCG probe sampling (Zhao et al., 2024): a smaller draft model with the same tokenizer ranks every
    candidate; the target model scores a probe set and the draft's best."""

    draft_model: str = field(default="", metadata={
        "help": "gcg probe sampling: a smaller model with the same tokenizer that ranks all candidates; the "
                "target model scores a probe set and the draft's best (Zhao et al., 2024)"})
    probe_ratio: int = field(default=8, metadata={"help": "gcg probe sampling: the probe set is search-width / this"})
    probe_factor: int = field(default=16, metadata={
        "help": "gcg probe sampling: the target model also scores (1 - rank agreement) * search-width / this of "
                "the draft's best candidates"})

    def __post_init__(self):
        if not str(self.draft_model).strip():
            raise field_error(self, "draft_model", "is empty; probe sampling needs a draft model (alias, folder or "
                              "hub name)")
        at_least(self, 1, "probe_ratio", "probe_factor")


SCHEDULES = ("none", "acg", "faster", "igcg", "all", "fast")


@dataclass
class GCGSchedule:
    """GCG's time-to-target techniques (the switches default to the named preset's values; see
    `autoprompt.schedule` for what each does and where it comes from):

    - ACG (Haize Labs, 2024): n_replace decays from n_replace_start to GCGConfig.n_replace and the
      search width grows from search_width_start to GCGConfig.search_width over `ramp` iterations;
      a historical buffer of the best triggers ever scored (`history`), each kept with its score;
    - Faster-GCG (Li et al., 2024): the gradient regularised by the distance between token embeddings
      (`distance_weight`); no trigger scored twice (`repeats=False`);
    - I-GCG (Jia et al., 2024): the best single swaps merged into multi-slot candidates (`merge`);
    - stop once greedy generation reproduces every training target (`stop_on_success`).

    Presets: none (every switch off: plain GCG, the switches one by one), acg, faster, igcg, all (every
    technique together), and fast: the combination that reached a given loss soonest on smollm2-135m
    (merged swaps, half the search width at first, the buffer, no repeats, a light distance
    regularisation, the early stop)."""

    preset: str = field(default="none", metadata={
        "flag": "--schedule", "choices": list(SCHEDULES),
        "help": "gcg time-to-target schedule: a preset for the switches below, each of which may still be given "
                "(none: all off; acg: decaying n_replace, growing search width, historical buffer, early stop; "
                "faster: distance-regularised gradient, no repeats; igcg: merged best swaps; all: every technique; "
                "fast: merged swaps, half the width at first, buffer, no repeats, light distance weight, early "
                "stop, the quickest to a target loss on smollm2-135m)"})
    n_replace_start: int | None = field(default=None, metadata={
        "help": "gcg schedule: slots changed per candidate at the first iteration, falling linearly to --n-replace "
                "over --ramp iterations (ACG; default: the preset's; none: --n-replace throughout)"})
    search_width_start: int | None = field(default=None, metadata={
        "help": "gcg schedule: candidates at the first iteration, growing linearly to --search-width over --ramp "
                "iterations (ACG; default: the preset's; none: --search-width throughout)"})
    ramp: int | None = field(default=None, metadata={
        "help": "gcg schedule: iterations over which n_replace and the search width move from their start values "
                "to --n-replace and --search-width (default: the preset's)"})
    history: int | None = field(default=None, metadata={
        "help": "gcg schedule: historical buffer, the best triggers ever scored kept with their scores (not rescored), "
                "each iteration sampling around the best (ACG, nanoGCG's buffer); 0: off (default: the preset's)"})
    repeats: bool | None = field(default=None, metadata={
        "help": "gcg schedule: --no-repeats never scores a trigger twice: candidates scored before are dropped and "
                "more are sampled, the buffer keeps its scores (Faster-GCG; default: the preset's)"})
    distance_weight: float | None = field(default=None, metadata={
        "help": "gcg schedule: rank each slot's tokens by gradient + this x distance of their embedding from the "
                "slot's current token (both standardized per slot; Faster-GCG); 0: off (default: the preset's)"})
    merge: int | None = field(default=None, metadata={
        "help": "gcg schedule: after scoring, merge the best this-many candidates' swaps one by one into "
                "multi-slot candidates and score those too (I-GCG); 0: off (default: the preset's)"})
    stop_on_success: bool | None = field(default=None, metadata={
        "help": "gcg schedule: stop once greedy generation reproduces every training target (checked when the kept "
                "trigger gets every target token right on the scoring batch; default: the preset's)"})

    def __post_init__(self):
        one_of(self, "preset", SCHEDULES)

    def resolved(self, config: GCGConfig) -> GCGSchedule:
        """This schedule with every switch left at None set from its preset (values that depend on the
        config's search width and n_replace use `config`'s), checked."""
        values = {**preset_values(self.preset, config), **{k: v for k, v in vars(self).items() if v is not None}}
        out = GCGSchedule(**values)
        at_least(out, 1, "n_replace_start", "search_width_start")
        at_least(out, 0, "ramp", "history", "distance_weight", "merge")
        if out.merge == 1:
            raise field_error(out, "merge", "must be 0 (off) or at least 2 (a merge joins two swaps or more), got 1")
        if out.history and config.buffer_size > 1:
            raise field_error(out, "history", f"is a buffer of its own; give it or {name_of(config, 'buffer_size')} "
                              f"{config.buffer_size}, not both")
        return out

    @property
    def active(self) -> bool:
        """Whether any technique is on (a resolved schedule with every switch off is plain GCG)."""
        return bool(self.ramp or self.history or not self.repeats or self.distance_weight or self.merge
                    or self.stop_on_success)


def preset_values(preset: str, config: GCGConfig) -> dict:
    """The switches of a named preset for this config. The values of 'fast' (and the distance weight)
    were chosen on smollm2-135m, 20 slots, width 64, top-k 64, float32 on the CPU, by the loss
    reached per candidate scored; benchmarks/bench_gcg_ttt.py measures them against nanoGCG."""
    off = {"n_replace_start": config.n_replace, "search_width_start": config.search_width, "ramp": 0, "history": 0,
           "repeats": True, "distance_weight": 0.0, "merge": 0, "stop_on_success": False}
    acg = {"n_replace_start": max(config.n_replace, 4), "search_width_start": max(1, config.search_width // 4),
           "ramp": 40, "history": 8, "stop_on_success": True}
    faster = {"distance_weight": 0.2, "repeats": False}
    igcg = {"merge": 7}
    fast = {"search_width_start": max(1, config.search_width // 2), "ramp": 200, "history": 8, "repeats": False,
            "distance_weight": 0.2, "merge": 7, "stop_on_success": True}
    return {"none": off, "acg": {**off, **acg}, "faster": {**off, **faster}, "igcg": {**off, **igcg},
            "all": {**off, **acg, **faster, **igcg}, "fast": {**off, **fast}}[preset]


@dataclass
class GCGConfig(SearchOptions):
    """GCG (Zou et al., 2023; nanoGCG): each iteration samples search_width candidates, each with
    n_replace random slots set to one of their top-k tokens by gradient, and keeps the best."""

    search_width: int = field(default=128, metadata={"help": "gcg: candidates per iteration"})
    topk: int = field(default=256, metadata={"help": "gcg: the tokens with the most negative gradient a slot may take"})
    n_replace: int = field(default=1, metadata={"help": "gcg: slots changed in each candidate"})
    buffer_size: int = field(default=1, metadata={
        "help": "gcg: triggers kept across iterations, best first; each iteration samples around the best "
                "(nanoGCG's buffer)"})
    allow_non_ascii: bool = field(default=False, metadata={
        "help": "gcg: let triggers use any token (default, as nanoGCG: printable ASCII tokens only)"})
    filter_retokenized: bool = field(default=True, metadata={
        "help": "gcg: drop candidates whose text does not tokenize back to the same ids in its context"})
    probe_sampling: ProbeSamplingConfig | None = field(default=None, metadata={
        "help": "probe sampling with a draft model (None: every candidate is scored by the model)"})
    schedule: GCGSchedule | None = field(default=None, metadata={
        "help": "time-to-target techniques (a GCGSchedule, or a preset name: none, acg, faster, igcg, all, fast; None: plain GCG)"})

    def __post_init__(self):
        self.check_search()
        at_least(self, 1, "search_width", "topk", "n_replace", "buffer_size")
        if isinstance(self.schedule, str):
            self.schedule = GCGSchedule(preset=self.schedule)
        if self.schedule is not None:
            self.schedule = self.schedule.resolved(self)

    @property
    def ascii_tokens(self) -> bool:
        return self.ascii_only or not self.allow_non_ascii

    @classmethod
    def upgrade(cls, values: dict) -> dict:
        """A config saved by package 0.2 (one flat SearchConfig): the probe-sampling options nest, and
        its beam is GCG's buffer."""
        values = dict(values)
        if "beam_size" in values and "buffer_size" not in values:
            values["buffer_size"] = values.pop("beam_size")
        flat = {k: values.pop(k) for k in ("draft_model", "probe_ratio", "probe_factor") if k in values}
        if flat.get("draft_model") and "probe_sampling" not in values:
            values["probe_sampling"] = flat
        return values
