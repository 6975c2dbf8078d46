"""PaliGemma 2 as plain, dtype-generic torch modules written for torch.jit.script.

The math follows Hugging Face transformers (SigLIP, Gemma 2, PaliGemma) operation by operation: RMSNorm and
softmax in fp32, RoPE cos/sin computed in fp32 then cast to the model dtype, attention logit soft-cap before
masking, final logit soft-cap. Parameters are allocated with torch.empty (no random init: a 3B model would
spend minutes initialising weights that are overwritten at once) and filled by exporter.weights.

Attention masks (what transformers >= 4.53 / 5.x computes for PaliGemma via masking_utils): PaliGemma passes an
`or_mask_function` marking the whole prefix (image tokens + <bos> + prompt + "\\n") as one bidirectional block
to BOTH create_causal_mask and create_sliding_window_causal_mask. So a position q may attend to kv iff
  kv is not padding AND ( (kv <= q AND (full layer OR q - kv < sliding_window))  OR  (q and kv both in prefix) ).
Consequences implemented here:
  * prefill (every real position is in the prefix): each row attends over its whole prefix, in every layer,
    even when the prefix is longer than sliding_window (896-px models: 4096 image tokens);
  * decode (generated tokens are never in the prefix): full layers attend to 0..pos, sliding layers to
    pos-sliding_window+1..pos (the last sliding_window positions including itself), as HF's sliding cache.
transformers 4.47-4.52 also applied the window inside the prefix during the prefill (docs/bundle-format.md,
"Sliding-window layers"); the two agree whenever the prefix fits in the window (224 and 448 px).
"""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops  # noqa: F401  (registers torch.ops.pg.linear, which the modules below call)


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype), requires_grad=False)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype), requires_grad=False)
        else:
            self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.pg.linear(x, self.weight, self.bias)


class LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(dim, dtype=dtype), requires_grad=False)
        self.eps = eps
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, [self.dim], self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """Gemma RMSNorm: computed in fp32, scaled by (1 + w), cast back (transformers' Gemma2RMSNorm)."""

    def __init__(self, dim: int, eps: float, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dtype=dtype), requires_grad=False)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        out = out * (1.0 + self.weight.float())
        return out.type_as(x)


# ----------------------------------------------------------------------------------------------- SigLIP


class SiglipAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dtype: torch.dtype):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.scale = self.head_dim ** -0.5
        self.q_proj = Linear(hidden, hidden, True, dtype)
        self.k_proj = Linear(hidden, hidden, True, dtype)
        self.v_proj = Linear(hidden, hidden, True, dtype)
        self.out_proj = Linear(hidden, hidden, True, dtype)

    def forward(self, x: Tensor) -> Tensor:
        b, n, h = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scale
        w = torch.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(w, v).transpose(1, 2).reshape(b, n, h)
        return self.out_proj(o)


