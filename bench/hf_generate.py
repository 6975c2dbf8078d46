"""transformers' generate on a (random) PaliGemma 2 checkpoint: p50 latency and aggregate tokens/s per batch
size, greedy, fixed-length answers, bf16 + sdpa on CUDA (the reference stack of issue 6). Used by bench/gpu.sh."""

import argparse
import json
import statistics
import time

import torch
from transformers import PaliGemmaForConditionalGeneration


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    model = PaliGemmaForConditionalGeneration.from_pretrained(
        args.checkpoint, torch_dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    cfg = model.config
    n = cfg.vision_config.num_image_tokens
    size = cfg.vision_config.image_size
    prompt = [2, 32318, 4401, 108]  # <bos> "segment cat" "\n" (ids of the fixture tokenizer)
    out = {}
    for b in [int(x) for x in args.batches.split(",")]:
        ids = torch.tensor([[cfg.image_token_index] * n + prompt] * b, device="cuda")
        pixels = torch.rand(b, 3, size, size, device="cuda", dtype=torch.bfloat16) * 2 - 1
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                  max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
        with torch.inference_mode():
            model.generate(**kw)
            times = []
            for _ in range(args.repeats):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                model.generate(**kw)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        p50 = statistics.median(times)
        out[str(b)] = {"p50_ms": p50 * 1e3, "tokens_per_s": b * args.new_tokens / p50}
        print(f"transformers batch {b}: p50 {p50 * 1e3:.1f} ms, {b * args.new_tokens / p50:.0f} tok/s", flush=True)
    json.dump(out, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
