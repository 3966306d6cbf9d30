"""Trainable prompts every method may use, on one frozen model.

soft: vectors at a template's [T] slots (prompt tuning, PEZ, prompt-space subspaces); prefix:
key/values every layer attends to first (prefix tuning, prefix-space subspaces); init: their initial
values (random, frequent tokens, label words, a text); effective: the task a prompt is trained and
applied with (prepended virtual-token slots, or slots removed and positions reserved for a prefix),
and `ReadingPrompt`, a discrete prompt for such a task's slots.
"""
