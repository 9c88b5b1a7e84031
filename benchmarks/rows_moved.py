"""Which rows of a regenerated bench report moved, against the report it replaced (issue 28's list).

    python benchmarks/rows_moved.py --report dit --before eed3ba4~1 [--out benchmarks/results/rows_moved_dit.md]
    python benchmarks/rows_moved.py --report regen_dit256 --against claims_dit256

Reads results/<report>/report.json as it is now and as it was at git revision --before (or, with --against,
another report of the same seeds: a rerun of some of its rows on the current code), and prints, for every
setting present in both (same seeds, so the same uncached images), FLOP x, PSNR and the FD difference to
uncached before and after, with PSNR's change marked "moved" where the two 95% intervals do not overlap.
Settings only in one report are listed apart. Wall-clock is left out: one round on one thread is not comparable
across runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows(report: dict) -> dict[tuple[str, str, str], dict]:
    """(kind, method, setting) -> row: peers of one package share settings texts, so the method is part of it."""
    return {(r["kind"], r["method"], r["setting"]): r for r in report["rows"][1:] if not r.get("error")}


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def _apart(a, b) -> bool:
    """Two 95% intervals that do not overlap."""
    return a is not None and b is not None and (a[1] < b[0] or b[1] < a[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", required=True, help="a folder under benchmarks/results (dit, flux, video, ...)")
    ap.add_argument("--before", help="the git revision holding the report it replaced")
    ap.add_argument("--against", help="or: another results folder, on the same seeds, holding the older rows")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = ap.parse_args()
    if (args.before is None) == (args.against is None):
        raise SystemExit("give one of --before REV and --against FOLDER")
    path = f"benchmarks/results/{args.report}/report.json"
    if args.before:
        old = json.loads(subprocess.run(["git", "show", f"{args.before}:{path}"], cwd=ROOT, check=True,
                                        capture_output=True, text=True).stdout)
    else:
        old = json.loads((ROOT / "benchmarks" / "results" / args.against / "report.json").read_text())
    what = f"git {args.before}" if args.before else f"`{args.against}`"
    how = f"--before {args.before}" if args.before else f"--against {args.against}"
    new = json.loads((ROOT / path).read_text())
    if old["config"]["seeds"] != new["config"]["seeds"] or old["config"]["steps"] != new["config"]["steps"]:
        raise SystemExit(f"the two reports ran different seeds or steps: {old['config']} vs {new['config']}")
    before, after = _rows(old), _rows(new)
    lines = [f"Rows of `{args.report}` before ({what}) and after regeneration, "
             f"{new['config']['seeds']} seeds, {new['config']['steps']} steps: FLOP x, PSNR [95% CI] and FD - uncached "
             "[paired 95% CI]; \"moved\" = the PSNR intervals do not overlap. Command: "
             f"`python benchmarks/rows_moved.py --report {args.report} {how}`", "",
             "| kind | method | setting | FLOP x before | after | PSNR before | PSNR after | FD diff before "
             "| FD diff after | PSNR |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key in [k for k in after if k in before]:
        a, b = before[key], after[key]
        lines.append(
            f"| {key[0]} | {key[1]} | `{key[2]}` | {_fmt(a['flop_speedup'])} | {_fmt(b['flop_speedup'])} | "
            f"{_fmt(a['psnr'])} [{_fmt(a['psnr_ci'] and a['psnr_ci'][0])}, {_fmt(a['psnr_ci'] and a['psnr_ci'][1])}] | "
            f"{_fmt(b['psnr'])} [{_fmt(b['psnr_ci'] and b['psnr_ci'][0])}, {_fmt(b['psnr_ci'] and b['psnr_ci'][1])}] | "
            f"{_fmt(a['fd_delta'], '+.2f')} | {_fmt(b['fd_delta'], '+.2f')} | "
            f"{'moved' if _apart(a['psnr_ci'], b['psnr_ci']) else 'same'} |")
    only_new = [f"{k[1]} `{k[2]}`" for k in after if k not in before]
    only_old = [f"{k[1]} `{k[2]}`" for k in before if k not in after]
    lines += ["", f"Only after: {', '.join(only_new) or 'none'}.", f"Only before: {', '.join(only_old) or 'none'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
