"""A straightforward PaliGemma 2 forward pass, written from transformers' modeling code and independent of
exporter/modules.py: no KV cache, the whole sequence recomputed per token, the attention mask built element by
element from transformers' rule. The architecture comes from an explicit dict (`arch`), not from the
exporter's config parser, so a wrong default in the parser cannot hide here.

arch keys: hidden, heads, kv_heads, head_dim, query_pre_attn_scalar, attn_softcap, final_softcap (None: off),
window, sliding (list of bool per layer), eps, rope_theta, v_heads, v_eps, patch.

Attention rule (transformers >= 4.53 masking_utils, which PaliGemma calls with an or_mask_function marking the
prefix bidirectional for both the causal and the sliding-window mask):
    allowed(q, kv) = (kv <= q and (full layer or q - kv < window)) or (q < P and kv < P)
`mask_4_47` is the rule of transformers 4.47-4.52 instead (Gemma2DecoderLayer applies the window on top of
PaliGemma's prefix mask): allowed(q, kv) = ((kv <= q) or (q < P and kv < P)) and (full layer or q - kv < window).
The two differ only where the prefix P is longer than the window (896-px models: 4096 image tokens).
"""

import torch
import torch.nn.functional as F


def mask_masking_utils(s, prefix_len, window, sliding):
    q = torch.arange(s)[:, None]
    kv = torch.arange(s)[None, :]
    causal = kv <= q
    if sliding:
        causal = causal & (q - kv < window)
    return causal | ((q < prefix_len) & (kv < prefix_len))


def mask_4_47(s, prefix_len, window, sliding):
    q = torch.arange(s)[:, None]
    kv = torch.arange(s)[None, :]
    allowed = (kv <= q) | ((q < prefix_len) & (kv < prefix_len))
    if sliding:
        allowed = allowed & ~(q - kv >= window)  # torch.tril(ones, diagonal=-window) masked out
    return allowed


def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def vision_features(t, arch, pixels):
    """SigLIP + projector for pixels [3,S,S] from hub-named fp32 tensors t; returns [N, text hidden]."""
    vp = "vision_tower.vision_model."
    p = arch["patch"]
    x = F.conv2d(pixels[None], t[vp + "embeddings.patch_embedding.weight"], t[vp + "embeddings.patch_embedding.bias"],
                 stride=p)[0]
    x = x.flatten(1).T + t[vp + "embeddings.position_embedding.weight"]
    n, h = x.shape
    nh = arch["v_heads"]
    d = h // nh
    i = 0
    while f"{vp}encoder.layers.{i}.layer_norm1.weight" in t:
        g = lambda k: t[f"{vp}encoder.layers.{i}.{k}"]
        y = F.layer_norm(x, [h], g("layer_norm1.weight"), g("layer_norm1.bias"), arch["v_eps"])
        q = (y @ g("self_attn.q_proj.weight").T + g("self_attn.q_proj.bias")).view(n, nh, d).transpose(0, 1)
        k = (y @ g("self_attn.k_proj.weight").T + g("self_attn.k_proj.bias")).view(n, nh, d).transpose(0, 1)
        v = (y @ g("self_attn.v_proj.weight").T + g("self_attn.v_proj.bias")).view(n, nh, d).transpose(0, 1)
        a = ((q @ k.transpose(1, 2)) * d ** -0.5).softmax(-1) @ v
        x = x + a.transpose(0, 1).reshape(n, h) @ g("self_attn.out_proj.weight").T + g("self_attn.out_proj.bias")
        y = F.layer_norm(x, [h], g("layer_norm2.weight"), g("layer_norm2.bias"), arch["v_eps"])
        y = F.gelu(y @ g("mlp.fc1.weight").T + g("mlp.fc1.bias"), approximate="tanh")
        x = x + y @ g("mlp.fc2.weight").T + g("mlp.fc2.bias")
        i += 1
    x = F.layer_norm(x, [h], t[vp + "post_layernorm.weight"], t[vp + "post_layernorm.bias"], arch["v_eps"])
    return x @ t["multi_modal_projector.linear.weight"].T + t["multi_modal_projector.linear.bias"]


def text_logits(t, arch, feats, ids, prefix_len, mask=mask_masking_utils):
    """Soft-capped logits [S, V] at every position of [image features ; ids] (the first prefix_len positions are
    the prefix: image tokens + <bos> prompt \\n; the rest are generated tokens)."""
    lp = "language_model.model."
    hid, nh, kvh, d = arch["hidden"], arch["heads"], arch["kv_heads"], arch["head_dim"]
    emb = t[lp + "embed_tokens.weight"]
    x = torch.cat([feats / hid ** 0.5, emb[ids]], 0) * hid ** 0.5
    s = x.shape[0]
    inv = 1.0 / (arch["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
    ang = torch.arange(s).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(z):
        return z * cos + torch.cat([-z[..., d // 2:], z[..., :d // 2]], -1) * sin

    eps = arch["eps"]
    for i, sliding in enumerate(arch["sliding"]):
        g = lambda k: t[f"{lp}layers.{i}.{k}"]
        allowed = mask(s, prefix_len, arch["window"], sliding)
        h = _rms(x, g("input_layernorm.weight"), eps)
        q = rope((h @ g("self_attn.q_proj.weight").T).view(s, nh, d).transpose(0, 1))
        k = rope((h @ g("self_attn.k_proj.weight").T).view(s, kvh, d).transpose(0, 1)).repeat_interleave(nh // kvh, 0)
        v = (h @ g("self_attn.v_proj.weight").T).view(s, kvh, d).transpose(0, 1).repeat_interleave(nh // kvh, 0)
        sc = (q @ k.transpose(1, 2)) * arch["query_pre_attn_scalar"] ** -0.5
        if arch["attn_softcap"] is not None:
            sc = torch.tanh(sc / arch["attn_softcap"]) * arch["attn_softcap"]
        sc = sc.masked_fill(~allowed, float("-inf")).softmax(-1)
        a = (sc @ v).transpose(0, 1).reshape(s, nh * d) @ g("self_attn.o_proj.weight").T
        x = x + _rms(a, g("post_attention_layernorm.weight"), eps)
        h = _rms(x, g("pre_feedforward_layernorm.weight"), eps)
        m = F.gelu(h @ g("mlp.gate_proj.weight").T, approximate="tanh") * (h @ g("mlp.up_proj.weight").T)
        x = x + _rms(m @ g("mlp.down_proj.weight").T, g("post_feedforward_layernorm.weight"), eps)
    x = _rms(x, t[lp + "norm.weight"], eps)
    logits = x @ emb.T
    if arch["final_softcap"] is not None:
        logits = torch.tanh(logits / arch["final_softcap"]) * arch["final_softcap"]
    return logits


def greedy(t, arch, feats, prompt, steps, eos=1, mask=mask_masking_utils):
    """`steps` greedy tokens (eos suppressed) and the logits at the last prefix position."""
    prefix_len = feats.shape[0] + len(prompt)
    toks = []
    first = None
    for _ in range(steps):
        logits = text_logits(t, arch, feats, torch.tensor(prompt + toks), prefix_len, mask)[-1]
        if first is None:
            first = logits
        logits = logits.clone()
        logits[eos] = -float("inf")
        toks.append(int(logits.argmax()))
    return toks, first
