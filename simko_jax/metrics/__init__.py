"""Evaluation and monitoring metrics: pass@k / maj@k estimators and concentration (Lambda, rank probs)."""
