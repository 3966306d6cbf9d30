"""FrozenLM.sample: seeded temperature / top-p sampling of n continuations of one prompt."""

from __future__ import annotations

import pytest
import torch

from frozen_lm.errors import UserError


def prompt(lm) -> torch.Tensor:
    return torch.tensor(lm.tokenizer("a great movie . it was", add_special_tokens=False).input_ids)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_same_generator_seed_same_samples(tiny, kind):
    lm = tiny(kind)
    draw = lambda seed: lm.sample(prompt(lm), 6, temperature=1.0, top_p=0.9, n=4,  # noqa: E731
                                  generator=torch.Generator().manual_seed(seed))
    first = draw(0)
    assert len(first) == 4 and all(1 <= len(r) <= 6 for r in first)
    assert all(isinstance(t, int) and 0 <= t < lm.vocab_size for r in first for t in r)
    assert draw(0) == first
    assert draw(1) != first  # a random tiny model spreads its mass over the vocabulary


def test_greedy_limits_match_generate(tiny):
    lm = tiny("llama")
    greedy = lm.generate(prompt(lm), 5)
    assert lm.sample(prompt(lm), 5, temperature=0.0, n=2) == [greedy, greedy]
    # top_p so small that only the top token is left: greedy again, whatever the generator draws
    assert lm.sample(prompt(lm), 5, top_p=1e-9, n=1, generator=torch.Generator().manual_seed(3)) == [greedy]


def test_stops_after_end_of_sequence(tiny):
    lm = tiny("gpt2")  # its eos token is id 0
    eos = lm.tokenizer.eos_token_id
    rows = lm.sample(prompt(lm), 40, temperature=5.0, n=16, generator=torch.Generator().manual_seed(0))
    for r in rows:
        assert eos not in r[:-1]
        assert len(r) == 40 or r[-1] == eos


def test_global_rng_untouched_with_a_generator(tiny):
    lm = tiny("llama")
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    lm.sample(prompt(lm), 4, n=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected)


def test_masked_lm_refused(tiny):
    lm = tiny("bert")
    with pytest.raises(UserError, match="masked LM"):
        lm.sample(prompt(lm), 3)
