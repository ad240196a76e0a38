"""The one exception of the benchmarks."""


class BenchError(Exception):
    """A one-line failure of the bench itself (not a wrong figure, which is reported)."""
