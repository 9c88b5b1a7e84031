"""Fold one more training stage into a shipped default's files.

    python -m ditcache.models.stages --model mdt --run /tmp/st5/mdt.safetensors \
        --command "ditcache train-default --model mdt --init-from mdt --steps 1800 ..." [--weights-dir DIR]

A default trained in stages (`train-default --init-from <name>`, a fresh optimizer each time) ships as one set of
files: `<name>.safetensors` (the last stage's EMA weights, stored as float16 like every shipped default),
`<name>.json` (the last stage's settings, plus `stages`: every stage's command, steps run, seconds, final loss) and
`<name>_loss.csv` (the whole curve: each stage's steps and seconds continue from the previous stage's last row).
This reads the run that `train-default --out RUN` wrote (RUN, RUN's .json and _loss.csv) and updates those three
files; the model card is regenerated apart (`python -m ditcache.models.card --models <name>`).

Refused before anything is written: a run of another model or architecture, a run not started from the shipped
weights (`init_from` must name them), a run with no loss rows.
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


def fold_stage(name: str, run: Path, command: str, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Update ``weights_dir``'s ``name`` files with the run at ``run``; returns the new JSON."""
    run = Path(run)
    shipped_meta_path = weights_dir / f"{name}.json"
    run_meta = json.loads(run.with_suffix(".json").read_text())
    shipped = json.loads(shipped_meta_path.read_text())
    if run_meta.get("name") != name or run_meta["architecture"] != shipped["architecture"]:
        raise ValueError(f"{run} is a run of {run_meta.get('name')!r} with architecture {run_meta['architecture']}, "
                         f"not of the shipped {name!r}")
    init = run_meta["training"].get("init_from")
    if not init or Path(init["source"]).stem != name or init["fresh"]:
        raise ValueError(f"{run} was not continued from the shipped {name} weights (init_from: {init}): a stage "
                         f"must start from them (train-default --init-from {name})")
    rows = list(csv.DictReader(io.StringIO(run.with_name(run.stem + "_loss.csv").read_text())))
    if not rows:
        raise ValueError(f"{run} has no loss rows: the run wrote nothing to fold")
    stages = shipped.get("stages") or [_stage_record(shipped, "(not recorded)")]
    n = len(stages)
    new = dict(run_meta)
    new["training"] = {**run_meta["training"],
                       "init_from": {**init, "source": f"{name} after stage {n} (the weights committed before "
                                                       "this stage)"}}
    new["stages"] = [*stages, _stage_record(run_meta, command)]

    # the loss curve continues: steps and seconds offset by the shipped curve's last row
    loss_path = weights_dir / f"{name}_loss.csv"
    old_rows = list(csv.DictReader(io.StringIO(loss_path.read_text())))
    step0, sec0 = (int(old_rows[-1]["step"]), float(old_rows[-1]["seconds"])) if old_rows else (0, 0.0)
    out_csv = io.StringIO()
    writer = csv.writer(out_csv, lineterminator="\n")
    writer.writerow(["step", "loss", "seconds"])
    for r in old_rows:
        writer.writerow([r["step"], r["loss"], r["seconds"]])
    for r in rows:
        writer.writerow([int(r["step"]) + step0, r["loss"], f"{float(r['seconds']) + sec0:.1f}"])

    # float16 like every shipped default; metadata as train-default writes it (name, steps of this stage)
    from safetensors import safe_open

    with safe_open(str(run), "pt") as f:
        metadata = f.metadata() or {}
    tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(str(run)).items()}
    # each file is written next to its target and renamed over it, so none is ever left half-written
    weights_path = weights_dir / f"{name}.safetensors"
    for path, write in ((weights_path, lambda p: save_file(tensors, str(p), metadata=metadata)),
                        (loss_path, lambda p: p.write_text(out_csv.getvalue())),
                        (shipped_meta_path, lambda p: p.write_text(json.dumps(new, indent=2) + "\n"))):
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return new


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the shipped default the stage continues (uvit, mdt, ...)")
    ap.add_argument("--run", required=True, type=Path, help="the .safetensors that train-default --out wrote")
    ap.add_argument("--command", required=True, help="the train-default command line of the stage, as run")
    ap.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args(argv)
    new = fold_stage(args.model, args.run, args.command, args.weights_dir)
    st = new["stages"][-1]
    print(f"{args.model}: stage {len(new['stages'])} folded in ({st['trained_steps']} steps, "
          f"{st['train_seconds'] / 60:.1f} min, loss {st['final_loss']:.4f})")


if __name__ == "__main__":
    main()
