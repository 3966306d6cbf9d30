"""One prompt searched for several models at once: the objective is the mean over the models.

    r = autoprompt.search(task, train, dev, config, models=[other_lm, "gemma3-270m"])

The task's model comes first: its tokenizer writes the candidates and its one-hot gradient proposes
them. A model with the same tokenizer (the same vocabulary) adds its gradient, which is over the
same token ids, so the sum ranks candidate tokens for all of them (the gradient of their mean, up to
a factor), and scores the candidates' ids as they are. A model with another tokenizer scores each candidate as
text: decoded, written into the template (frozen_lm.transfer) and read by its tokenizer, as the
prompt will be read on that model. Its one-hot gradient is over another vocabulary, so it adds it
through the tokens the two vocabularies share: where a slot's text is one token there, a token whose
text is one token there too gets that token's gradient (autoprompt.cross_vocab; config
cross_gradients, on by default). With gradient_mix 'turns', the models propose in turn instead (the
candidates are each model's best tokens), so that a model whose gradient is larger does not choose
every candidate alone. A candidate's score is the mean over the models of its score on
the same training examples (score_mix 'mean'); with score_mix 'worst' candidates rank by their
smallest gain over the current trigger among the models, so that one model's gain cannot pay for
another's loss (a swap that helps both a little beats one that helps one a lot and hurts the other).
The dev score that keeps the best trigger is the mean of the
models' dev scores (fluency, when asked, is the trigger's own log-likelihood on the models that read
its tokens). One model's activations at a time: gradients and scores are computed model by model.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from autoprompt.cross_vocab import VocabMap, mapped_gradient, slot_template
from autoprompt.scoring import Budget, Scores, with_backoff
from autoprompt.search import Searcher
from frozen_lm import data as data_mod
from frozen_lm import distributed
from frozen_lm.artifact import model_info
from frozen_lm.configs import field_error
from frozen_lm.encode import Rows
from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound, score
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask
from frozen_lm.transfer import TextPrompt, drift

logger = logging.getLogger(__name__)
SHAPE = ("name", "architecture", "vocab_size", "hidden_size", "n_layers")  # what a resume compares


def resolve(models, like: FrozenLM) -> list[FrozenLM]:
    """FrozenLMs from `models=` entries (a FrozenLM, or a name loaded on the first model's device and dtype)."""
    if isinstance(models, str | FrozenLM):
        models = [models]
    out = []
    for m in models or []:
        if isinstance(m, FrozenLM):
            out.append(m)
        elif isinstance(m, str) and m.strip():
            out.append(FrozenLM.load(m.strip(), str(like.device), str(like.dtype).split(".")[-1]))
        else:
            raise UserError(f"models= takes models (FrozenLM) or their names, got {type(m).__name__} {m!r}")
    return out


def shares_tokenizer(lm: FrozenLM, first: FrozenLM) -> bool:
    """Whether `lm` reads token ids as `first` does (the same vocabulary)."""
    return lm.tokenizer is first.tokenizer or lm.tokenizer.get_vocab() == first.tokenizer.get_vocab()


def describe(lm: FrozenLM, first: FrozenLM) -> dict:
    """What the artifact records of a model searched besides the task's: its info and whether it
    shares the first model's tokenizer ('shared': gradient and ids) or reads the text ('text')."""
    return {**model_info(lm), "tokenizer": "shared" if shares_tokenizer(lm, first) else "text"}


def other_models(run) -> list[FrozenLM]:
    """The models of `run.inputs['models']` (a resumed run without it: the saved run's, loaded by name);
    UserError when a resume would search on other models than the saved run did."""
    given, previous, first = run.inputs.get("models"), run.previous, run.task.lm
    saved = list(getattr(previous, "models", None) or []) if previous is not None else []
    if given is None and saved:
        names = [m.get("name") for m in saved]
        try:
            given = resolve(names, first)
        except (UserError, OSError, ValueError) as e:
            raise UserError(f"resume: the saved search also searched on {', '.join(map(str, names))}, which could not be "
                            f"loaded by name ({e}); give them as models=") from None
    lms = resolve(given, first)
    if previous is not None:
        now = [{k: d.get(k) for k in SHAPE} for d in (model_info(lm) for lm in lms)]
        before = [{k: d.get(k) for k in SHAPE} for d in saved]
        if now != before:
            show = lambda ds: "[" + ", ".join(str(d.get("name")) for d in ds) + "]"  # noqa: E731
            raise UserError(f"resume: the saved search's objective was over the task's model and {show(before)}, but "
                            f"models= gives {show(now)}; give the same models (they are part of what was searched)")
    return lms


def make_searcher(run, proposer, train_enc, dev_enc, lms: list[FrozenLM]) -> Searcher:
    """The run's searcher: one model's, or the mean over the task's model and `lms`."""
    task, config = run.task, run.config
    if not lms:
        return Searcher(task, config, proposer, train_enc, dev_enc)
    if getattr(config, "probe_sampling", None) is not None:
        raise field_error(config, "probe_sampling", "ranks candidates with a draft model of one model; it does not "
                          "combine with models= (several models' mean); leave it out")
    shared, texts = [], []
    for lm in lms:
        other = PromptTask.from_spec(lm, task.spec)
        if shares_tokenizer(lm, task.lm):
            enc = other.encode(run.train), other.encode(run.dev)
            _same_examples(lm, train_enc, enc[0], "train")
            _same_examples(lm, dev_enc, enc[1], "dev")
            shared.append((other, *enc))
        else:
            _same_examples(lm, train_enc, other.encode(run.train), "train")
            _same_examples(lm, dev_enc, other.encode(run.dev), "dev")
            texts.append(other)
    if texts:
        if distributed.world_size() > 1:
            raise UserError("models= with a model of another tokenizer runs in one process (its candidates are "
                            "retokenized one by one); run without torchrun")
        for name, enc in (("train", train_enc), ("dev", dev_enc)):
            if len(enc.rows) != len(run.splits[name]):
                raise UserError(f"models=: the task's model skips {len(run.splits[name]) - len(enc.rows)} {name} "
                                "examples (facts whose answer is several tokens), and a model of another tokenizer "
                                "scores the data's rows: score the first token (PromptTask.multi_token 'first') or "
                                "drop those facts")
    searcher = MultiSearcher(task, config, proposer, train_enc, dev_enc, shared, texts, run.train, run.dev)
    logger.info("search on %d models: %s (the mean of their scores; %d add gradients, %d read the text)",
                1 + len(lms), ", ".join([task.lm.name] + [lm.name for lm in lms]), 1 + len(shared), len(texts))
    return searcher


def _same_examples(lm, first, other, split: str) -> None:
    """UserError when a model keeps other examples than the task's model (facts whose answer is several
    tokens on one tokenizer are skipped there)."""
    if len(first.rows) != len(other.rows):
        raise UserError(f"models=: {lm.name} keeps {len(other.rows)} of the {split} examples where the task's model "
                        f"keeps {len(first.rows)} (facts whose answer is several tokens are skipped); a mean over "
                        "models needs the same examples: score the first token (PromptTask.multi_token 'first') or "
                        "drop those facts")


def models_of(searcher) -> list[dict]:
    """What the artifact records of the models searched besides the task's ([] for one model)."""
    return list(getattr(searcher, "described", []))


def per_model(searcher, run, best: torch.Tensor) -> dict:
    """The best trigger on every model: '{split}_models' [{model, tokenizer ('first', 'shared', 'text'),
    its metrics (a text model's with the drift of the trigger's tokens)}] and '{split}_mean', the
    mean of their metric, for dev and (when given) test."""
    from frozen_lm.evaluate import DiscretePrompt, evaluate

    tasks = [(searcher.task, "first")] + [(v.task, "shared") for v in searcher.views]
    out, metric = {}, searcher.task.metric
    for split in ("dev", "test"):
        if split not in run.splits:
            continue
        data = run.splits[split]
        rows = [{"model": task.lm.name, "tokenizer": how,
                 **evaluate(task, data, DiscretePrompt.from_ids(task.lm.tokenizer, best))} for task, how in tasks]
        rows += [{"model": t.task.lm.name, "tokenizer": "text", **evaluate(t.task_of(best), data), "drift": t.drift(best)}
                 for t in searcher.texts]
        out[f"{split}_models"] = rows
        out[f"{split}_mean"] = sum(r[metric] for r in rows) / len(rows)
    return out


def in_turns(grads: list[torch.Tensor], allowed: torch.Tensor) -> torch.Tensor:
    """Several models' one-hot gradients (each (S, V), lower = better; inf = no say on that token)
    -> one (S, V) float64 whose per-slot ascending order takes the models' best allowed tokens in
    turn: each token's value is its best rank over the models (0 = some model's best), ties broken
    toward tokens the models agree on (mean rank). Its top-k per slot is each model's best k / M
    tokens. A model whose row is constant over the allowed tokens (no say for that slot, e.g. a slot
    of several tokens on another tokenizer) is left out of that slot; allowed (V,) bool."""
    n_vocab = grads[0].shape[1]
    ranks = []
    for grad in grads:
        g = grad.double().masked_fill(~allowed.to(grad.device)[None], float("inf"))
        rank = torch.empty_like(g)
        rank.scatter_(1, g.argsort(dim=1, stable=True), torch.arange(n_vocab, dtype=g.dtype, device=g.device).expand_as(g))
        valid = torch.isfinite(g)
        flat = g.masked_fill(~valid, -float("inf")).amax(dim=1) <= g.masked_fill(~valid, float("inf")).amin(dim=1)
        rank[flat] = float(n_vocab)  # no say for that slot
        ranks.append(rank.masked_fill(~valid, float(n_vocab)))
    ranks = torch.stack(ranks)
    return ranks.amin(dim=0) + ranks.mean(dim=0) / (n_vocab + 1)


def mean_scores(parts: list[Scores], fluent: int) -> Scores:
    """The mean over models of their per-candidate scores (correct: a mean count, float64); fluency:
    the mean over the first `fluent` parts (the models that read the trigger's own tokens)."""
    n = len(parts)
    return Scores(sum(p.loglik for p in parts) / n, sum(p.correct.double() for p in parts) / n,
                  sum(p.margin for p in parts) / n, sum(p.fluency for p in parts[:fluent]) / fluent,
                  torch.zeros_like(parts[0].loglik))


def worst_gains(values: list[torch.Tensor], reference: list[float]) -> torch.Tensor:
    """(N,) per candidate, the smallest over the models of its value minus the reference's value on
    that model. values: one (N,) tensor per model (the score to maximize); reference: the current
    trigger's value on each model. A candidate unscored on a model (-inf) stays -inf."""
    return torch.stack([v.double() - r for v, r in zip(values, reference)]).min(dim=0).values


class MultiSearcher(Searcher):
    """The search loop's searcher over several models: the first (`task`'s) proposes; `views` (same
    tokenizer, Searcher.on) add gradients and score ids; `texts` (TextModel) score the candidates' text.
    Gradients are summed or taken in turns (gradient_mix); candidates ranked by the models' mean score
    or by their worst gain over the current trigger (score_mix); dev scores averaged over every model."""

    def __init__(self, task, cfg, proposer, train, dev, shared: list, texts: list[PromptTask], train_data, dev_data):
        super().__init__(task, cfg, proposer, train, dev)
        self.views = [self.on(other, tr, dv) for other, tr, dv in shared]
        dev_data = data_mod.load(dev_data)
        dev_data = data_mod.Dataset(dev_data.name, dev_data.rows[: len(self.dev)], dev_data.lines[: len(self.dev)])
        self.texts = [TextModel(other, task, train_data, dev_data) for other in texts]
        self.eval_idx: torch.Tensor | None = None
        self.reference: list[float] | None = None  # score_mix 'worst': the current trigger's value per model

    @property
    def described(self) -> list[dict]:
        return ([{**model_info(v.task.lm), "tokenizer": "shared"} for v in self.views]
                + [{**model_info(t.task.lm), "tokenizer": "text"} for t in self.texts])

    def _batches(self, it: int):
        g, grad_batches, eval_idx = super()._batches(it)
        self.eval_idx = eval_idx  # the other models score the same examples
        return g, grad_batches, eval_idx

    def gradient(self, trigger: torch.Tensor, batches: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
        """(S, V) the models' one-hot gradients over the first model's vocabulary (a model sharing
        the tokenizer: none past its vocabulary; another tokenizer's: carried through the shared
        tokens, when cross_gradients), summed (gradient_mix 'sum') or taken in turns (in_turns: each
        model proposes its best tokens); and the models' mean loss."""
        turns = self.cfg.gradient_mix == "turns"
        first, loss = super().gradient(trigger, batches)
        grads, losses = [first], [loss]
        for view in self.views:
            grad, part = view.gradient(trigger, batches)
            v = min(grad.shape[1], first.shape[1])
            mine = torch.full_like(first, float("inf") if turns else 0.0)
            mine[:, :v] = grad[:, :v].to(first.device)  # tokens past its vocabulary: no say
            grads.append(mine)
            losses.append(part)
        if self.cfg.cross_gradients:
            for text in self.texts:
                grad, part = text.gradient(self, trigger, batches)
                grads.append(grad.to(first.device))
                losses.append(part)
        total = in_turns(grads, self.allowed) if turns else sum(grads)
        return total, sum(losses) / len(losses)

    def score_pool(self, rows, pool: torch.Tensor, n_beam: int, g: torch.Generator) -> Scores:
        parts = [super().score_pool(rows, pool, n_beam, g)]
        for view in self.views:
            parts.append(view.score_pool(view.train.subset(self.eval_idx), pool, n_beam, g))
        for text in self.texts:
            parts.append(text.score(self.eval_idx, pool, self.kind))
        mean = mean_scores(parts, 1 + len(self.views))
        if self.cfg.score_mix != "worst":
            return mean
        values = [self.value(p) for p in parts]
        if n_beam:  # the pool starts with the beam, whose first is the current trigger; a merge (n_beam 0)
            self.reference = [float(v[0]) for v in values]  # is scored on the same rows, against it
        return mean._replace(worst_gain=worst_gains(values, self.reference))

    def _rank(self, scores: Scores) -> torch.Tensor:
        """score_mix 'mean': the mean score's rank (Searcher._rank); 'worst': the candidates' smallest
        gain over the current trigger among the models, plus fluency-weight times their fluency."""
        if self.cfg.score_mix != "worst":
            return super()._rank(scores)
        return scores.worst_gain + self.cfg.fluency_weight * scores.fluency

    def dev_score(self, trigger: torch.Tensor) -> tuple[float, float]:
        """The mean over the models of (metric, mean label log-likelihood) on their dev rows."""
        kind = "vocab" if self.task.is_target else self.cfg.loss
        parts = [super().dev_score(trigger)] + [v.dev_score(trigger) for v in self.views]
        parts += [t.dev_score(trigger, kind) for t in self.texts]
        return sum(p[0] for p in parts) / len(parts), sum(p[1] for p in parts) / len(parts)


class TextModel:
    """A model with another tokenizer: a candidate trigger of the first model (`source`) is decoded
    to text, written into the template and read by this model's tokenizer (frozen_lm.transfer)."""

    def __init__(self, task: PromptTask, source: PromptTask, train, dev):
        self.task, self.source = task, source
        self.train, self.dev = data_mod.load(train), data_mod.load(dev)
        self.budget = Budget.for_device(task.lm.device)
        self._tasks: dict[tuple, PromptTask] = {}
        self._views: dict[str, Searcher] = {}
        self.vocab: VocabMap | None = None

    def text(self, trigger) -> TextPrompt:
        ids = [int(i) for i in trigger]
        tok = self.source.lm.tokenizer
        return TextPrompt.from_tokens(self.source.spec.template, ids, [tok.decode([i]) for i in ids], tok.decode(ids))

    def task_of(self, trigger) -> PromptTask:
        """This model's task with the trigger written into the template as text (cached)."""
        key = tuple(int(i) for i in trigger)
        if key not in self._tasks:
            if len(self._tasks) > 4096:
                self._tasks.clear()
            self._tasks[key] = self.task.derive(template=self.text(trigger).written())
        return self._tasks[key]

    def gradient(self, searcher: Searcher, trigger: torch.Tensor, batches: list[torch.Tensor]
                 ) -> tuple[torch.Tensor, float]:
        """(S, V1) this model's one-hot gradient carried to the first model's vocabulary
        (autoprompt.cross_vocab: where a slot's text and a token's text are each one token here) and
        its mean loss on the batches. This model reads the slots' text as its own tokens, in a
        template with one [T] per token (cross_vocab.slot_template), as the written template reads."""
        prompt, tok = self.text(trigger), self.task.lm.tokenizer
        ids = [list(tok(piece, add_special_tokens=False).input_ids) for piece in prompt.pieces()]
        counts, current = [len(x) for x in ids], torch.tensor(sum(ids, []), dtype=torch.long)
        n_first = self.source.lm.vocab_size
        if not len(current):
            return torch.zeros(len(counts), n_first), float("nan")
        grad, loss = self._view(searcher, slot_template(prompt.template, counts)).gradient(current, batches)
        if self.vocab is None:
            self.vocab = VocabMap(self.source.lm.tokenizer, tok, n_first)
        maps = [self.vocab.of(rule) if n == 1 else None for rule, n in zip(prompt.slot_rules(), counts)]
        return mapped_gradient(grad, counts, current.to(grad.device), maps, n_first), loss

    def _view(self, searcher: Searcher, template: str) -> Searcher:
        """The searcher on this model's task with `template` (its own trigger tokens in the slots),
        the trigger's fluency left out (cached by template)."""
        if template not in self._views:
            if len(self._views) > 64:
                self._views.clear()
            task = self.task.derive(template=template)
            view = searcher.on(task, task.encode(self.train), task.encode(self.dev))
            view.cfg = replace(searcher.cfg, fluency_weight=0.0)
            self._views[template] = view
        return self._views[template]

    def drift(self, trigger) -> dict:
        """What this model's tokenizer makes of the trigger's text (frozen_lm.transfer.drift)."""
        return drift(self.text(trigger), self.task.lm.tokenizer)

    def dev_score(self, trigger, kind: str) -> tuple[float, float]:
        task = self.task_of(trigger)
        s = score(Bound(task), task.encode(self.dev).rows, 32)
        return s.correct / max(s.n, 1), s.mean(kind)

    @torch.no_grad()
    def score(self, idx: torch.Tensor, pool: torch.Tensor, kind: str) -> Scores:
        """Scores (sums over the examples `idx` of the training data) of every pool trigger as text."""
        rows = data_mod.Dataset(self.train.name, [self.train.rows[int(i)] for i in idx])
        encoded = [self.task_of(t).encode(rows).rows for t in pool]
        out = Scores.zeros(len(encoded))
        at = 0
        while at < len(encoded):
            at += with_backoff(lambda b, a=at: self._chunk(encoded, a, b, kind, out), self.budget)
        return out

    def _chunk(self, encoded: list[Rows], at: int, budget: Budget, kind: str, out: Scores) -> int:
        """Score candidates at, at+1, ... in one pass as fits the budget; returns how many."""
        lm, first = self.task.lm, encoded[at]
        per = first.input_ids.shape[0] * first.predict_pos.shape[1] * lm.vocab_size
        n, tokens = 0, 0
        while at + n < len(encoded) and (n == 0 or (tokens + encoded[at + n].input_ids.numel() <= budget.full_tokens
                                                  and (n + 1) * per <= budget.logits)):
            tokens += encoded[at + n].input_ids.numel()
            n += 1
        stacked = cat_rows(encoded[at:at + n], lm.pad_id).to(lm.device)
        logits = lm.logits_at(stacked.predict_pos, input_ids=stacked.input_ids, attention_mask=stacked.attention_mask)
        loglik, hit, margin = self.task.example_scores(logits, stacked, kind)
        b = first.n_examples
        out.loglik[at:at + n] = loglik.view(n, b).double().sum(1).cpu()
        out.correct[at:at + n] = hit.view(n, b).long().sum(1).cpu()
        out.margin[at:at + n] = margin.view(n, b).double().sum(1).cpu()
        return n


def cat_rows(parts: list[Rows], pad_id: int) -> Rows:
    """Rows of several candidates (the same examples, different lengths) as one Rows, candidate-major,
    right-padded to the longest."""
    width = max(p.input_ids.shape[1] for p in parts)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    first = parts[0]
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    return replace(first, input_ids=torch.cat([pad(p.input_ids, pad_id) for p in parts]),
                   attention_mask=torch.cat([pad(p.attention_mask, 0) for p in parts]),
                   trigger_pos=cat("trigger_pos"), predict_pos=cat("predict_pos"), labels=cat("labels"),
                   targets=None if first.targets is None else cat("targets"))
