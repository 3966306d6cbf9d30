"""Label-word search internals on planted data and tiny models: class-token scores, word filtering,
the features at [P], and the Python API (the CLI's label-search: test_search.py)."""

from __future__ import annotations

import torch

from frozen_lm import data as data_mod
from frozen_lm.task import PromptTask


def test_class_token_scores_find_the_planted_direction():
    """Features of class c lie along token w_c's output embedding: w_c must score highest for c."""
    from autoprompt.label_search import class_token_scores

    g = torch.Generator().manual_seed(0)
    emb = torch.randn(50, 8, generator=g)
    planted = {"neg": 11, "pos": 29}
    feats, labels = [], []
    for label, token in planted.items():
        for _ in range(40):
            feats.append(emb[token] * 2 + 0.3 * torch.randn(8, generator=g))
            labels.append(label)
    classes, scores, acc = class_token_scores(torch.stack(feats).numpy(), labels, emb, seed=0)
    assert classes == ["neg", "pos"] and acc == 1.0 and scores.shape == (2, 50)
    # binary: the two rows are opposite, and the planted tokens are separated along them
    assert torch.allclose(scores[0], -scores[1])
    assert scores[1, planted["pos"]] > scores[1, planted["neg"]] and scores[0, planted["neg"]] > scores[0, planted["pos"]]


def test_top_words_filters_and_orders(tiny):
    from autoprompt.label_search import top_words

    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} It was [P]", None, label_field="label")
    tok = lm.tokenizer
    scores = torch.zeros(2, lm.vocab_size)
    great, awful, movie = (tok.convert_tokens_to_ids(w) for w in ("great", "awful", "movie"))
    scores[0, awful], scores[0, movie], scores[1, great] = 3.0, 2.0, 5.0
    scores[:, tok.all_special_ids] = 100.0  # special tokens are never label words
    words = top_words(task, scores, ["0", "1"], 2)
    assert [w for w, _ in words["0"]] == ["awful", "movie"] and words["1"][0] == ("great", 5.0)


def test_predict_features_are_the_output_layer_input_at_p(tiny):
    from autoprompt.label_search import predict_features

    lm = tiny("bert")
    task = PromptTask(lm, "{sentence} [T] [P] .", None, label_field="label")
    data = data_mod.load("demo:sentiment:dev")
    trigger = torch.tensor([lm.tokenizer.convert_tokens_to_ids("very")])
    feats, labels = predict_features(task, data, trigger, batch_size=5)
    assert feats.shape == (len(data), lm.hidden_size) and labels == [str(r["label"]) for r in data.rows]
    from frozen_lm.encode import encode_rows

    rows = encode_rows(task.encoder, data.rows[3:4], [], None, [[task.encoder.placeholder]], pad_id=lm.pad_id).set_triggers(trigger)
    hidden = lm.hidden_at(rows.predict_pos[:, :1], input_ids=rows.input_ids, attention_mask=rows.attention_mask)
    torch.testing.assert_close(torch.as_tensor(feats[3]), lm.head_features(hidden)[0, 0].float(), atol=1e-5, rtol=1e-4)


def test_api_label_search_returns_a_usable_label_map(tiny):
    import autoprompt

    lm = tiny("llama")
    task = PromptTask(lm, "{sentence} It was [P]", {"0": "terrible", "1": "great"})
    words = autoprompt.label_search(task, "demo:sentiment:train", autoprompt.LabelSearchConfig(k=3, seed=1))
    assert words.classes == ["0", "1"] and all(len(ws) == 3 for ws in words.words.values())
    assert PromptTask(lm, "{sentence} It was [P]", words.label_map).verbalizer.n_classes == 2
