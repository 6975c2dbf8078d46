#pragma once

#include <ATen/ATen.h>

namespace pg::model {

// Decode steps multiply one row per running sequence by every weight matrix. CPU BLAS handles those
// few rows badly: gemm repacks the whole weight on each call, and separate gemv calls read the
// weight once per row. SmallLinear reads each weight row once for all rows of x, with float32 sums.
// On the 3B model's shapes here (docs/performance.md) one float32 row ran at ~0.9x gemv's speed and
// 8 rows at ~3x LibTorch's gemm; in bfloat16 (vdpbf16ps) it ties or beats LibTorch for 1-2 rows
// only.
inline constexpr int64_t kSmallLinearMaxRows = 16;
inline constexpr int64_t kSmallLinearMaxRowsBf16 = 2;

// x @ weight^T + bias, like at::linear. x is [..., K], weight [N, K] contiguous, bias [N] or
// undefined. Uses the kernel above for float32 on CPUs with AVX-512 and for bfloat16 on CPUs with
// AVX512_BF16 (float32 sums: LibTorch's CPU bfloat16 mv accumulates in bfloat16), up to the row
// counts above; anything else goes to LibTorch.
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
