"""python3 -m exporter CHECKPOINT_DIR --vae VAE_NPZ --out BUNDLE_DIR [--dtype ...] [--force] ..."""

import argparse
import sys

from .errors import ExportError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="exporter", description="Export a Hugging Face PaliGemma 2 checkpoint and "
                                 "big_vision's vae-oid.npz to a TorchScript bundle (docs/bundle-format.md).")
    ap.add_argument("checkpoint", help="checkpoint folder, or a Hugging Face cache folder models--org--name")
    ap.add_argument("--vae", required=True, help="big_vision vae-oid.npz")
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
