"""Fold one more training stage into a shipped default's files.

    python -m ditcache.models.stages --model mdt --run /tmp/st5/mdt.safetensors \
        --command "ditcache train-default --model mdt --init-from mdt --steps 1800 ..." [--weights-dir DIR]

A default trained in stages (`train-default --init-from <name>`, a fresh optimizer each time) ships as one set of
files: `<name>.safetensors` (the last stage's EMA weights, stored as float16 like every shipped default),
`<name>.json` (the last stage's settings, plus `stages`: every stage's command, steps run, seconds, final loss) and
`<name>_loss.csv` (the whole curve: each stage's steps and seconds continue from the previous stage's last row).
This reads the run that `train-default --out RUN` wrote (RUN, RUN's .json and _loss.csv) and updates those three
files; the model card is regenerated apart (`python -m ditcache.models.card --models <name>`).

A default first shipped after several stages run outside the repo (each `--init-from` the previous stage's file)
is written by `--first` (its first stage, trained from scratch), then each later stage folded with `--init-file`
naming the file it was started from: that file's weights, as float16, must equal the shipped ones.

    python -m ditcache.models.stages --model latte --first --run st1.safetensors --command "..."
    python -m ditcache.models.stages --model latte --run st2.safetensors --init-file st1.safetensors --command "..."

Refused before anything is written: a run of another model or architecture, a run not started from the shipped
weights (`init_from` must name them, or `--init-file` hold them), a run with no loss rows, a `--first` run that
was itself continued, or a `--first` where the default's files already exist.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _stage_record(run_meta: dict, command: str) -> dict:
    tr = run_meta["training"]
    return {"command": command, "trained_steps": run_meta["trained_steps"],
            "train_seconds": run_meta["train_seconds"], "final_loss": run_meta["final_loss"], "seed": tr["seed"],
            "lr": tr["lr"], "schedule": tr.get("schedule", "constant")}


def _half(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, floating ones as float16: how a default ships."""
    return {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def _loss_rows(run: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(run.with_name(run.stem + "_loss.csv").read_text())))
    if not rows:
        raise ValueError(f"{run} has no loss rows: the run wrote nothing to fold")
    return rows


def _started_from_shipped(name: str, init: dict | None, init_file: Path | None,
                          weights_dir: Path) -> bool:
    """Whether the run began from the shipped weights: named as them (`--init-from <name>`), or from
    ``init_file`` (the file its JSON names) whose weights, as float16, are the shipped ones."""
    if not init or init["fresh"]:
        return False
    if init_file is None:
        return Path(init["source"]).stem == name
    if Path(init["source"]).name != Path(init_file).name:
        return False
    shipped, started = _half(weights_dir / f"{name}.safetensors"), _half(Path(init_file))
    return shipped.keys() == started.keys() and all(torch.equal(shipped[k], started[k]) for k in shipped)


def _curve(old_rows: list[dict], rows: list[dict]) -> str:
    """The loss CSV: the shipped rows, then the run's, whose steps and seconds continue from the last shipped
    row (from 0 for a first stage)."""
    step0, sec0 = (int(old_rows[-1]["step"]), float(old_rows[-1]["seconds"])) if old_rows else (0, 0.0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "loss", "seconds"])
    for r in old_rows:
        writer.writerow([r["step"], r["loss"], r["seconds"]])
    for r in rows:
        writer.writerow([int(r["step"]) + step0, r["loss"], f"{float(r['seconds']) + sec0:.1f}"])
    return out.getvalue()


def _write_all(name: str, run: Path, meta: dict, curve: str, weights_dir: Path) -> None:
    """The run's weights (float16, its metadata kept), the loss curve and the JSON, each written next to its
    target and renamed over it, so none is ever left half-written."""
    from safetensors import safe_open

    with safe_open(str(run), "pt") as f:
        metadata = f.metadata() or {}
    tensors = _half(run)
    for path, write in ((weights_dir / f"{name}.safetensors",
                         lambda p: save_file(tensors, str(p), metadata=metadata)),
                        (weights_dir / f"{name}_loss.csv", lambda p: p.write_text(curve)),
                        (weights_dir / f"{name}.json", lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))):
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def _check_model(name: str, run: Path, run_meta: dict, architecture: dict | None) -> None:
    if run_meta.get("name") != name or (architecture is not None and run_meta["architecture"] != architecture):
        raise ValueError(f"{run} is a run of {run_meta.get('name')!r} with architecture {run_meta['architecture']}, "
                         f"not of the shipped {name!r}")


