"""Tiny configs of every mapped diffusers transformer class, with inputs to call them: the cases that
tests/test_families.py runs. One file per family, each with ``CASES: dict[str, Case]`` keyed by class name."""
