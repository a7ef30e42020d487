"""The pass@k evaluation harness: config, resumable generation store, sampling + verification, metrics,
Markdown tables and the concentration analysis. The public entry points are re-exported by
`simko_jax.evaluate` (`evaluate`, `concentration_analysis`, the CLI)."""