def start_default(name: str, run: Path, command: str, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Write ``name``'s files in ``weights_dir`` from its first stage, a run trained from scratch; refused when
    any of them exists (they are someone's) or when the run was itself continued from other weights."""
    run = Path(run)
    run_meta = json.loads(run.with_suffix(".json").read_text())
    _check_model(name, run, run_meta, None)
    existing = [p.name for p in (weights_dir / f"{name}{s}" for s in (".json", ".safetensors", "_loss.csv"))
                if p.exists()]
    if existing:
        raise ValueError(f"{name} already ships ({', '.join(existing)} in {weights_dir}): fold a stage instead")
    if run_meta["training"].get("init_from"):
        raise ValueError(f"{run} was continued from {run_meta['training']['init_from']['source']}: a first stage "
                         "is trained from scratch")
    rows = _loss_rows(run)
    new = {**run_meta, "stages": [_stage_record(run_meta, command)]}
    _write_all(name, run, new, _curve([], rows), weights_dir)
    return new


def fold_stage(name: str, run: Path, command: str, weights_dir: Path = WEIGHTS_DIR,
               init_file: Path | None = None) -> dict:
    """Update ``weights_dir``'s ``name`` files with the run at ``run``; returns the new JSON. ``init_file``: the
    file the run started from when it was not the shipped one by name (its weights must be the shipped ones)."""
    run = Path(run)
    shipped_meta_path = weights_dir / f"{name}.json"
    run_meta = json.loads(run.with_suffix(".json").read_text())
    shipped = json.loads(shipped_meta_path.read_text())
    _check_model(name, run, run_meta, shipped["architecture"])
    init = run_meta["training"].get("init_from")
    if not _started_from_shipped(name, init, init_file, weights_dir):
        raise ValueError(f"{run} was not continued from the shipped {name} weights (init_from: {init}): a stage "
                         f"must start from them (train-default --init-from {name})")
    rows = _loss_rows(run)
    stages = shipped.get("stages") or [_stage_record(shipped, "(not recorded)")]
    n = len(stages)
    new = dict(run_meta)
    new["training"] = {**run_meta["training"],
                       "init_from": {**init, "source": f"{name} after stage {n} (the weights committed before "
                                                       "this stage)"}}
    new["stages"] = [*stages, _stage_record(run_meta, command)]

    old_rows = list(csv.DictReader(io.StringIO((weights_dir / f"{name}_loss.csv").read_text())))
    _write_all(name, run, new, _curve(old_rows, rows), weights_dir)
    return new


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the shipped default the stage continues (uvit, mdt, ...)")
    ap.add_argument("--run", required=True, type=Path, help="the .safetensors that train-default --out wrote")
    ap.add_argument("--command", required=True, help="the train-default command line of the stage, as run")
    ap.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--first", action="store_true", help="write the default's files from its first stage")
    ap.add_argument("--init-file", type=Path, default=None,
                    help="the file the run was started from, when its weights are the shipped ones under another name")
    args = ap.parse_args(argv)
    if args.first and args.init_file:
        ap.error("--first takes a run trained from scratch; --init-file is for later stages")
    new = (start_default(args.model, args.run, args.command, args.weights_dir) if args.first else
           fold_stage(args.model, args.run, args.command, args.weights_dir, args.init_file))
    st = new["stages"][-1]
    print(f"{args.model}: stage {len(new['stages'])} folded in ({st['trained_steps']} steps, "
          f"{st['train_seconds'] / 60:.1f} min, loss {st['final_loss']:.4f})")


if __name__ == "__main__":
    main()
