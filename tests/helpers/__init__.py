"""What several test files share, imported as `helpers.X` (tests/conftest.py puts tests/ on the path):
paths, clean environments and command runners, the one-line-error promise, store dumps, gradient
checks, synthetic report runs, and the loopback W&B server (fake_wandb)."""
