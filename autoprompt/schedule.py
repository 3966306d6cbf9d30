"""GCG's time-to-target techniques (`GCGConfig.schedule`, a `GCGSchedule`): pure functions on tensors
and `ScheduledGCG`, the GCG proposer that applies them (plain GCG, autoprompt.gcg, is what runs without
a schedule, so its numbers never change).

- ACG, accelerated coordinate gradient (Haize Labs, 2024; the buffer also nanoGCG's, after Hayase et
  al., 2024): many slots change per candidate at first and fewer later (`ramp_value` from
  n_replace_start down to n_replace), few candidates at first and more later (search_width_start up
  to search_width), and a historical buffer of the best triggers ever scored (`history`), each kept
  with its score, every iteration sampling around the best of them.
- Faster-GCG (Li et al., 2024): the one-hot gradient is a first-order guess that is only good near
  the current token, so each slot ranks its tokens by gradient plus a weight times their embedding's
  distance from the slot's current token (`regularized_gradient`); and a trigger scored once is never
  scored again (`SeenSet`; the buffer's triggers keep their scores), so no iteration is spent on
  triggers it already knows.
- I-GCG (Jia et al., 2024): after scoring, the best single-swap candidates are merged one by one into
  multi-slot candidates (`merge_swaps`: the best swap, then the best two, ...), which are scored too.
- Early stop: when the kept trigger gets every target token right on the scoring batch (free: the
  scores say it), greedy generation checks that it reproduces every training target (`reproduces`);
  the search stops there when `stop_on_success`.

A trigger's score is cached only while the scoring batch is the whole training set (eval_size at
least its rows: one behavior, or a universal suffix's goals); on a sampled batch the buffer is
rescored every iteration, as plain GCG does.
"""

from __future__ import annotations

import logging
from collections import deque

import torch

from autoprompt.candidates import dedupe
from autoprompt.gcg import GCGProposer, sample_candidates
from autoprompt.scoring import Scores

logger = logging.getLogger(__name__)
SEEN_LIMIT = 1 << 18  # triggers remembered without repeats (the oldest are forgotten first): ~20 MB
ROUNDS = 4  # sampling rounds (no repeats) may take to fill the search width with unseen candidates


def ramp_value(start: int, end: int, iteration: int, ramp: int) -> int:
    """The value at `iteration` (1-based) moving linearly from `start` (iteration 1) to `end`
    (iteration `ramp` and after); `end` throughout when ramp <= 1."""
    if ramp <= 1 or iteration >= ramp:
        return end
    return round(start + (end - start) * (max(iteration, 1) - 1) / (ramp - 1))


