"""Score many candidate triggers on a batch of examples in a few batched forward passes.

Two paths, same numbers (up to float rounding):
- full: every (candidate, example) pair is one row; used for masked LMs. Examples are sorted by
  length and scored in small groups with their padding trimmed, so a pass pads little.
- packed (causal LMs): everything before the first [T] is the same for all candidates of an
  example, so one row holds that shared prefix once followed by the tails (trigger to [P]) of many
  candidates; a block mask lets each tail see the prefix and itself only, and position ids restart
  after the prefix for every tail. Scoring then costs the tails, not N whole sequences.
- cached (causal LMs, long tails x many candidates, e.g. GCG's 20-token slots x 64 candidates):
  the packed row's attention grows with the square of its length, so past CACHED_LENGTH tokens
  the shared prefix is run once into key/values (`FrozenLM.compute_prefix`) and the candidates'
  tails are a batch of short rows attending to it.
Chunk sizes come from a token budget that halves on out-of-memory and stays halved.
Under torch.distributed each process scores its share of the examples and the per-candidate sums
are all-reduced, so every process gets the same scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from frozen_lm import distributed
from frozen_lm.encode import Rows
from frozen_lm.fluency import fluency_positions, row_fluency

logger = logging.getLogger(__name__)


@dataclass
class Budget:
    """Tokens per forward pass; halves on out-of-memory (shared across calls, so it stays small).

    `tokens` bounds packed passes, `full_tokens` whole-sequence passes: on a CPU, whole-sequence
    batches past ~4k tokens get slower per row (measured with benchmarks/bench_search_speed.py),
    while packed rows keep gaining up to ~16k.
    """

    tokens: int = 16384
    full_tokens: int = 4096
    logits: int = 1 << 27  # floats of (rows, M, V) logits per pass

    @classmethod
    def for_device(cls, device: torch.device | str) -> Budget:
        return cls() if torch.device(device).type == "cpu" else cls(tokens=65536, full_tokens=65536)

    def shrink(self) -> None:
        if self.tokens <= 16:
            raise RuntimeError("out of memory even at the smallest batch; use a smaller model or the CPU")
        self.tokens //= 2
        self.full_tokens = max(1, self.full_tokens // 2)
        self.logits //= 2
        logger.warning("out of memory: scoring with at most %d tokens per forward pass from now on", self.tokens)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def with_backoff(fn, budget: Budget):
    """Call fn(budget) until it succeeds, shrinking the budget after each out-of-memory error."""
    while True:
        try:
            return fn(budget)
        except (RuntimeError, torch.OutOfMemoryError) as e:
            if not _is_oom(e):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            budget.shrink()


def stack_rows(rows: Rows, n: int) -> Rows:
    """Rows repeated n times (candidate-major), for scoring n candidates' logits at once."""
    rep = lambda t: t.repeat(n, *([1] * (t.dim() - 1)))  # noqa: E731
    return Rows(rep(rows.input_ids), rep(rows.attention_mask), rep(rows.trigger_pos), rep(rows.predict_pos),
                rep(rows.labels), rows.word_row, rows.k, None if rows.targets is None else rep(rows.targets))


CACHED_LENGTH = 1024  # a packed row longer than this: run the prefix once and batch the tails


def use_cache(lm, rows: Rows, n_candidates: int) -> bool:
    """Whether packed scoring of n candidates should run the shared prefix once into key/values and
    batch the tails: a packed row would be long (its attention grows with the square of its
    length), the architecture takes a key/value prefix, and every row has at least two tokens
    before its first [T] (the prefix ends one token early, so every read lies in a tail)."""
    start = rows.trigger_pos[:, 0]
    tail = int((rows.attention_mask.sum(1) - start).max()) + 1
    return (lm.supports_prefix and bool((start >= 2).all())
            and int(start.max()) - 1 + n_candidates * tail > CACHED_LENGTH)


def can_pack(lm, rows: Rows) -> bool:
    """Packing needs a causal LM and at least one token before the first [T] of every row."""
    return not lm.is_masked and rows.trigger_pos.shape[1] > 0 and bool((rows.trigger_pos[:, 0] > 0).all())


