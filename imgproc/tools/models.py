"""``imgproc models fetch | check``: the model files (``imgproc.modelfiles``), provisioned or verified."""

from __future__ import annotations

import sys

from imgproc.config import Settings


def add_parser(sub) -> None:
    """The ``models`` subcommand on the ``imgproc`` parser's subparsers."""
    models = sub.add_parser("models", help="provision and check model weights")
    msub = models.add_subparsers(dest="action", required=True)
    fetch = msub.add_parser("fetch", help="provision ISNet and BlazeFace (or --model NAME through rembg)")
    fetch.add_argument("--model", action="append", help="another rembg model, e.g. u2net (needs network)")
    msub.add_parser("check", help="verify the model files against models/manifest.json")
    models.set_defaults(func=run)


def run(args, settings: Settings) -> int:
    from imgproc.modelfiles import check_models, derive, provision, variants

    if args.action == "fetch":
        try:
            if args.model:
                for name in args.model:
                    provision.fetch_rembg_model(name, settings.models_dir)
            else:
                provision.fetch_models(settings.models_dir, settings.cache_dir)
                derive.derive_models(settings.models_dir)  # ISNet batched, fp16 and fp32 (issue 13)
                variants.derive_variants(settings.models_dir)  # ISNet lean and int8 for CPU (issue 14)
                _warm_matting(settings)
        except Exception as exc:  # every provisioning failure ends here with its explanation
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    problems = check_models(settings.models_dir)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"models in {settings.models_dir} are complete and verified")
    return 1 if problems else 0


def _warm_matting(settings: Settings) -> None:
    """Compile pymatting's kernels now, so that no worker's first ``alpha_matting`` job waits a minute."""
    from imgproc.processing import matting

    cache = settings.matting_cache_dir
    fresh = not any(cache.glob("*/*.nbi"))
    if fresh:
        print(f"alpha matting: compiling pymatting's kernels into {cache} (about a minute, once)", flush=True)
    seconds = matting.warm(cache)
    print(f"alpha matting: kernels {'compiled' if fresh else 'loaded'} in {seconds:.1f} s ({cache})")
