"""GCG probe sampling (Zhao et al., 2024): a small draft model with the same tokenizer ranks every
candidate; the target model scores a random probe set, and, the less the two rankings agree, the
more of the draft's best candidates it scores too. The best target-scored candidate wins."""

from __future__ import annotations

import logging

import torch

from autoprompt.scoring import Scores, score_triggers
from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)


def load_draft(name: str, task, rows):
    """The task on the draft model (same spec, same token ids), checked to share the tokenizer."""
    from frozen_lm.model import FrozenLM
    from frozen_lm.task import PromptTask

    lm = FrozenLM.load(name, str(task.lm.device), str(task.lm.dtype).split(".")[-1])
    if lm.is_masked or task.lm.is_masked:
        raise UserError("probe sampling needs two causal LMs")
    if lm.tokenizer.get_vocab() != task.lm.tokenizer.get_vocab():
        raise UserError(f"ProbeSamplingConfig.draft_model {name} has another tokenizer than {task.lm.name}; probe "
                        "sampling scores the same token ids on both, so they must share it")
    return PromptTask.from_spec(lm, task.spec)


def probe_sample(searcher, proposer, rows, pool: torch.Tensor, n_beam: int, g: torch.Generator, fluency: bool) -> Scores:
    """Scores of the pool (beam first): the beam, a probe set and the draft's best are target-scored;
    the rest get -inf log-likelihood and margin (never chosen, whatever --score ranks by)."""
    cfg, task = proposer.cfg.probe_sampling, searcher.task
    n_cand = pool.shape[0] - n_beam
    cands = pool[n_beam:]
    draft = score_triggers(proposer.draft, rows, cands, None, searcher.budget, searcher.kind, share=proposer.share)
    probe = torch.randperm(n_cand, generator=g)[: max(2, n_cand // cfg.probe_ratio)]
    scored = torch.cat([torch.arange(n_beam), n_beam + probe])
    first = score_triggers(task, rows, pool[scored], searcher.packed, searcher.budget, searcher.kind, fluency,
                           proposer.share)
    agree = rank_agreement(draft.loglik[probe], first.loglik[n_beam:])
    k = max(1, int((1 - max(agree, 0.0)) * n_cand / cfg.probe_factor))
    best = [int(i) for i in torch.argsort(draft.loglik, descending=True) if int(i) not in set(probe.tolist())][:k]
    more = score_triggers(task, rows, cands[best], searcher.packed, searcher.budget, searcher.kind, fluency,
                          proposer.share)
    out = Scores.zeros(pool.shape[0])
    out.loglik.fill_(float("-inf"))  # every ranking (log-likelihood, accuracy + margin) puts them last
    out.margin.fill_(float("-inf"))
    for index, part in ((scored, first), (n_beam + torch.tensor(best, dtype=torch.long), more)):
        for field in ("loglik", "correct", "margin", "fluency"):
            getattr(out, field)[index] = getattr(part, field)
    logger.debug("probe sampling: rank agreement %.3f, %d probe + %d draft-chosen of %d candidates", agree,
                 len(probe), len(best), n_cand)
    return out


def rank_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors (ties ranked by position)."""
    if a.numel() < 2:
        return 0.0
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom else 0.0
