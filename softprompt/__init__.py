"""Prompt tuning and prefix tuning on a frozen language model, with nearest-token interpretation."""
