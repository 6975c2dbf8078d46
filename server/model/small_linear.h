#pragma once

#include <ATen/ATen.h>

namespace pg::model {

// Decode steps multiply one row per running sequence by every weight matrix. CPU BLAS handles those
// few rows badly: gemm repacks the whole weight on each call, and separate gemv calls read the
// weight once per row. SmallLinear reads each weight row once for all rows of x, with float32 sums.
// On the 3B model's shapes here (docs/performance.md) one float32 row ran at ~0.9x gemv's speed, 8
// rows at ~3x LibTorch's gemm, and up to 64 rows (float32 and bfloat16) at least as fast as
// LibTorch. Each row's sums are formed in the same order whatever the other rows, so a sequence
// decodes to the same numbers alone or in any batch of up to kSmallLinearMaxRows; a prefill (at
// least one row per image token: 256 or more) goes to LibTorch's gemm.
inline constexpr int64_t kSmallLinearMaxRows = 64;

// x @ weight^T + bias, like at::linear. x is [..., K], weight [N, K] contiguous, bias [N] or
// undefined. Uses the kernel above for float32 on CPUs with AVX-512 and for bfloat16 on CPUs with
// AVX512_BF16 (float32 sums: LibTorch's CPU bfloat16 mv accumulates in bfloat16), up to
// kSmallLinearMaxRows rows; anything else goes to LibTorch.
at::Tensor SmallLinear(const at::Tensor& x, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias);

// Whether SmallLinear would use its own kernel for these arguments (tests and benchmarks).
bool SmallLinearApplies(const at::Tensor& x, const at::Tensor& weight);

// How many distinct intra-op threads have run a share of SmallLinear's kernel since the last reset
// (tests: a build whose at::parallel_for is serial would show 1).
int SmallLinearThreadsSeen(bool reset = false);

// The TorchScript operator pg::linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor that
// exported modules (bundle format 3) call for every linear layer. It is registered when this file's
// object is linked; calling this makes sure it is (static libraries drop objects nothing refers
// to).
void EnsureOpsRegistered();

}  // namespace pg::model
