"""Label words -> token ids (BPE with leading space, WordPiece-like), and their scoring at [P]."""

from __future__ import annotations

import json

import pytest
import torch

from frozen_lm.data import Dataset
from frozen_lm.errors import UserError
from frozen_lm.task import PromptTask
from frozen_lm.testing import bpe_tokenizer, word_tokenizer
from frozen_lm.verbalizer import Verbalizer, class_log_probs, parse_label_map, tokenize_word, word_log_probs
from tests.conftest import assert_user_error, write_jsonl


# ------------------------------------------------------------------ label maps
@pytest.mark.parametrize("spec", [
    "0=terrible,1=great|good",
    '{"0": "terrible", "1": ["great", "good"]}',
    {0: "terrible", 1: ["great", " good "]},
])
def test_parse_label_map_forms(spec):
    assert parse_label_map(spec) == {"0": ["terrible"], "1": ["great", "good"]}


def test_parse_label_map_file(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"pos": "great", "neg": "terrible"}))
    assert parse_label_map(str(path)) == {"pos": ["great"], "neg": ["terrible"]}
    with pytest.raises(UserError, match="does not exist"):
        parse_label_map(str(tmp_path / "nope.json"))


@pytest.mark.parametrize("spec", [None, {}])
def test_no_label_map_means_facts(spec):
    assert parse_label_map(spec) is None


@pytest.mark.parametrize("spec, fragment", [
    ("", "label map is empty"),
    ("  ", "label map is empty"),
    ("0=terrible,0=awful,1=great", "class '0' is given twice"),
    ('{"0": "terrible", "0": "awful", "1": "great"}', "class '0' is given twice"),
    ("=great", "no label before '='"),
    ("0=terrible,1=", "empty label word"),
    ("0=terrible,1=great|", "empty label word"),
    ({"0": []}, "empty label word"),
    ("0:terrible", "is not LABEL=WORD"),
    ('{"0": "terrible",}', "not valid JSON"),
    ("[1, 2]", "is a list; name each class too"),
])
def test_bad_label_maps(spec, fragment):
    with pytest.raises(UserError) as e:
        parse_label_map(spec)
    assert fragment in str(e.value)


# ------------------------------------------------------------------ tokenizing label words
def test_bpe_words_take_the_leading_space():
    tok = bpe_tokenizer()
    assert tokenize_word(tok, "great", space=True) == tok.convert_tokens_to_ids(["Ġgreat"])
    assert len(tokenize_word(tok, "great", space=False)) > 1  # 'great' without the space is rarer: pieces
    assert len(tokenize_word(tok, "terrible", space=True)) > 1


def test_wordpiece_words_ignore_the_space():
    tok = word_tokenizer()
    assert tokenize_word(tok, "great", True) == tokenize_word(tok, "great", False) == [tok.convert_tokens_to_ids("great")]
    assert tokenize_word(tok, "very bad", True) == tok.convert_tokens_to_ids(["very", "bad"])


def test_unknown_word_is_refused():
    with pytest.raises(UserError, match="unknown to this tokenizer"):
        tokenize_word(word_tokenizer(), "xyzzy", True)


def test_verbalizer_single_and_multi_token():
    tok = bpe_tokenizer()
    v = Verbalizer.build({"0": ["terrible"], "1": ["great", "good"]}, tok, space=True)
    assert v.classes == ["0", "1"] and v.n_classes == 2
    assert v.word_class.tolist() == [0, 1, 1]
    assert not v.single_token and v.max_len == max(len(w) for w in v.word_ids)
    targets = v.targets
    assert targets.shape == (3, v.max_len)
    for row, ids in zip(targets.tolist(), v.word_ids):
        assert row[: len(ids)] == ids and all(t == -1 for t in row[len(ids):])
    assert v.token_ids == sorted({t for w in v.word_ids for t in w})
    assert Verbalizer.build({"0": ["bad"], "1": ["great"]}, tok, True).single_token


def test_words_of_two_classes_must_differ():
    with pytest.raises(UserError, match="tokenize the same"):
        Verbalizer.build({"0": ["great"], "1": ["Great"]}, word_tokenizer(), True)  # lower-cased vocabulary


def test_class_index_error_names_the_row():
    v = Verbalizer.build({"0": ["bad"], "1": ["great"]}, word_tokenizer(), True)
    assert v.class_index(1, "x") == 1
    with pytest.raises(UserError, match=r"data.jsonl:7: label '2' is not in the label map \(labels: 0, 1\)"):
        v.class_index(2, "data.jsonl:7")