class Scores(NamedTuple):
    """Per-candidate sums over the examples, on the CPU."""

    loglik: torch.Tensor  # (N,) float64: label log-likelihood
    correct: torch.Tensor  # (N,) int64: examples whose top prediction is the label
    margin: torch.Tensor  # (N,) float64: min(0, label log-prob - best other log-prob), 0 where correct
    fluency: torch.Tensor  # (N,) float64: the trigger tokens' mean log-prob in context (0 unless asked)
    worst_gain: torch.Tensor  # (N,) float64: several models (score_mix 'worst'): the smallest over the models
    #                           of the candidate's gain over the current trigger (autoprompt.models); else 0

    def tail(self, start: int) -> Scores:
        return Scores(*(field[start:] for field in self))

    @classmethod
    def zeros(cls, n: int) -> Scores:
        f = lambda: torch.zeros(n, dtype=torch.float64)  # noqa: E731
        return cls(f(), torch.zeros(n, dtype=torch.long), f(), f(), f())


def with_fluency_reads(rows: Rows) -> Rows:
    """The rows reading, after their predict positions, the position before each slot (whose
    logits give the probability of the slot's token in context; see frozen_lm.fluency)."""
    return replace(rows, predict_pos=torch.cat([rows.predict_pos, fluency_positions(rows)[0]], dim=1))


@torch.no_grad()
def score_triggers(task, rows: Rows, triggers: torch.Tensor, packed: bool | None = None,
                   budget: Budget | None = None, kind: str = "vocab", fluency: bool = False,
                   share: bool = False) -> Scores:
    """Sum over the examples of the label log-likelihood, the number correct and the clipped margin
    (how far the label is below the top prediction), per candidate.

    rows: B encoded examples (their slot tokens are ignored); triggers (N, S); kind: the label
    log-likelihood normalized over the vocabulary ("vocab") or over the classes ("classes"); target
    strings: summed over their tokens ("vocab") or nanoGCG's mellowmax ("mellowmax"). fluency: also
    sum each example's mean trigger-token log-prob in context (read in the same passes). share
    (packed scoring without fluency): candidates whose leading slots agree are scored in groups whose
    shared prefix runs through those slots (`slot_groups`), so each tail starts at its first differing
    slot; the same scores up to float rounding.
    Several processes: each scores its share of the examples, and the sums are all-reduced (every
    process must call this with the same arguments).
    """
    budget = budget or Budget.for_device(task.lm.device)
    if packed is None:  # one candidate has nothing to share: a plain pass is cheaper
        packed = can_pack(task.lm, rows) and triggers.shape[0] > 1
    if distributed.world_size() == 1:
        return _score_shared(task, rows, triggers, packed, budget, kind, fluency, share)
    mine = distributed.shard_rows(rows)
    out = (_score_shared(task, mine, triggers, packed, budget, kind, fluency, share) if mine.n_examples
           else Scores.zeros(triggers.shape[0]))
    sums = distributed.all_reduce_sum(torch.stack([out.loglik, out.correct.double(), out.margin, out.fluency]))
    return Scores(sums[0], sums[1].round().long(), sums[2], sums[3], torch.zeros_like(sums[0]))


def _score_shared(task, rows: Rows, triggers: torch.Tensor, packed: bool, budget: Budget, kind: str,
                  fluency: bool, share: bool) -> Scores:
    """_score_local over the groups of `slot_groups` (one group of everything unless share applies)."""
    if not (share and packed and not fluency and triggers.shape[0] > 1 and triggers.shape[1] > 1):
        return _score_local(task, rows, triggers, packed, budget, kind, fluency)
    out = Scores.zeros(triggers.shape[0])
    for index, j in slot_groups(rows, triggers):
        part_rows, part = share_slots(rows, triggers[index], j)
        got = _score_local(task, part_rows, part, packed, budget, kind, fluency)
        for total, value in zip(out, got):
            total[index] = value
    return out


def shared_slots(triggers: torch.Tensor) -> int:
    """How many leading slots all candidates (N, S) have in common, at most S - 1 (a tail keeps a slot)."""
    same = (triggers == triggers[:1]).all(0).long()
    return min(int(same.cumprod(0).sum()), triggers.shape[1] - 1)


