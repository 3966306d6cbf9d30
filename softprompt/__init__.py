"""Prompt tuning and prefix tuning on a frozen language model, with nearest-token interpretation.

Modules: config (TuneConfig, the options of `autoprompt tune`), init (random / vocab / labels /
text initializations), prompt (vectors at the [T] slots), prefix (key/value prefixes, MLP
reparameterization and fold), targets (LM-loss examples), train (the loop), tune (template
resolution, run and save), apply (artifact -> logits for `autoprompt evaluate`), nearest and
interpret (`autoprompt nearest`), peft_export (PEFT's adapter layout), cli (the two commands).
"""