# ------------------------------------------------------------------ scoring
def test_word_and_class_log_probs_against_a_loop():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 11)  # 2 examples x k=2 rows, M=3
    targets = torch.tensor([[1, -1, -1], [2, 3, -1], [4, 5, 6]])
    row_of = torch.tensor([[0, 1, 1], [2, 3, 3]])
    lp = word_log_probs(logits, targets, row_of)
    logp = logits.log_softmax(-1)
    for b in range(2):
        for w in range(3):
            r = row_of[b, w]
            want = sum(logp[r, j, t] for j, t in enumerate(targets[w].tolist()) if t >= 0)
            assert torch.isclose(lp[b, w], want, atol=1e-5)
    cls = class_log_probs(lp, torch.tensor([0, 1, 1]), 2)
    assert torch.allclose(cls[:, 0], lp[:, 0])
    assert torch.allclose(cls[:, 1], torch.logsumexp(lp[:, 1:], dim=-1))


def _manual_word_lp(lm, task, example, word_ids):
    """log p(word | text before [P]) from the full model: teacher forcing (causal) or one mask per token."""
    enc = task.encoder
    if lm.is_masked:
        ids, _, pred = enc.encode_one(example, [0] * len(word_ids))
    else:
        prefix, _, _ = enc.encode_one(example, [enc.placeholder])
        ids, pred = prefix + word_ids, list(range(len(prefix) - 1, len(prefix) - 1 + len(word_ids)))
    with torch.no_grad():
        logp = lm.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    return sum(float(logp[p, t]) for p, t in zip(pred, word_ids))


@pytest.mark.parametrize("kind, label_map", [
    ("gpt2", {"0": ["terrible", "bad"], "1": ["great", "really nice"]}),  # BPE: 1- and multi-token words
    ("llama", {"0": ["very bad"], "1": ["great"]}),
    ("bert", {"0": ["very bad", "awful"], "1": ["great"]}),  # masked LM: two rows (1 and 2 masks)
])
def test_multi_token_scoring_matches_the_full_model(tiny, kind, label_map):
    lm = tiny(kind)
    task = PromptTask(lm, "{sentence} It was [P] .", label_map)
    data = Dataset("x", [{"sentence": "a fine movie", "label": 1}, {"sentence": "an awful film", "label": 0}])
    rows = task.encode(data).rows
    with torch.no_grad():
        logits = lm.logits_at(rows.predict_pos, input_ids=rows.input_ids, attention_mask=rows.attention_mask)
    got = task.log_probs(logits, rows)
    assert got.shape == (2, 2)
    v = task.verbalizer
    for b, ex in enumerate(data.rows):
        for c in range(2):
            words = [ids for ids, owner in zip(v.word_ids, v.word_class.tolist()) if owner == c]
            want = torch.logsumexp(torch.tensor([_manual_word_lp(lm, task, ex, w) for w in words]), 0)
            assert abs(float(got[b, c]) - float(want)) < 1e-4, (kind, b, c)
    assert torch.allclose(task.target_log_prob(logits, rows), got.gather(1, rows.labels[:, None]).squeeze(1))


def test_cli_label_missing_from_the_label_map(cli, tiny_folder, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"sentence": "great", "label": 1}, {"sentence": "odd", "label": 2}])
    result = cli("evaluate", "--model", tiny_folder("bert"), "--template", "{sentence} It was [P] .",
                 "--label-map", "0=terrible,1=great", "--data", path)
    assert_user_error(result, f"{path}:2", "label '2' is not in the label map")


def test_cli_empty_label_word(cli, tiny_folder):
    result = cli("evaluate", "--model", tiny_folder("gpt2"), "--label-map", '{"0": "terrible", "1": ""}',
                 "--data", "demo:sentiment:dev")
    assert_user_error(result, "empty label word")


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_every_label_word_of_an_example_is_scored_on_the_same_text(kind):
    """A field cut to fit max_length is cut once per example: the rows of its label words (one per
    word on a causal LM, one per word length on a masked LM) keep the same text before [P], however
    long each word is (the longer word's row used to lose more of the sentence)."""
    from frozen_lm.encode import Encoder, encode_rows
    from frozen_lm.templates import Template
    from frozen_lm.testing import tiny_lm

    lm = tiny_lm(kind)
    tok = lm.tokenizer
    v = Verbalizer.build({"0": ["terrible"], "1": ["great", "great great great great"]}, tok, space=kind == "gpt2")
    assert len({len(w) for w in v.word_ids}) > 1
    enc = Encoder(Template.parse("{sentence} it was [P]"), tok, lm.is_masked, max_length=14)
    sentence = "one of the most great and terrible film of the year it was a movie"
    rows = encode_rows(enc, [{"sentence": sentence}], [0], v, pad_id=0)
    texts = []
    for r in range(rows.input_ids.shape[0]):
        ids = rows.input_ids[r, : int(rows.attention_mask[r].sum())].tolist()
        texts.append(ids[: int(rows.predict_pos[r, 0]) + (0 if lm.is_masked else 1)])
    assert len(texts) > 1 and all(t == texts[0] for t in texts)
    assert all(int(rows.attention_mask[r].sum()) <= 14 for r in range(rows.input_ids.shape[0]))
