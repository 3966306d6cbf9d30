"""AutoPrompt: gradient-guided discrete trigger search on a frozen language model."""
