"""paligemma-serve exporter: Hugging Face PaliGemma 2 checkpoint + big_vision vae-oid.npz -> TorchScript bundle.

Run as `python3 -m exporter CHECKPOINT_DIR --vae VAE_NPZ --out BUNDLE_DIR` (see docs/bundle-format.md).
"""

__version__ = "0.4.0"
# 1: weights inside the TorchScript archives; 2: in <module>.safetensors; 3: as 2, linear layers call pg::linear.
FORMAT_VERSION = 3
