"""Intrinsic dimension: training in a random subspace theta = theta_0 + P(theta_d), and d90."""
