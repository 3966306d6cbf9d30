"""Speed of `autoprompt search` on smollm2-135m, SST-2, '{sentence} [T] [T] [T] [P]', 32 candidates x 32.

Prints (a) raw batched forward throughput at the scoring batch size, (b) candidate-scoring
throughput with full sequences and with packed prefixes, (c) seconds per search iteration against
the time of the passes the iteration requires. Run alone on the machine:

    python benchmarks/bench_search_speed.py [--model smollm2-135m] [--iters 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from autoprompt.config import AutoPromptConfig
from autoprompt.hotflip import HotFlip
from autoprompt.scoring import score_triggers
from autoprompt.search import Searcher, initial_trigger
from benchmarks.common import SHARED, print_table, require, save_json, threads_line
from frozen_lm import data as data_mod
from frozen_lm.model import FrozenLM
from frozen_lm.task import PromptTask


def timed(fn, repeat: int = 3) -> float:
    """Median seconds of fn() over `repeat` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--num-cand", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dev-size", type=int, default=200)
    args = ap.parse_args()
    require(SHARED / "sst2" / "train.jsonl")
    print(threads_line())
    lm = FrozenLM.load(args.model)
    task = PromptTask(lm, "{sentence} [T] [T] [T] [P]", "0=terrible,1=great")
    train = task.encode(data_mod.load(str(SHARED / "sst2" / "train.jsonl")))
    dev = task.encode(data_mod.load(str(SHARED / "sst2" / "dev.jsonl")))
    g = torch.Generator().manual_seed(0)
    batch = train.rows.subset(torch.randperm(len(train.rows), generator=g)[: args.batch_size])
    trigger = initial_trigger(task, "the")
    cands = torch.randint(1000, 20000, (args.num_cand, 3), generator=g)
    n_pairs = args.num_cand * args.batch_size

    ids = batch.with_triggers(trigger)
    with torch.no_grad():
        t_fwd = timed(lambda: lm.logits_at(batch.predict_pos, input_ids=ids, attention_mask=batch.attention_mask))
    t_full = timed(lambda: score_triggers(task, batch, cands, packed=False), repeat=1)
    t_packed = timed(lambda: score_triggers(task, batch, cands, packed=True))
    rows = batch.set_triggers(trigger)
    t_grad = timed(lambda: lm.token_gradients(rows.input_ids, rows.attention_mask, rows.trigger_pos, rows.predict_pos,
                                              lambda logits: task.loss(logits, rows)))
    cfg = AutoPromptConfig(iters=args.iters, num_cand=args.num_cand, batch_size=args.batch_size,
                           eval_size=args.batch_size, dev_size=args.dev_size, seed=0)
    searcher = Searcher(task, cfg, HotFlip(cfg), train, dev)
    t_dev = timed(lambda: searcher.dev_score(trigger), repeat=1)
    state = searcher.start(trigger)
    while not searcher.finished(state):
        state = searcher.step(state)
    hist = state.history
    t_iter = sum(h["seconds"] for h in hist) / len(hist)
    accepted = sum(h["accepted"] for h in hist) / len(hist)
    t_score_iter = timed(lambda: score_triggers(task, batch, torch.cat([trigger[None], cands]), packed=True), repeat=1)
    required = t_grad + t_score_iter + accepted * t_dev

    fwd_rate = args.batch_size / t_fwd
    rows_out = [
        {"measure": "(a) forward, sequences/s", "value": fwd_rate, "vs (a)": 1.0, "target": "-"},
        {"measure": "(b) scoring without cache, cand-examples/s", "value": n_pairs / t_full,
         "vs (a)": n_pairs / t_full / fwd_rate, "target": ">= 0.8"},
        {"measure": "(b) scoring with packed prefix, cand-examples/s", "value": n_pairs / t_packed,
         "vs (a)": n_pairs / t_packed / fwd_rate, "target": ">= 3"},
        {"measure": "(c) seconds per iteration", "value": t_iter, "vs (a)": "-", "target": "-"},
        {"measure": "(c) passes it requires, s", "value": required, "vs (a)": "-", "target": "-"},
        {"measure": "(c) iteration / passes", "value": t_iter / required, "vs (a)": "-", "target": "< 2"},
    ]
    print(f"model {args.model}, {args.num_cand} candidates x {args.batch_size} examples, "
          f"mean SST-2 row length {float(batch.attention_mask.sum(1).float().mean()):.1f} tokens; "
          f"gradient pass {t_grad:.3f} s, dev pass ({len(searcher.dev)} rows) {t_dev:.3f} s, "
          f"{accepted:.0%} of iterations accepted a change")
    print_table(rows_out)
    save_json("search_speed", {"args": vars(args), "rows": rows_out, "history": hist})


if __name__ == "__main__":
    main()