def share_slots(rows: Rows, triggers: torch.Tensor, j: int) -> tuple[Rows, torch.Tensor]:
    """The first j slots, the same in every candidate (N, S), written into the rows' tokens; the rows
    then have only the later slots, and so do the candidates (N, S - j) returned with them."""
    if j == 0:
        return rows, triggers
    first = triggers[0, :j].to(rows.input_ids.device)
    ids = rows.input_ids.scatter(1, rows.trigger_pos[:, :j], first[None].expand(rows.input_ids.shape[0], -1))
    return replace(rows, input_ids=ids, trigger_pos=rows.trigger_pos[:, j:]), triggers[:, j:]


def slot_groups(rows: Rows, triggers: torch.Tensor, sizes: tuple[int, ...] = (1, 2, 4, 8),
                min_group: int = 8) -> list[tuple[torch.Tensor, int]]:
    """Candidates (N, S) in groups [(indices, shared leading slots)], for scoring each group behind a
    prefix that runs through its shared slots (GCG: every candidate is the current trigger with one
    or a few slots changed, so sorting by the first changed slot gives groups that share a lot).

    Candidates are sorted (stably) by the first slot where they differ from the per-slot most common
    token, then cut into g equal groups, g from `sizes` (groups of at least min_group), choosing the
    g with the fewest estimated tokens: each group's candidates times its tail length (the tail
    shrinks by the tokens its shared slots span in every row), plus a prefix pass per group."""
    n, s = triggers.shape
    ref = triggers.mode(dim=0).values
    differs = triggers != ref
    first = torch.where(differs.any(1), differs.long().argmax(1), torch.full((n,), s))
    order = torch.argsort(first, stable=True)
    start = rows.trigger_pos[:, :1]
    saved = (rows.trigger_pos - start).min(0).values.tolist()  # tokens a tail loses when j slots are shared
    tail = int((rows.attention_mask.sum(1, keepdim=True) - start).max())
    prefix = int(start.max())
    best, best_cost = [(order, shared_slots(triggers))], None
    for g in sizes:
        if g > 1 and n // g < min_group:
            break
        groups = [(c, shared_slots(triggers[c])) for c in order.tensor_split(g)]
        cost = sum(len(c) * (tail - saved[j]) + prefix for c, j in groups)
        if best_cost is None or cost < best_cost:
            best, best_cost = groups, cost
    return best


def _score_local(task, rows: Rows, triggers: torch.Tensor, packed: bool, budget: Budget, kind: str,
                 fluency: bool) -> Scores:
    rows = rows.to(task.lm.device)
    triggers = triggers.to(task.lm.device)
    out = Scores.zeros(triggers.shape[0])
    scorer = _score_packed if packed else _score_full
    if packed and use_cache(task.lm, rows, triggers.shape[0]):
        scorer = _score_cached
    task = _Kind(task, kind, rows.predict_pos.shape[1] if fluency else None)
    rows = with_fluency_reads(rows) if fluency else rows
    groups = [rows] if packed else length_groups(rows, triggers.shape[0], budget.full_tokens)
    for group in groups:
        cand = 0
        while cand < triggers.shape[0]:
            n_done = with_backoff(
                lambda b, c=cand, g=group: scorer(task, g, triggers[c:], b, out.tail(c)), budget)
            cand += n_done
    return out