class SiglipMLP(nn.Module):
    def __init__(self, hidden: int, inter: int, dtype: torch.dtype):
        super().__init__()
        self.fc1 = Linear(hidden, inter, True, dtype)
        self.fc2 = Linear(inter, hidden, True, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiglipLayer(nn.Module):
    def __init__(self, hidden: int, inter: int, heads: int, eps: float, dtype: torch.dtype):
        super().__init__()
        self.layer_norm1 = LayerNorm(hidden, eps, dtype)
        self.self_attn = SiglipAttention(hidden, heads, dtype)
        self.layer_norm2 = LayerNorm(hidden, eps, dtype)
        self.mlp = SiglipMLP(hidden, inter, dtype)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEmbeddings(nn.Module):
    def __init__(self, hidden: int, channels: int, patch: int, num_patches: int, dtype: torch.dtype):
        super().__init__()
        self.patch = patch
        self.patch_embedding_weight = nn.Parameter(torch.empty(hidden, channels, patch, patch, dtype=dtype), requires_grad=False)
        self.patch_embedding_bias = nn.Parameter(torch.empty(hidden, dtype=dtype), requires_grad=False)
        self.position_embedding = nn.Parameter(torch.empty(num_patches, hidden, dtype=dtype), requires_grad=False)

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = F.conv2d(pixel_values.to(self.patch_embedding_weight.dtype), self.patch_embedding_weight,
                     self.patch_embedding_bias, stride=self.patch)
        x = x.flatten(2).transpose(1, 2)
        return x + self.position_embedding.unsqueeze(0)


class SiglipEncoder(nn.Module):
    def __init__(self, layers: List[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class VisionTower(nn.Module):
    """SigLIP vision tower + PaliGemma multi-modal projector; forward returns the projector output
    (before the 1/sqrt(text hidden) scaling)."""

    def __init__(self, hidden: int, inter: int, layers: int, heads: int, eps: float, channels: int,
                 image_size: int, patch: int, text_hidden: int, dtype: torch.dtype):
        super().__init__()
        num_patches = (image_size // patch) ** 2
        self.embeddings = SiglipEmbeddings(hidden, channels, patch, num_patches, dtype)
        self.encoder = SiglipEncoder([SiglipLayer(hidden, inter, heads, eps, dtype) for _ in range(layers)])
        self.post_layernorm = LayerNorm(hidden, eps, dtype)
        self.projector = Linear(hidden, text_hidden, True, dtype)

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = self.embeddings(pixel_values)
        x = self.encoder(x)
        x = self.post_layernorm(x)
        return self.projector(x)


# ---------------------------------------------------------------------------------------------- Gemma 2


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attend(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scaling: float, softcap: float) -> Tensor:
    """Grouped-query attention. q [B,NH,Tq,D], k/v [B,KVH,Tk,D], allowed [B,Tq,Tk] bool -> [B,Tq,NH*D].

    Query head h uses KV head h // (NH/KVH) (transformers' repeat_kv), done by grouping the queries instead of
    copying K/V."""
    b, nh, tq, d = q.shape
    kvh = k.shape[1]
    tk = k.shape[2]
    rep = nh // kvh
    s = torch.matmul(q.reshape(b, kvh, rep * tq, d), k.transpose(2, 3)) * scaling
    if softcap > 0.0:
        s = torch.tanh(s / softcap) * softcap
    s = s.view(b, kvh, rep, tq, tk)
    # Mask and softmax in fp32 (transformers' softmax runs in fp32 too); a finite fill keeps fully masked
    # (padding) query rows finite instead of NaN.
    s = s.float().masked_fill(~allowed.view(b, 1, 1, tq, tk), -1.0e30)
    p = torch.softmax(s, dim=-1).to(q.dtype)
    o = torch.matmul(p.view(b, kvh, rep * tq, tk), v)  # [B,KVH,rep*Tq,D]
    return o.view(b, nh, tq, d).transpose(1, 2).reshape(b, tq, nh * d)


class Gemma2Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype):
        super().__init__()
        self.heads = heads
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.q_proj = Linear(hidden, heads * head_dim, False, dtype)
        self.k_proj = Linear(hidden, kv_heads * head_dim, False, dtype)
        self.v_proj = Linear(hidden, kv_heads * head_dim, False, dtype)
        self.o_proj = Linear(heads * head_dim, hidden, False, dtype)

    def qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        c = cos.unsqueeze(1)
        s = sin.unsqueeze(1)
        q = q * c + rotate_half(q) * s
        k = k * c + rotate_half(k) * s
        return q, k, v


class Gemma2MLP(nn.Module):
    def __init__(self, hidden: int, inter: int, dtype: torch.dtype):
        super().__init__()
        self.gate_proj = Linear(hidden, inter, False, dtype)
        self.up_proj = Linear(hidden, inter, False, dtype)
        self.down_proj = Linear(inter, hidden, False, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class Gemma2Layer(nn.Module):
    def __init__(self, hidden: int, inter: int, heads: int, kv_heads: int, head_dim: int, eps: float,
                 sliding: bool, scaling: float, softcap: float, dtype: torch.dtype):
        super().__init__()
        self.sliding = sliding
        self.scaling = scaling
        self.softcap = softcap
        self.input_layernorm = RMSNorm(hidden, eps, dtype)
        self.self_attn = Gemma2Attention(hidden, heads, kv_heads, head_dim, dtype)
        self.post_attention_layernorm = RMSNorm(hidden, eps, dtype)
        self.pre_feedforward_layernorm = RMSNorm(hidden, eps, dtype)
        self.mlp = Gemma2MLP(hidden, inter, dtype)
        self.post_feedforward_layernorm = RMSNorm(hidden, eps, dtype)

    def _finish(self, x: Tensor, attn: Tensor) -> Tensor:
        x = x + self.post_attention_layernorm(self.self_attn.o_proj(attn))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))

    def prefill(self, x: Tensor, cos: Tensor, sin: Tensor, allowed: Tensor, slots: Tensor,
                k_cache: Tensor, v_cache: Tensor) -> Tensor:
        """x [B,S,H]; k_cache/v_cache this layer's [SLOTS,KVH,MAXLEN,D] (written in place)."""
        q, k, v = self.self_attn.qkv(self.input_layernorm(x), cos, sin)
        s = x.shape[1]
        k_cache.narrow(2, 0, s).index_copy_(0, slots, k)
        v_cache.narrow(2, 0, s).index_copy_(0, slots, v)
        return self._finish(x, attend(q, k, v, allowed, self.scaling, self.softcap))

    def decode(self, x: Tensor, cos: Tensor, sin: Tensor, positions: Tensor, slots: Tensor,
               k_cache: Tensor, v_cache: Tensor, start: int, allowed: Tensor) -> Tensor:
        """x [B,1,H]; attends to cache positions start..start+allowed.shape[-1]-1 where allowed [B,1,L]."""
        q, k, v = self.self_attn.qkv(self.input_layernorm(x), cos, sin)
        k_cache[slots, :, positions] = k[:, :, 0]
        v_cache[slots, :, positions] = v[:, :, 0]
        length = allowed.shape[-1]
        keys = k_cache.narrow(2, start, length).index_select(0, slots)
        values = v_cache.narrow(2, start, length).index_select(0, slots)
        # Cache rows beyond a row's position may hold anything (padding, old sequences, uninitialised
        # memory); zero them so 0-weight x NaN cannot leak into the output.
        values = values.masked_fill(~allowed.view(allowed.shape[0], 1, length, 1), 0.0)
        return self._finish(x, attend(q, keys, values, allowed, self.scaling, self.softcap))


class Gemma2Language(nn.Module):
    """Gemma 2 decoder with a caller-owned KV cache; see docs/bundle-format.md for the methods."""

    def __init__(self, vocab: int, hidden: int, inter: int, layers: int, heads: int, kv_heads: int,
                 head_dim: int, eps: float, rope_theta: float, query_pre_attn_scalar: float,
                 attn_softcap: float, final_softcap: float, sliding_window: int, sliding: List[bool],
                 dtype: torch.dtype):
        super().__init__()
        self.hidden = hidden
        self.sqrt_hidden = float(hidden) ** 0.5
        self.head_dim = head_dim
        self.rope_theta = float(rope_theta)
        self.final_softcap = float(final_softcap)
        self.sliding_window = int(sliding_window)
        self.has_sliding = any(sliding)
        scaling = float(query_pre_attn_scalar) ** -0.5
        self.embed_tokens = nn.Parameter(torch.empty(vocab, hidden, dtype=dtype), requires_grad=False)
        self.layers = nn.ModuleList([
            Gemma2Layer(hidden, inter, heads, kv_heads, head_dim, eps, sliding[i], scaling, float(attn_softcap), dtype)
            for i in range(layers)
        ])
        self.norm = RMSNorm(hidden, eps, dtype)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.logits(hidden)

    def _rope(self, positions: Tensor, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        """cos/sin [B,T,D] for int64 positions [B,T]: fp32 math as transformers, then cast to dtype."""
        exps = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=positions.device).float() / self.head_dim
        inv_freq = 1.0 / torch.pow(self.rope_theta, exps)
        freqs = positions.float().unsqueeze(-1) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @torch.jit.export
    def embed(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.embed_tokens)

    @torch.jit.export
    def logits(self, hidden: Tensor) -> Tensor:
        x = torch.ops.pg.linear(hidden, self.embed_tokens, None)
        if self.final_softcap > 0.0:
            x = torch.tanh(x / self.final_softcap) * self.final_softcap
        return x

    @torch.jit.export
    def prefill(self, image_features: Tensor, text_embeds: Tensor, lengths: Tensor, slots: Tensor,
                k_cache: Tensor, v_cache: Tensor) -> Tensor:
        b = image_features.shape[0]
        n = image_features.shape[1]
        x = torch.cat((image_features / self.sqrt_hidden, text_embeds.to(image_features.dtype)), dim=1)
        x = x * torch.tensor(self.sqrt_hidden, dtype=x.dtype)
        s = x.shape[1]
        pos = torch.arange(s, dtype=torch.int64, device=x.device)
        # Prefix-LM: every real position is in the prefix, so it sees the whole prefix (all layers, any
        # length; see the module docstring). Padding keys are masked out.
        key_ok = pos.unsqueeze(0) < (lengths.to(x.device) + n).unsqueeze(1)  # [B,S]
        allowed = key_ok.unsqueeze(1).expand(b, s, s)
        cos, sin = self._rope(pos.unsqueeze(0).expand(b, s), x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer.prefill(x, cos, sin, allowed, slots, k_cache[i], v_cache[i])
        return self.norm(x)

    @torch.jit.export
    def decode(self, ids: Tensor, positions: Tensor, slots: Tensor, k_cache: Tensor, v_cache: Tensor) -> Tensor:
        return self.logits(self.decode_hidden(ids, positions, slots, k_cache, v_cache))

    @torch.jit.export
    def decode_hidden(self, ids: Tensor, positions: Tensor, slots: Tensor, k_cache: Tensor,
                      v_cache: Tensor) -> Tensor:
        """decode without the LM head: the final-normed hidden state [B,H]. Greedy serving takes the argmax
        of the unscaled logits itself (the soft-cap is monotonic), skipping tanh over the vocabulary."""
        b = ids.shape[0]
        x = F.embedding(ids, self.embed_tokens).unsqueeze(1)
        x = x * torch.tensor(self.sqrt_hidden, dtype=x.dtype)
        cos, sin = self._rope(positions.unsqueeze(1), x.dtype)
        # Attend only over the cache prefix the batch needs, masking per row.
        end = int(positions.max().item()) + 1
        p = positions.unsqueeze(1)
        j = torch.arange(end, dtype=torch.int64, device=x.device).unsqueeze(0)
        full_ok = (j <= p).unsqueeze(1)  # [B,1,end]
        start = 0
        sliding_ok = full_ok
        if self.has_sliding:
            start = max(0, int(positions.min().item()) - self.sliding_window + 1)
            js = torch.arange(start, end, dtype=torch.int64, device=x.device).unsqueeze(0)
            sliding_ok = ((js <= p) & (js > p - self.sliding_window)).unsqueeze(1)
        for i, layer in enumerate(self.layers):
            if layer.sliding:
                x = layer.decode(x, cos, sin, positions, slots, k_cache[i], v_cache[i], start, sliding_ok)
            else:
                x = layer.decode(x, cos, sin, positions, slots, k_cache[i], v_cache[i], 0, full_ok)
        return self.norm(x)[:, 0]


# ------------------------------------------------------------------------------------------------- VAE


class Conv2d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, pad: int, dtype: torch.dtype):
        super().__init__()
        self.pad = pad
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(cout, dtype=dtype), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.pad)


class ConvTranspose2d(nn.Module):
    """stride 2, padding 1, kernel 4: doubles the spatial size (matches big_vision's Flax decoder)."""

    def __init__(self, cin: int, cout: int, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cin, cout, 4, 4, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(cout, dtype=dtype), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), stride=2, padding=1)