class SeenSet:
    """Triggers already scored, as hashes of their token ids; at most `limit`, the oldest forgotten first."""

    def __init__(self, limit: int = SEEN_LIMIT):
        self.limit, self.keys, self.order = limit, set(), deque()

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, triggers: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which triggers (N, S) were seen."""
        return torch.tensor([hash(tuple(t)) in self.keys for t in triggers.tolist()], dtype=torch.bool)

    def add(self, triggers: torch.Tensor) -> None:
        for t in triggers.tolist():
            key = hash(tuple(t))
            if key not in self.keys:
                self.keys.add(key)
                self.order.append(key)
        while len(self.order) > self.limit:
            self.keys.discard(self.order.popleft())


def _scaled(x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """x (S, V) divided per row by its standard deviation over the allowed tokens (V,)."""
    std = x[:, allowed].std(dim=1, keepdim=True).clamp(min=1e-12)
    return x / std


def regularized_gradient(grad: torch.Tensor, trigger: torch.Tensor, embeddings: torch.Tensor, weight: float,
                         allowed: torch.Tensor) -> torch.Tensor:
    """(S, V) gradient plus `weight` times the distance of every token's embedding from each slot's
    current token, both scaled per slot to unit spread over the allowed tokens (Faster-GCG): a slot's
    top-k by the smallest values then favours tokens whose first-order guess is trustworthy.

    grad (S, V) d loss / d onehot; trigger (S,) the current tokens; embeddings (V, H)."""
    emb = embeddings.to(grad.device).float()
    current = emb[trigger.to(grad.device)]  # (S, H)
    sq = (current * current).sum(1, keepdim=True) + (emb * emb).sum(1)[None] - 2 * current @ emb.T
    dist = sq.clamp(min=0).sqrt()  # (S, V)
    ok = allowed.to(grad.device)
    return _scaled(grad.float(), ok) + weight * _scaled(dist, ok)


def merge_swaps(trigger: torch.Tensor, ranked: torch.Tensor, k: int) -> torch.Tensor:
    """(M, S) merges of the swaps of `ranked` (N, S) candidates, best first, into trigger (S,): the
    j-th merge holds the changed slots of the best j candidates (a slot keeps the better candidate's
    token), for j = 2..k; merges that change nothing new are left out (I-GCG)."""
    out, merged = [], trigger.clone()
    for j, cand in enumerate(ranked[:k]):
        new = (cand != trigger) & (merged == trigger)
        if not new.any():
            continue
        merged = torch.where(new, cand, merged)
        if j > 0 and int((merged != trigger).sum()) > int((cand != trigger).sum()):
            out.append(merged.clone())
    return torch.stack(out) if out else trigger[None][:0]


@torch.no_grad()
def reproduces(task, rows, trigger: torch.Tensor) -> bool:
    """Whether greedy generation after the prompt with this trigger (S,) produces every row's target
    (target-string rows)."""
    sample = rows.set_triggers(trigger.to(rows.input_ids.device))
    for r in range(sample.n_examples):
        want = [int(t) for t in sample.targets[r] if t >= 0]
        end = int(sample.predict_pos[r, 0]) + 1
        if task.lm.generate(sample.input_ids[r, :end], len(want))[: len(want)] != want:
            return False
    return True


class ScheduledGCG(GCGProposer):
    """GCG with a GCGSchedule (see the module docstring): per-iteration width and n_replace, the
    distance-regularised gradient, unseen candidates only, cached buffer scores, merged swaps and the
    success check. `notes()` adds to each iteration's record: search_width, n_replace, n_scored (triggers
    the model scored), n_merged, and success when greedy generation reproduced the targets."""

    def __init__(self, config):
        super().__init__(config)
        self.plan = config.schedule
        self.beam_size = self.plan.history or config.buffer_size
        self.seen = SeenSet() if not self.plan.repeats else None
        self.cache: dict[int, dict[tuple, tuple]] = {}  # per searcher (one per model): trigger ids -> its scores
        self.fixed, self.embeddings, self.stop, self._notes, self._scored = False, None, False, {}, set()

    def start(self, searcher) -> None:
        super().start(searcher)
        self.fixed = searcher.cfg.eval_size >= len(searcher.train)
        if not self.fixed and (self.plan.history or not self.plan.repeats):
            logger.info("the scoring batch is a sample of the training rows: the buffer is rescored every iteration")
        if self.plan.distance_weight:
            self.embeddings = searcher.task.lm.embedding_matrix.detach()

    # ------------------------------------------------------------------ proposing
    def candidates(self, searcher, state, g: torch.Generator, grad_batches) -> tuple[torch.Tensor, None, float]:
        cfg, plan, trigger = self.cfg, self.plan, state.beam[0]
        it = state.iteration + 1
        width = ramp_value(plan.search_width_start, cfg.search_width, it, plan.ramp)
        n_replace = ramp_value(plan.n_replace_start, cfg.n_replace, it, plan.ramp)
        beam_keys = {tuple(t) for t in state.beam.tolist()}
        self.cache = {m: {k: v for k, v in c.items() if k in beam_keys} for m, c in self.cache.items()}
        self._scored = set()
        grad, loss = searcher.gradient(trigger, grad_batches)
        if plan.distance_weight:
            grad = regularized_gradient(grad, trigger, self.embeddings, plan.distance_weight, searcher.allowed)
        got = trigger[None][:0].cpu()
        for attempt in range(ROUNDS if self.seen is not None else 1):
            need = width - got.shape[0]
            if need <= 0:
                break
            fresh = sample_candidates(trigger, grad, searcher.allowed, need if attempt == 0 else 2 * need, cfg.topk,
                                      n_replace, g)
            cands = dedupe(torch.cat([got, self.filtered(searcher, fresh, warn=attempt == 0)]), keep_first=state.beam)
            if self.seen is not None:
                cands = cands[~self.seen.contains(cands)]
            got = cands[:width]
        self._notes = {"search_width": width, "n_replace": n_replace}
        return got, None, loss

    # ------------------------------------------------------------------ scoring
    def score(self, searcher, rows, pool: torch.Tensor, n_beam: int, g: torch.Generator) -> Scores:
        """Every pool trigger's scores: cached ones (the scoring batch is the whole training set) as
        they were, the rest scored as plain GCG scores them; every one is then remembered as seen.
        (Several models: each model's searcher has its own cache.)"""
        cache = self.cache.setdefault(id(searcher), {})
        keys = [tuple(t) for t in pool.tolist()]
        todo = [i for i, k in enumerate(keys) if not (self.fixed and k in cache)]
        part = super().score(searcher, rows, pool[todo], sum(i < n_beam for i in todo), g) if todo else None
        out = Scores.zeros(len(keys))
        for i, k in enumerate(keys):
            if i not in todo:
                for total, value in zip(out, cache[k]):
                    total[i] = value
        if part is not None:
            index = torch.tensor(todo, dtype=torch.long)
            for total, value in zip(out, part):
                total[index] = value
            for j, i in enumerate(todo):
                if torch.isfinite(part.loglik[j]):
                    cache[keys[i]] = tuple(float(v[j]) if v.dtype.is_floating_point else int(v[j]) for v in part)
        if self.seen is not None:
            self.seen.add(pool)
        self._scored.update(keys[i] for i in todo)
        self._notes["n_scored"] = len(self._scored)
        return out

    def refine(self, searcher, rows, pool: torch.Tensor, scores: Scores, n_beam: int, g: torch.Generator):
        """The pool with the merged swaps of its best candidates added (merge >= 2), and the success check."""
        if self.plan.merge >= 2 and pool.shape[0] - n_beam >= 2:
            pool, scores = self._merged(searcher, rows, pool, scores, n_beam, g)
        if searcher.task.is_target:
            self._check_success(searcher, rows, pool, scores)
        return pool, scores

    def _merged(self, searcher, rows, pool, scores: Scores, n_beam: int, g):
        rank = searcher._rank(scores)[n_beam:]
        order = torch.sort(rank, descending=True, stable=True).indices
        order = order[torch.isfinite(rank[order])]
        merges = dedupe(merge_swaps(pool[0], pool[n_beam:][order], self.plan.merge), keep_first=pool)
        if self.seen is not None and merges.shape[0]:
            merges = merges[~self.seen.contains(merges)]
        self._notes["n_merged"] = int(merges.shape[0])
        if merges.shape[0] == 0:
            return pool, scores
        more = searcher.score_pool(rows, merges, 0, g)  # (several models: their mean, as the pool's)
        return torch.cat([pool, merges]), Scores(*(torch.cat([a, b]) for a, b in zip(scores, more)))

    def _check_success(self, searcher, rows, pool, scores: Scores) -> None:
        """Greedy generation with the trigger the iteration keeps, when it gets every target token of
        the scoring batch right (teacher-forced), on every training row."""
        best = int(torch.sort(searcher._rank(scores), descending=True, stable=True).indices[0])
        if int(scores.correct[best]) < rows.n_examples:
            return
        if reproduces(searcher.task, searcher.train.to(searcher.task.lm.device), pool[best]):
            self._notes["success"] = True
            self.stop = bool(self.plan.stop_on_success)

    def notes(self) -> dict:
        notes, self._notes = self._notes, {}
        return notes

    def finished(self, searcher, state) -> bool:
        return self.stop
