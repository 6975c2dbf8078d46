"""paligemma-serve exporter: Hugging Face PaliGemma 2 checkpoint + big_vision vae-oid.npz -> TorchScript bundle.

Run as `python3 -m exporter CHECKPOINT_DIR --vae VAE_NPZ --out BUNDLE_DIR` (see docs/bundle-format.md).
"""

__version__ = "0.3.0"
FORMAT_VERSION = 2
