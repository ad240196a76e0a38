"""Benchmarks of the broadcast engine against the local stack (see bench/README.md)."""
