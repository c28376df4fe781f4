"""``bmdkit pretrain``: self-supervised pretraining of the image backbone on unlabelled radiographs."""

from __future__ import annotations

from pathlib import Path

from bmdkit.defaults import PRETRAINING_DEFAULTS


def add_parser(subparsers):
    """Register ``bmdkit pretrain``."""
    parser = subparsers.add_parser(
        "pretrain", help="pretrain the image backbone on unlabelled radiographs",
        description="Self-supervised pretraining (SimMIM masked-image modelling or "
                    "lightly's SimCLR, radiograph augmentations) of a timm backbone on "
                    "radiographs without DXA. The weights file records backbone, input size "
                    "and normalisation; use it as --param pretrained=FILE in fit/cv/demo or "
                    "pretrained=FILE in any estimator. Defaults are the estimators'. See "
                    "docs/pretraining.md.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="CSV with an image path column (other "
                                                 "columns ignored; paths relative to the CSV)")
    source.add_argument("--dicom-dir", type=Path, metavar="DIR",
                        help="every DICOM file under this folder")
    parser.add_argument("--image-col", default="image_path",
                        help="image path column of --csv (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.safetensors",
                        help="weights file to write (its folder must exist)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a weights file at --out")
    parser.add_argument("--backbone", default=PRETRAINING_DEFAULTS["backbone"],
                        help="timm model name (default: %(default)s, the estimators')")
    parser.add_argument("--image-size", type=int, default=PRETRAINING_DEFAULTS["image_size"],
                        help="input side in pixels (default: %(default)s, the estimators')")
    parser.add_argument("--method", default=PRETRAINING_DEFAULTS["method"],
                        choices=("simmim", "simclr"),
                        help="self-supervised objective (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=PRETRAINING_DEFAULTS["epochs"],
                        help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=PRETRAINING_DEFAULTS["batch_size"],
                        help="images per step (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run from its last finished epoch "
                             "(its state: FILE.safetensors.resume.pt)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--cache-dir", help="disk cache of decoded images")
    parser.set_defaults(func=run_pretrain)
    return parser


def image_paths(args):
    """The image paths of ``--csv`` (absolute) or ``--dicom-dir``."""
    if args.csv is not None:
        from bmdkit.datasets import load_cohort

        X, _ = load_cohort(args.csv, image_col=args.image_col, target=None)
        return list(X[args.image_col])
    from bmdkit.io import dicom_files

    return [str(args.dicom_dir / p) for p in dicom_files(args.dicom_dir)]


def run_pretrain(args):
    from bmdkit.pretraining import check_out, pretrain_backbone, resume_path

    check_out(args.out, overwrite=args.overwrite)  # before the images are listed and read
    paths = image_paths(args)
    if args.resume and resume_path(args.out).is_file():
        print(f"resuming from {resume_path(args.out)}", flush=True)
    info = pretrain_backbone(
        paths, args.out, backbone=args.backbone, image_size=args.image_size, method=args.method,
        epochs=args.epochs, batch_size=args.batch_size, resume=args.resume,
        overwrite=args.overwrite, random_state=args.seed, n_threads=args.threads,
        cache_dir=args.cache_dir)
    print(f"{args.out}: {info['backbone']} at {info['image_size']} px, {info['method']}, "
          f"{info['epochs']} epochs on {info['images']} images, final loss {info['final_loss']} "
          f"({info['seconds']:.0f} s); use it with --param pretrained={args.out}")
