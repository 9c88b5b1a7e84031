"""Process-wide settings a benchmark script takes on its command line: OpenMP's wait policy and glibc's allocator.

OpenMP reads OMP_WAIT_POLICY once, when torch loads, so a script calls ``apply_wait_policy()`` before it
imports torch and ``check_wait_policy(args, parser, applied)`` after parsing. ``--wait-policy=passive`` (the
default: idle threads sleep at once, so a job on the other core does not slow the run) or
``--wait-policy=default`` (the variable unset: libgomp's threads spin a while before sleeping, what a user's run
gets). Given as one argument (``--wait-policy=X``), because it is read from sys.argv before argparse runs.

``--allocator=tuned`` keeps freed memory in the process (glibc's mallopt: no trimming of the heap, no mmap for
large blocks), so a tensor allocated again after one of its size was freed does not fault its pages in anew;
``--allocator=default`` leaves glibc as it is (what a user's run gets). Measured in BENCHMARKS.md (token paths)
and `benchmarks/allocator.py`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

POLICIES = ("passive", "default")
ALLOCATORS = ("default", "tuned")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP = 1 << 30  # bytes: a trim threshold no heap top here reaches, an mmap threshold above any one tensor here


def _argv_value(option: str, default: str) -> str:
    """The value of ``--option=value`` in sys.argv, read before argparse runs (and before torch loads)."""
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"{option}=")), default)


def apply_wait_policy() -> str:
    """Set or unset OMP_WAIT_POLICY from ``--wait-policy=...`` in sys.argv; returns the policy's name."""
    policy = _argv_value("--wait-policy", "passive")
    if policy == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return policy


def add_wait_policy(parser) -> None:
    """The ``--wait-policy`` option (parsed again by argparse so that --help lists it and a typo is refused)."""
    parser.add_argument("--wait-policy", choices=POLICIES, default="passive",
                        help="OpenMP's wait policy (give it as --wait-policy=...): passive, or libgomp's default "
                             "(spin, then sleep)")


def check_wait_policy(args, parser, applied: str) -> None:
    """Refuse ``--wait-policy X`` (two arguments): apply_wait_policy did not see it before torch loaded."""
    if args.wait_policy != applied:
        parser.error("give the wait policy as --wait-policy=passive or --wait-policy=default (one argument): it "
                     "must be read before torch loads")


def apply_allocator() -> str:
    """Tune glibc from ``--allocator=...`` in sys.argv before the first large allocation; returns its name."""
    allocator = _argv_value("--allocator", "default")
    if allocator == "tuned":
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        if not (libc.mallopt(M_TRIM_THRESHOLD, KEEP) and libc.mallopt(M_MMAP_THRESHOLD, KEEP)):
            raise SystemExit("--allocator=tuned: glibc's mallopt refused the setting")
    return allocator


def add_allocator(parser) -> None:
    parser.add_argument("--allocator", choices=ALLOCATORS, default="default",
                        help="glibc's allocator (give it as --allocator=...): default, or tuned (freed memory kept "
                             "in the process)")


def check_allocator(args, parser, applied: str) -> None:
    if args.allocator != applied:
        parser.error("give the allocator as --allocator=default or --allocator=tuned (one argument)")
