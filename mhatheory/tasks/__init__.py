"""Tasks: data, tokenisation and metrics for the experiments (3-digit addition)."""
