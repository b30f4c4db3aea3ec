"""Benchmarks: speed and memory, side by side with an eager PyTorch reference."""
