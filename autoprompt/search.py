"""The discrete search loop on a FrozenLM, shared by AutoPrompt and GCG.

Each iteration: average the one-hot gradient of the label loss over `accumulation_steps` batches,
let the method's proposer turn it into candidate triggers (AutoPrompt: HotFlip top-k for one random
slot or every slot, autoprompt.hotflip; GCG: sampled multi-slot swaps, autoprompt.gcg), score every
candidate (and the beam) on a fresh batch in packed forward passes, keep the best, and evaluate the
dev set after each accepted change, keeping the best trigger by dev score (ties, such as P@1 = 0 on
a hard fact relation, go to the higher mean dev label log-likelihood).

The randomness of iteration i comes from a generator seeded by (seed, i), so a run resumed after
iteration i continues exactly as an uninterrupted one would. Under torch.distributed every process
draws the same batches and candidates; each computes the gradient on its share of every gradient
batch and scores the candidates on its share of the scoring batch and the dev split, and the sums
are all-reduced (frozen_lm.distributed), so all processes keep the same trigger.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch

from autoprompt.candidates import allowed_tokens
from autoprompt.config import SearchOptions
from autoprompt.scoring import Budget, Scores, can_pack, length_batch, with_fluency_reads
from frozen_lm import distributed
from frozen_lm.configs import field_error, name_of
from frozen_lm.errors import UserError
from frozen_lm.evaluate import TriggerBound, score
from frozen_lm.fluency import fluency_positions, row_fluency
from frozen_lm.task import Encoded, PromptTask
from frozen_lm.train import loss_weights

logger = logging.getLogger(__name__)


@dataclass
class State:
    """Everything a resumed search needs; saved after every iteration."""

    iteration: int  # iterations completed
    beam: torch.Tensor  # (b, S) current trigger sequences, best first
    beam_scores: torch.Tensor  # (b,) float64 their scores on the last scoring batch
    best: torch.Tensor  # (S,) best trigger by dev score
    best_dev: float
    current_dev: float
    stale: int = 0  # iterations since the last dev improvement
    history: list[dict] = field(default_factory=list)
    best_dev_loglik: float = float("-inf")  # mean dev label log-likelihood of `best` (breaks ties in best_dev)
    current_dev_loglik: float = float("-inf")


class Proposer(Protocol):
    """What a discrete search method adds to the loop: candidate triggers from the state and the
    iteration's gradient batches, and how the pool of candidates is scored.

    start(searcher): checks and set-up once the searcher is built; candidates(searcher, state, g,
    grad_batches) -> ((N, S) candidates, the slot changed or None for
    several, the gradient batches' mean loss); score(searcher, rows, pool, n_beam, g) -> Scores of
    every pool row (the beam first); beam_size: triggers kept per iteration; share: score
    candidates in groups behind their shared leading slots (autoprompt.scoring.slot_groups).
    Optional: refine(searcher, rows, pool, scores, n_beam, g) -> (pool, scores) with triggers added
    after scoring; notes() -> dict added to the iteration's record; finished(searcher, state) -> bool,
    a reason of its own to stop (GCG's schedules, autoprompt.schedule)."""

    beam_size: int
    share: bool

    def start(self, searcher: Searcher) -> None: ...

    def candidates(self, searcher: Searcher, state: State, g: torch.Generator, grad_batches: list[torch.Tensor]
                   ) -> tuple[torch.Tensor, int | None, float]: ...

    def score(self, searcher: Searcher, rows, pool: torch.Tensor, n_beam: int, g: torch.Generator) -> Scores: ...


def initial_trigger(task: PromptTask, spec: str, config=None) -> torch.Tensor:
    """(S,) token ids for the first trigger (config: whose initial_trigger field errors name)."""
    name = name_of(config, "initial_trigger") if config is not None else "initial_trigger"
    tok, n = task.lm.tokenizer, task.template.n_triggers
    if spec == "auto":
        spec = "mask" if task.lm.is_masked else "the"
    if spec == "mask":
        if not task.lm.is_masked:
            raise UserError(f"{name} 'mask' needs a masked LM (this model has no mask token); use 'the'")
        return torch.full((n,), tok.mask_token_id, dtype=torch.long)
    if spec == "the":
        return torch.full((n,), tok(" the" if not task.lm.is_masked else "the", add_special_tokens=False).input_ids[-1])
    ids = tok(spec, add_special_tokens=False).input_ids
    if len(ids) != n:
        raise UserError(f"{name} {spec!r} is {len(ids)} tokens, but the template has {n} [T] slots")
    return torch.tensor(ids, dtype=torch.long)


class Searcher:
    """One search run: encoded splits, the allowed-token mask, the method's proposer and the
    per-iteration step."""

    def __init__(self, task: PromptTask, cfg: SearchOptions, proposer: Proposer, train: Encoded, dev: Encoded):
        if task.template.n_triggers == 0:
            raise UserError(f"template {task.template.text!r} has no [T] slots to search; add some, e.g. '{{sentence}} [T] [T] [P]'")
        if len(train.rows) == 0:
            raise UserError("the training set is empty after encoding; nothing to search on")
        self.task, self.cfg, self.seed, self.proposer = task, cfg, cfg.seed, proposer
        self.train, self.dev = train.rows, dev.rows
        if cfg.dev_size and len(self.dev) > cfg.dev_size:
            self.dev = self.dev.subset(slice(0, cfg.dev_size))
        self.allowed = allowed_tokens(task.lm.tokenizer, task.lm.vocab_size, self._label_tokens(),
                                      cfg.no_capitalized, cfg.ascii_tokens)
        if int(self.allowed.sum()) == 0:
            raise UserError(f"no vocabulary token may be a trigger after the filters; drop {name_of(cfg, 'no_capitalized')}"
                            f" or {name_of(cfg, 'ascii_only')}")
        self.packed = {"auto": None, "on": True, "off": False}[cfg.packing]
        if self.packed and not can_pack(task.lm, self.train):
            raise field_error(cfg, "packing", "'on' needs a causal LM and text before the first [T]; use 'auto'")
        self.budget = Budget.for_device(task.lm.device)
        if cfg.fluency_weight and task.lm.is_masked:
            raise field_error(cfg, "fluency_weight", "scores the trigger as text the model reads left to right: it "
                              "needs a causal LM")
        proposer.start(self)

    def on(self, task: PromptTask, train: Encoded, dev: Encoded) -> Searcher:
        """This searcher on another model with the same tokenizer (autoprompt.models): that model's task,
        encoded splits, packing and scoring budget, sharing the config, proposer and allowed tokens;
        its `gradient`, `score_pool` and `dev_score` are that model's."""
        view = Searcher.__new__(Searcher)  # a plain searcher with this one's settings (not a subclass's)
        view.__dict__.update(self.__dict__)
        view.task, view.train, view.dev = task, train.rows, dev.rows
        if self.cfg.dev_size and len(view.dev) > self.cfg.dev_size:
            view.dev = view.dev.subset(slice(0, self.cfg.dev_size))
        if self.packed and not can_pack(task.lm, view.train):
            raise field_error(self.cfg, "packing", f"'on' needs causal LMs with text before the first [T]; "
                              f"{task.lm.name} cannot pack: use 'auto'")
        if self.cfg.fluency_weight and task.lm.is_masked:
            raise field_error(self.cfg, "fluency_weight", f"needs causal LMs; {task.lm.name} is a masked LM")
        view.budget = Budget.for_device(task.lm.device)
        return view

    @property
    def kind(self) -> str:
        """The loss of gradients and scores: the config's (label words), or for target strings their
        cross-entropy ('vocab') or mellowmax."""
        if self.task.is_target:
            return "mellowmax" if self.cfg.mellowmax else "vocab"
        return self.cfg.loss

    def _label_tokens(self) -> list[int]:
        """Tokens the trigger may not use: label words, or every training answer for facts (target
        strings: none)."""
        if self.task.is_target:
            return []
        if not self.task.is_facts:
            special = set(self.task.lm.tokenizer.all_special_ids)
            for ids, word in zip(self.task.verbalizer.word_ids, sum(self.task.verbalizer.words, [])):
                if special & set(ids):
                    raise UserError(f"label word {word!r} is a special token, which the model never predicts; choose a word")
            return self.task.verbalizer.token_ids
        return sorted(set(self.train.labels.tolist()))

    # ------------------------------------------------------------------ scoring
    def dev_score(self, trigger: torch.Tensor) -> tuple[float, float]:
        """(metric, mean label log-likelihood) of a trigger on the dev rows, from the shared evaluator;
        the log-likelihood ranks triggers with the same metric (on hard fact relations many triggers
        score P@1 = 0). Batches fill one whole-sequence pass of the scoring budget."""
        s = score(TriggerBound(self.task, trigger), self.dev, length_batch(self.dev, 1, self.budget.full_tokens))
        return s.correct / max(s.n, 1), s.mean("vocab" if self.task.is_target else self.cfg.loss)

    def start(self, trigger: torch.Tensor) -> State:
        dev, dev_ll = self.dev_score(trigger)
        return State(0, trigger[None].clone(), torch.zeros(1, dtype=torch.float64), trigger.clone(), dev, dev,
                     best_dev_loglik=dev_ll, current_dev_loglik=dev_ll)

    def _batches(self, it: int) -> tuple[torch.Generator, list[torch.Tensor], torch.Tensor]:
        """(the iteration's generator, its gradient batches, its scoring batch): consecutive slices of
        random permutations of the training rows; a slice that would run past the end of one
        permutation starts a new one, so a batch never holds an example twice."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + it)
        n = len(self.train)
        b, e = min(self.cfg.batch_size, n), min(self.cfg.eval_size, n)
        order, at, out = torch.randperm(n, generator=g), 0, []
        for size in [b] * self.cfg.accumulation_steps + [e]:
            if at + size > n:
                order, at = torch.randperm(n, generator=g), 0
            out.append(order[at:at + size])
            at += size
        return g, out[:-1], out[-1]

    def gradient(self, trigger: torch.Tensor, batches: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
        """(S, V) one-hot gradient averaged over the batches, and the mean loss. With a fluency weight
        w the loss is the task's minus w times the triggers' mean log-prob in context, and the
        gradient also gets that term's direct part: -w * log p(v | context) for token v of slot s.
        Several processes: each takes its share of every batch, weighted by that share, and the
        sums are all-reduced."""
        lm, w = self.task.lm, self.cfg.fluency_weight
        total = torch.zeros(trigger.shape[0], lm.vocab_size, device=lm.device)
        loss_sum = 0.0
        for idx in batches:
            mine = distributed.shard(idx)
            if len(mine) == 0:
                continue
            task_share, row_share = self._share(idx, mine)
            rows = self.train.subset(mine).to(lm.device).set_triggers(trigger.to(lm.device))
            m, direct, losses = rows.predict_pos.shape[1], [], []
            reads = with_fluency_reads(rows).predict_pos if w else rows.predict_pos

            def loss_fn(logits, rows=rows, m=m, direct=direct, losses=losses, share=task_share, rshare=row_share):
                loss = self.task.loss(logits[:, :m], rows, self.kind)
                loss = loss if share == 1.0 else loss * share
                losses.append(float(loss.detach()))
                if w:
                    ids = rows.input_ids.gather(1, rows.trigger_pos)
                    flu = row_fluency(logits[:, m:], ids, fluency_positions(rows)[1]).mean()
                    loss = loss - w * (flu if rshare == 1.0 else flu * rshare)
                    direct.append(logits[:, m:].detach())
                return loss

            grad = lm.token_gradients(rows.input_ids, rows.attention_mask, rows.trigger_pos, reads, loss_fn)
            if w:
                grad = grad - w * row_share * _direct_fluency(direct[0], rows)
            total += grad
            loss_sum += losses[0]
        if distributed.world_size() > 1:
            distributed.all_reduce_sum(total)
            loss_sum = distributed.all_reduce_sum(torch.tensor([loss_sum], dtype=torch.float64)).item()
        return total / len(batches), loss_sum / len(batches)

    def _share(self, idx: torch.Tensor, mine: torch.Tensor) -> tuple[float, float]:
        """(this process's share of a batch's task loss, its share of the batch's rows): 1.0 and 1.0
        in one process; the loss share follows the examples' loss weights (target tokens)."""
        if len(mine) == len(idx):
            return 1.0, 1.0
        rows = len(mine) / len(idx)
        weights = loss_weights(self.task, self.train, self.kind)
        if weights is None:
            return rows, rows
        total = float(weights[idx].sum())
        return (float(weights[mine].sum()) / total if total else 0.0), rows

    def _rank(self, scores: Scores) -> torch.Tensor:
        """(N,) values to maximize: the score's value (`value`) plus fluency-weight times the
        triggers' log-likelihood."""
        return self.value(scores) + self.cfg.fluency_weight * scores.fluency

    def value(self, scores: Scores) -> torch.Tensor:
        """(N,) the config's score to maximize, fluency left out: log-likelihood, or accuracy with
        log-likelihood or margin breaking ties."""
        score = self.cfg.score
        if score == "auto":
            score = "margin" if self.task.is_facts else "loglik"
        if score == "loglik":
            return scores.loglik
        return scores.correct.double() * 1e6 + (scores.margin if score == "margin" else scores.loglik)

    # ------------------------------------------------------------------ one iteration
    def step(self, state: State) -> State:
        t0 = time.perf_counter()
        it = state.iteration + 1
        g, grad_batches, eval_idx = self._batches(it)
        cands, slot, loss = self.proposer.candidates(self, state, g, grad_batches)
        t1 = time.perf_counter()
        eval_rows = self.train.subset(eval_idx)
        pool = torch.cat([state.beam, cands])
        scores = self.score_pool(eval_rows, pool, state.beam.shape[0], g)
        pool, scores = self.refine_pool(eval_rows, pool, scores, state.beam.shape[0], g)
        loglik, correct = scores.loglik, scores.correct
        rank = self._rank(scores)
        order = torch.sort(rank, descending=True, stable=True).indices[: self.proposer.beam_size]
        beam, top = pool[order], int(order[0])
        t2 = time.perf_counter()
        accepted = not torch.equal(beam[0], state.beam[0])
        dev, dev_ll = self.dev_score(beam[0]) if accepted else (state.current_dev, state.current_dev_loglik)
        better = (dev, dev_ll) > (state.best_dev, state.best_dev_loglik)
        best, best_dev, best_ll = (beam[0].clone(), dev, dev_ll) if better else (
            state.best, state.best_dev, state.best_dev_loglik)
        t3 = time.perf_counter()
        record = {
            "iteration": it, "slot": slot, "loss": loss, "n_candidates": int(cands.shape[0]),
            "train_loglik": float(loglik[top]) / len(eval_rows), "train_accuracy": float(correct[top]) / len(eval_rows),
            "current_train_accuracy": float(correct[0]) / len(eval_rows),
            "accepted": accepted, "trigger_ids": beam[0].tolist(),
            "trigger": self.decode(beam[0]), "dev": dev, "dev_loglik": dev_ll, "best_dev": best_dev,
            "seconds": t3 - t0, "gradient_s": t1 - t0, "scoring_s": t2 - t1, "dev_s": t3 - t2,
        }
        if self.task.is_target and self.kind == "vocab":  # the kept trigger's mean cross-entropy per target token (nanoGCG's loss)
            record["train_loss"] = -float(scores.loglik[top]) / max(int((eval_rows.targets >= 0).sum()), 1)
        record.update(self.proposer_notes())
        stale = 0 if better else state.stale + 1
        return State(it, beam, rank[order], best, best_dev, dev, stale, state.history + [record], best_ll, dev_ll)

    def score_pool(self, rows, pool: torch.Tensor, n_beam: int, g: torch.Generator) -> Scores:
        """Scores of every pool trigger (the beam first) on the scoring rows, as the proposer scores them."""
        return self.proposer.score(self, rows, pool, n_beam, g)

    def refine_pool(self, rows, pool: torch.Tensor, scores: Scores, n_beam: int, g: torch.Generator
                    ) -> tuple[torch.Tensor, Scores]:
        """The pool and its scores after the proposer's optional `refine`, which may add triggers it
        built from the scores (GCG's merge of the best single swaps) with their scores."""
        refine = getattr(self.proposer, "refine", None)
        return (pool, scores) if refine is None else refine(self, rows, pool, scores, n_beam, g)

    def proposer_notes(self) -> dict:
        """What the proposer's optional `notes()` reports about the iteration (added to its record)."""
        notes = getattr(self.proposer, "notes", None)
        return notes() if notes is not None else {}

    def decode(self, trigger: torch.Tensor) -> list[str]:
        return [self.task.lm.tokenizer.decode([int(t)]) for t in trigger]

    def finished(self, state: State) -> bool:
        cfg = self.cfg
        done = getattr(self.proposer, "finished", None)  # the proposer's own reason to stop (optional)
        return (state.iteration >= cfg.iters or bool(cfg.patience and state.stale >= cfg.patience)
                or (cfg.early_stop and state.best_dev >= 1.0) or bool(done is not None and done(self, state)))


def _direct_fluency(logits: torch.Tensor, rows) -> torch.Tensor:
    """(S, V): d(mean row fluency)/d onehot through the token's own index: the log-probs of every
    token v at slot s in context, with the weights of frozen_lm.fluency.row_fluency's mean."""
    lp = torch.log_softmax(logits.float(), dim=-1)  # (R, S, V)
    valid = fluency_positions(rows)[1].float()
    weight = valid / valid.sum(1, keepdim=True).clamp(min=1) / lp.shape[0]
    return (lp * weight[..., None]).sum(0)


def state_dict(state: State) -> dict:
    """The JSON part of a state (the tensors are saved separately)."""
    d = asdict(state)
    for key in ("beam", "beam_scores", "best", "history"):
        d.pop(key)
    return d
