"""Tiny random models and tokenizers for tests: built in-process, no downloads, a second to make.

`tiny_lm("bert" | "gpt2" | "llama")` gives a FrozenLM: BERT MLM and Llama (one key/value head,
grouped-query attention) with a WordPiece-like word-level vocabulary; GPT-2 with a byte-level BPE
vocabulary trained here on the demo data (so label words get leading-space and multi-token forms).
`save_tiny(kind, folder)` writes one to disk, loadable with `--model FOLDER`.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path

import torch

from frozen_lm.model import FrozenLM

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
EXTRA_WORDS = """it was is the a an of and to in great terrible good bad fine awful nice movie film
capital city country review sentiment positive negative really very this that what who where""".split()


def demo_corpus() -> list[str]:
    """All text of the built-in demo tasks, one string per row."""
    out = []
    for name in ("sentiment.jsonl", "capitals.jsonl"):
        text = resources.files("frozen_lm").joinpath("demo_data", name).read_text(encoding="utf-8")
        for line in text.splitlines():
            row = json.loads(line)
            out.append(" ".join(str(v) for k, v in row.items() if k != "label"))
    return out


@functools.cache
def word_tokenizer():
    """Lower-cased word-level tokenizer over the demo vocabulary, BERT-style specials."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for line in demo_corpus() for w in re.findall(r"\w+|[^\w\s]", line.lower())} | set(EXTRA_WORDS))
    vocab = {w: i for i, w in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


@functools.cache
def bpe_tokenizer(vocab_size: int = 600):
    """Byte-level BPE (GPT-2 style, leading-space tokens) trained on the demo corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(demo_corpus() + [" ".join(EXTRA_WORDS)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def tiny_model(kind: str, seed: int = 0, hidden: int = 32, layers: int = 2):
    """(model, tokenizer) for kind in bert / gpt2 / llama, random weights from `seed`."""
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    if kind == "bert":
        tok = word_tokenizer()
        cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=128, pad_token_id=0)
        return BertForMaskedLM(cfg), tok
    if kind == "gpt2":
        tok = bpe_tokenizer()
        cfg = GPT2Config(vocab_size=len(tok), n_embd=hidden, n_layer=layers, n_head=2, n_positions=128,
                         bos_token_id=0, eos_token_id=0)
        return GPT2LMHeadModel(cfg), tok
    if kind == "llama":
        tok = word_tokenizer()
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                          num_key_value_heads=1, intermediate_size=2 * hidden, max_position_embeddings=128,
                          pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=True)
        return LlamaForCausalLM(cfg), tok
    raise ValueError(f"unknown tiny model kind {kind!r}; use bert, gpt2 or llama")


def tiny_lm(kind: str = "llama", seed: int = 0, **sizes) -> FrozenLM:
    model, tok = tiny_model(kind, seed, **sizes)
    return FrozenLM(model, tok, name=f"tiny-{kind}", kind="masked" if kind == "bert" else "causal")


def save_tiny(kind: str, folder, seed: int = 0, **sizes) -> Path:
    """Write a tiny model + tokenizer to `folder` (loadable by path) and return it."""
    model, tok = tiny_model(kind, seed, **sizes)
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
