"""Helpers shared by ropekit's tests and benchmarks: peer grids, never imported by the library itself."""

__all__: list[str] = []