def length_batch(rows: Rows, n_cand: int, tokens: int) -> int:
    """Examples per group so that a group with n_cand candidates each fills about `tokens`."""
    if rows.n_examples == 0:
        return 1  # (the mean length of no rows is NaN)
    mean = int(rows.attention_mask.sum(1).float().mean())
    return max(1, tokens // max(1, n_cand * rows.k * mean))


def length_groups(rows: Rows, n_cand: int, tokens: int) -> list[Rows]:
    """The examples sorted by length (stable), in groups that fill about one pass of `tokens` with
    n_cand candidates each, every group's padding trimmed to its longest row."""
    if rows.n_examples == 0:
        return []
    return list(rows.batches(length_batch(rows, n_cand, tokens)))


class _Kind:
    """The task with the loss kind its scores use ('vocab', 'classes' or 'mellowmax'); m_task: how
    many of the read positions are the task's (the rest, when set, are the fluency reads)."""

    def __init__(self, task, kind: str, m_task: int | None = None):
        self._task, self.lm, self.kind, self.m_task = task, task.lm, kind, m_task

    def example_scores(self, logits, rows, kind):
        return self._task.example_scores(logits, rows, kind)


def _rows_per_pass(budget: Budget, tokens_per_row: int, logits_per_row: int) -> int:
    return min(budget.full_tokens // max(tokens_per_row, 1), budget.logits // max(logits_per_row, 1))


def _split_examples(scorer, task, rows, triggers, budget, acc: Scores, tokens_per_row) -> int:
    """One candidate, examples in groups small enough for the budget; returns 1."""
    per_row = rows.k * max(tokens_per_row, 1)
    size = max(1, _rows_per_pass(budget, per_row, rows.k * rows.predict_pos.shape[1] * task.lm.vocab_size))
    for start in range(0, rows.n_examples, size):
        scorer(task, rows.subset(slice(start, start + size)), triggers[:1], budget, acc, split=False)
    return 1


def _accumulate(task, logits, rows, n, acc: Scores, triggers: torch.Tensor) -> None:
    """logits (n*R, M, V) for n candidates (candidate-major) -> add per-candidate sums to acc."""
    stacked = stack_rows(rows, n)
    m = task.m_task or logits.shape[1]
    loglik, hits, margin = task.example_scores(logits[:, :m], stacked, task.kind)
    acc.loglik[:n] += loglik.view(n, -1).double().sum(1).cpu()
    acc.correct[:n] += hits.view(n, -1).long().sum(1).cpu()
    acc.margin[:n] += margin.view(n, -1).double().sum(1).cpu()
    if task.m_task is not None:
        ids = triggers[:n, None, :].expand(-1, rows.input_ids.shape[0], -1).reshape(-1, triggers.shape[1])
        flu = row_fluency(logits[:, m:], ids, fluency_positions(stacked)[1])  # per row; an example has k rows
        acc.fluency[:n] += flu.view(n, -1).double().sum(1).cpu() / rows.k


def _score_full(task, rows, triggers, budget, acc: Scores, split=True) -> int:
    """Candidates scored as whole sequences; returns how many candidates were done."""
    n_rows, length = rows.input_ids.shape
    m = rows.predict_pos.shape[1]
    per_pass = _rows_per_pass(budget, length * n_rows, n_rows * m * task.lm.vocab_size)
    if per_pass < 1 and split:
        return _split_examples(_score_full, task, rows, triggers, budget, acc, length)
    n = max(1, min(per_pass, triggers.shape[0]))
    ids = rows.with_triggers(triggers[:n]).reshape(n * n_rows, length)
    stacked = stack_rows(rows, n)
    logits = task.lm.logits_at(stacked.predict_pos, input_ids=ids, attention_mask=stacked.attention_mask)
    _accumulate(task, logits, rows, n, acc, triggers)
    return n


def _score_packed(task, rows, triggers, budget, acc: Scores, split=True) -> int:
    """Candidates scored as tails packed behind each example's shared prefix."""
    start = rows.trigger_pos[:, 0]
    p_max, t_max = int(start.max()), int((rows.attention_mask.sum(1) - start).max())
    n_rows, m = rows.input_ids.shape[0], rows.predict_pos.shape[1]
    per_pass = min((budget.tokens // n_rows - p_max) // t_max, budget.logits // (n_rows * m * task.lm.vocab_size))
    if per_pass < 1 and split:
        return _split_examples(_score_packed, task, rows, triggers, budget, acc, p_max + t_max)
    n = max(1, min(per_pass, triggers.shape[0]))
    ids, mask, pos, read = pack(rows, triggers[:n], p_max, t_max)
    logits = task.lm.logits_at(read, input_ids=ids, attention_mask=mask, position_ids=pos)
    logits = logits.view(n_rows, n, m, -1).transpose(0, 1).reshape(n * n_rows, m, -1)
    _accumulate(task, logits, rows, n, acc, triggers)
    return n


def _score_cached(task, rows, triggers, budget, acc: Scores, split=True) -> int:
    """Candidates scored as a batch of tails (n * R rows, candidate-major) attending to the key/values
    of each example's prefix, computed once per pass; the prefix stops one token before the first
    [T], so the reads (the task's, and the fluency read before the first slot) all lie in the tails."""
    lm = task.lm
    start = rows.trigger_pos[:, 0] - 1
    p_max, length = int(start.max()), rows.attention_mask.sum(1)
    t_max = int((length - start).max())
    n_rows, m = rows.input_ids.shape[0], rows.predict_pos.shape[1]
    n = min(budget.tokens // (n_rows * t_max), budget.logits // (n_rows * m * lm.vocab_size), triggers.shape[0])
    if n < 1 and split:
        return _split_examples(_score_cached, task, rows, triggers, budget, acc, p_max + t_max)
    n = max(1, n)
    j = torch.arange(p_max, device=rows.input_ids.device)
    prefix_ok = j[None] < start[:, None]
    prefix = lm.compute_prefix(torch.where(prefix_ok, rows.input_ids[:, :p_max], 0), prefix_ok.long())
    tail_ok, tail_rows = _tails(rows, start, t_max)
    ids = tail_rows.with_triggers(triggers[:n]).reshape(n * n_rows, t_max)
    which = torch.arange(n_rows, device=ids.device).repeat(n)
    read = (rows.predict_pos - start[:, None]).clamp(min=0).repeat(n, 1)  # (padded reads: ignored)
    logits = lm.logits_at(read, input_ids=ids, attention_mask=tail_ok.long().repeat(n, 1), prefix=prefix.select(which))
    _accumulate(task, logits, rows, n, acc, triggers)
    return n


def _tails(rows: Rows, start: torch.Tensor, t_max: int) -> tuple[torch.Tensor, Rows]:
    """Each row's tokens from position start[r] on, in t_max columns: (valid (R, t_max) bool, the
    rows holding those tails, their slot positions shifted to match)."""
    k = torch.arange(t_max, device=rows.input_ids.device)
    src = (start[:, None] + k[None]).clamp(max=rows.input_ids.shape[1] - 1)
    ok = (start[:, None] + k[None]) < rows.attention_mask.sum(1)[:, None]
    tail_rows = replace(rows, input_ids=torch.where(ok, rows.input_ids.gather(1, src), 0),
                        trigger_pos=rows.trigger_pos - start[:, None])
    return ok, tail_rows


def pack(rows: Rows, triggers: torch.Tensor, p_max: int, t_max: int):
    """Packed inputs for n candidate triggers (n, S) on R rows.

    Row r: its prefix (tokens before the first [T], padded to p_max) then n tails of width t_max,
    tail i holding the row's tokens from the first [T] on with candidate i in the slots.
    Returns ids (R, Lp), mask (R, Lp, Lp) bool, position ids (R, Lp), read positions (R, n*M) in
    candidate-major order per row, where Lp = p_max + n * t_max.
    """
    dev = rows.input_ids.device
    n, n_rows = triggers.shape[0], rows.input_ids.shape[0]
    start = rows.trigger_pos[:, 0]
    j = torch.arange(p_max, device=dev)
    prefix = torch.where(j[None] < start[:, None], rows.input_ids[:, :p_max], 0) if p_max else rows.input_ids[:, :0]
    prefix_ok = j[None] < start[:, None]
    k = torch.arange(t_max, device=dev)
    tail_ok, tail_rows = _tails(rows, start, t_max)
    tails = tail_rows.with_triggers(triggers)  # (n, R, t_max)
    ids = torch.cat([prefix, tails.permute(1, 0, 2).reshape(n_rows, n * t_max)], dim=1)
    valid = torch.cat([prefix_ok, tail_ok.repeat(1, n)], dim=1)
    block = torch.cat([torch.full((p_max,), -1, device=dev), torch.arange(n, device=dev).repeat_interleave(t_max)])
    inner = torch.cat([j, k.repeat(n)])
    same = (block[:, None] == block[None, :]) & (inner[None, :] <= inner[:, None])
    sees_prefix = (block[:, None] >= 0) & (block[None, :] < 0)
    mask = (same | sees_prefix)[None] & valid[:, None, :]
    pos = torch.cat([j[None].expand(n_rows, -1), start[:, None] + k.repeat(n)[None]], dim=1)
    offsets = p_max + torch.arange(n, device=dev)[:, None] * t_max  # (n, 1)
    at = rows.predict_pos[:, None, :]  # read positions before the first slot lie in the shared prefix
    read = torch.where(at < start[:, None, None], at, offsets[None] + at - start[:, None, None]).reshape(n_rows, -1)
    return ids, mask, pos, read
