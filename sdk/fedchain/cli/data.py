"""`fedchain data synth|digits|fetch|info|split`: datasets for hospitals and the demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from ..data import generate_synthetic

    try:
        path = generate_synthetic(args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                                  channels=args.channels, n_classes=args.classes, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.n_train}/{args.n_val}/{args.n_test} train/val/test, {args.classes} classes, "
          f"{args.channels} channel(s), seed {args.seed})")
    return 0


def _digits(args: argparse.Namespace) -> int:
    from ..data.digits import MissingDependency, generate_digits

    fractions = (1.0 - args.val_frac - args.test_frac, args.val_frac, args.test_frac)
    try:
        path = generate_digits(args.out, seed=args.seed, fractions=fractions)
    except MissingDependency:
        print("error: scikit-learn is not installed: pip install scikit-learn (the 'real' extra)", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} (scikit-learn digits, 10 classes, 8x8 upscaled to 28x28; stratified "
          f"{fractions[0]:.0%}/{fractions[1]:.0%}/{fractions[2]:.0%} train/val/test, seed {args.seed})")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from ..data import FetchError, fetch

    try:
        path = fetch(args.name, args.out, url=args.url, md5=args.md5, timeout=args.timeout)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path} (MD5 verified)")
    return 0


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data import DatasetError, load_npz

    try:
        ds = load_npz(args.path)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = {"path": str(args.path), "n_classes": ds.n_classes, "channels": ds.channels,
            **{s: {"n": len(ds.split(s)), "class_counts": np.bincount(ds.split(s).labels, minlength=ds.n_classes)
                   .tolist()} for s in ("train", "val", "test")}}
    print(json.dumps(info, indent=2))
    return 0


def _split(args: argparse.Namespace) -> int:
    """Write one MedMNIST npz per hospital (Dirichlet(α) train split; val/test copied)."""
    import numpy as np

    from ..data import DatasetError, dirichlet_split, load_npz

    try:
        ds = load_npz(args.path)
        shards = dirichlet_split(ds.train.labels, args.hospitals, args.alpha, args.seed, min_size=args.min_size)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, idx in enumerate(shards):
        p = out / f"hospital{i + 1}.npz"
        np.savez_compressed(p, train_images=ds.train.images[idx], train_labels=ds.train.labels[idx].reshape(-1, 1),
                            val_images=ds.val.images, val_labels=ds.val.labels.reshape(-1, 1),
                            test_images=ds.test.images, test_labels=ds.test.labels.reshape(-1, 1))
        counts = np.bincount(ds.train.labels[idx], minlength=ds.n_classes).tolist()
        print(f"{p}: {len(idx)} training samples, per class {counts}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets: synthetic generator, MedMNIST fetch, inspection, non-IID split")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = dsub.add_parser("synth", help="write a deterministic synthetic medical-like dataset (MedMNIST npz)")
    s.add_argument("--out", required=True, help="output .npz path")
    s.add_argument("--n-train", type=int, default=6000)
    s.add_argument("--n-val", type=int, default=1000)
    s.add_argument("--n-test", type=int, default=2000)
    s.add_argument("--channels", type=int, choices=(1, 3), default=1)
    s.add_argument("--classes", type=int, default=4, help="2..8")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)

    g = dsub.add_parser("digits", help="scikit-learn's 1,797 real handwritten digits (bundled, no download) as a "
                                       "MedMNIST npz, upscaled to 28x28 (needs the `real` extra)")
    g.add_argument("--out", required=True, help="output .npz path")
    g.add_argument("--seed", type=int, default=0, help="seed of the stratified train/val/test split")
    g.add_argument("--val-frac", type=float, default=0.1, help="validation fraction (the demo's root set is drawn "
                                                               "from it)")
    g.add_argument("--test-frac", type=float, default=0.2)
    g.set_defaults(func=_digits)

    f = dsub.add_parser("fetch", help="download a MedMNIST npz (needs internet and the `medmnist` extra, "
                                      "or --url and --md5)")
    f.add_argument("name", help="e.g. pathmnist, bloodmnist, pneumoniamnist")
    f.add_argument("--out", default="data", help="directory (default: data/)")
    f.add_argument("--url", default=None)
    f.add_argument("--md5", default=None)
    f.add_argument("--timeout", type=float, default=30.0)
    f.set_defaults(func=_fetch)

    i = dsub.add_parser("info", help="validate an npz and print its shapes and class counts")
    i.add_argument("path")
    i.set_defaults(func=_info)

    sp = dsub.add_parser("split", help="Dirichlet(α) non-IID split into one npz per hospital")
    sp.add_argument("path")
    sp.add_argument("--hospitals", type=int, required=True)
    sp.add_argument("--alpha", type=float, default=0.5)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--min-size", type=int, default=10)
    sp.add_argument("--out", required=True, help="output directory")
    sp.set_defaults(func=_split)
