"""python3 -m exporter CHECKPOINT_DIR --vae VAE_NPZ --out BUNDLE_DIR [--dtype ...] [--force] ..."""

import argparse
import sys

from .errors import ExportError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="exporter", description="Export a Hugging Face PaliGemma 2 checkpoint and "
                                 "big_vision's vae-oid.npz to a TorchScript bundle (docs/bundle-format.md).")
    ap.add_argument("checkpoint", nargs="?", help="checkpoint folder, or a Hugging Face cache folder models--org--name")
    ap.add_argument("--vae", help="big_vision vae-oid.npz (required to export)")
    ap.add_argument("--make-random", metavar="CONFIG_JSON", default=None,
                    help="instead of exporting, write a random-weight HF checkpoint of CONFIG_JSON's architecture "
                         "to --out (sharded bf16 safetensors with the hub's names)")
    ap.add_argument("--image-size", type=int, default=0, help="with --make-random: override the image size")
    ap.add_argument("--seed", type=int, default=0, help="with --make-random: random seed")
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--dtype", default=None, metavar="{bfloat16,float16,float32}",
                    help="dtype of the saved modules (default: the checkpoint's)")
    ap.add_argument("--force", action="store_true", help="replace an existing bundle")
    ap.add_argument("--model-id", default=None, help="model id recorded in the manifest")
    ap.add_argument("--revision", default=None, help="revision recorded in the manifest")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(f"exporter: {msg}", file=sys.stderr, flush=True)

    if args.make_random:
        try:
            from .make_random import make_random
            make_random(args.make_random, args.out, seed=args.seed, image_size=args.image_size, force=args.force,
                        log=log)
        except ExportError as e:
            print(f"exporter: error: {e}", file=sys.stderr)
            return 1
        return 0
    if not args.checkpoint or not args.vae:
        ap.error("CHECKPOINT and --vae are required (or --make-random CONFIG_JSON)")
    try:
        from .export import export  # torch import inside: argument errors stay fast
        manifest = export(args.checkpoint, args.vae, args.out, dtype=args.dtype, force=args.force,
                          model_id=args.model_id, revision=args.revision, log=log)
    except ExportError as e:
        print(f"exporter: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("exporter: error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("exporter: error: out of memory", file=sys.stderr)
        return 1
    log(f"wrote {args.out} ({manifest['dtype']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