class ResBlock(nn.Module):
    def __init__(self, ch: int, dtype: torch.dtype):
        super().__init__()
        self.net = nn.Sequential(Conv2d(ch, ch, 3, 1, dtype), nn.ReLU(), Conv2d(ch, ch, 3, 1, dtype), nn.ReLU(),
                                 Conv2d(ch, ch, 1, 0, dtype))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class VAEDecoder(nn.Module):
    """big_vision vae-oid mask decoder: codes [B,16] -> mask logits [B,64,64] in the module dtype.

    Computed in float32 whatever the stored dtype: it is tiny, and CPU conv_transpose2d has no bfloat16 kernel
    in torch 1.13."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(128, 512, dtype=dtype), requires_grad=False)
        self.decoder = nn.Sequential(
            Conv2d(512, 128, 1, 0, dtype), nn.ReLU(),
            ResBlock(128, dtype), ResBlock(128, dtype),
            ConvTranspose2d(128, 128, dtype), nn.ReLU(),
            ConvTranspose2d(128, 64, dtype), nn.ReLU(),
            ConvTranspose2d(64, 32, dtype), nn.ReLU(),
            ConvTranspose2d(32, 16, dtype), nn.ReLU(),
            Conv2d(16, 1, 1, 0, dtype),
        )

    def forward(self, codes: Tensor) -> Tensor:
        b = codes.shape[0]
        x = F.embedding(codes.to(torch.int64), self.embedding.float())  # [B,16,512]
        x = x.view(b, 4, 4, 512).permute(0, 3, 1, 2).contiguous()  # row-major 4x4 grid, NHWC -> NCHW
        return self.decoder(x).squeeze(1).to(self.embedding.dtype)
