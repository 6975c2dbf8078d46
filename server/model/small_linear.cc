#include "server/model/small_linear.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pg::model {
namespace {

// Which of LibTorch's intra-op threads ran a share of a product (bit i: thread i, 63 and above
// share bit 63). A build without OpenMP runs at::parallel_for serially without a word
// (server/model/CMakeLists.txt), and only this makes that visible to a test.
std::atomic<uint64_t> g_threads_seen{0};

void NoteThread() {
  const int t = std::min(at::get_thread_num(), 63);
  g_threads_seen.fetch_or(uint64_t{1} << t, std::memory_order_relaxed);
}

#if defined(__x86_64__)
// Compiled for AVX-512 whatever the build's -march; used only after a runtime CPU check, so the
// same binary still runs (through at::linear) on CPUs without it.
#define PG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

// Weights arrive from memory in long sequential runs, one per weight row; asking for them ~1 KB
// ahead measured 10-25 % faster than leaving it to the hardware prefetcher, which tracks fewer
// streams.
constexpr int kPrefetchBytes = 1024;

// y[j * ldy + r] = dot(x[j], w[r]) for MB rows of x and R rows of w, each K long. The MB * R sums
// stay in registers, so every 16 weights loaded feed MB fused multiply-adds.
template <int MB, int R>
PG_AVX512 void Block(const float* x, int64_t K, const float* w, float* y, int64_t ldy) {
  __m512 acc[MB][R];
#pragma GCC unroll 16
  for (int j = 0; j < MB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w + r * K + k) + kPrefetchBytes, _MM_HINT_T0);
      wv[r] = _mm512_loadu_ps(w + r * K + k);
    }
#pragma GCC unroll 16
    for (int j = 0; j < MB; ++j) {
      const __m512 xv = _mm512_loadu_ps(x + j * K + k);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[j][r] = _mm512_fmadd_ps(xv, wv[r], acc[j][r]);
    }
  }
  if (k < K) {
    const auto mask = static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_ps(mask, w + r * K + k);
#pragma GCC unroll 16
    for (int j = 0; j < MB; ++j) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + j * K + k);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[j][r] = _mm512_fmadd_ps(xv, wv[r], acc[j][r]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < MB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) y[j * ldy + r] = _mm512_reduce_add_ps(acc[j][r]);
  }
}

// As Block, for bfloat16 x and w on CPUs with AVX512_BF16: vdpbf16ps multiplies 32 pairs and adds
// them into 16 float32 sums in one instruction, with no widening of the weights first.
#define PG_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,fma,avx512bf16")))
template <int MB, int R>
PG_AVX512BF16 void Block(const c10::BFloat16* x, int64_t K, const c10::BFloat16* w, float* y,
                         int64_t ldy) {
  __m512 acc[MB][R];
#pragma GCC unroll 16
  for (int j = 0; j < MB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; k += 32) {
    // The tail's missing elements load as +0.0 in both operands, adding nothing.
    const auto mask = K - k >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << (K - k)) - 1);
    __m512bh wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w + r * K + k) + kPrefetchBytes, _MM_HINT_T0);
      wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + r * K + k);
    }
#pragma GCC unroll 16
    for (int j = 0; j < MB; ++j) {
      const auto xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + j * K + k);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[j][r] = _mm512_dpbf16_ps(acc[j][r], xv, wv[r]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < MB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) y[j * ldy + r] = _mm512_reduce_add_ps(acc[j][r]);
  }
}

// All M rows of x against R rows of w, 4 rows of x at a time: 4 x 4 sums fill half the vector
// registers, and 4 rows of x (36 KB for K = 2304) stay in L1 while the weights stream past. (8 rows
// x 2 weight rows measured 30-50 % slower: x then came from L2.)
template <int R, typename T>
PG_AVX512BF16 void Rows(const T* x, int64_t M, int64_t K, const T* w, float* y, int64_t ldy) {
  for (int64_t j0 = 0; j0 < M; j0 += 4) {
    const T* xj = x + j0 * K;
    float* yj = y + j0 * ldy;
    switch (std::min<int64_t>(4, M - j0)) {
      case 1:
        Block<1, R>(xj, K, w, yj, ldy);
        break;
      case 2:
        Block<2, R>(xj, K, w, yj, ldy);
        break;
      case 3:
        Block<3, R>(xj, K, w, yj, ldy);
        break;
      default:
        Block<4, R>(xj, K, w, yj, ldy);
        break;
    }
  }
}

template <typename T>
void Run(const T* x, int64_t M, int64_t K, const T* w, int64_t N, float* y) {
  constexpr int64_t kR = 4;
  const int64_t groups = (N + kR - 1) / kR;
  // At least ~64 KB of weights per task, so splitting never costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (64 << 10) / (kR * K * int64_t{sizeof(T)}));
  at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
    NoteThread();
    for (int64_t g = begin; g < end; ++g) {
      const int64_t n = g * kR;
      switch (std::min<int64_t>(kR, N - n)) {
        case 1:
          Rows<1>(x, M, K, w + n * K, y + n, N);
          break;
        case 2:
          Rows<2>(x, M, K, w + n * K, y + n, N);
          break;
        case 3:
          Rows<3>(x, M, K, w + n * K, y + n, N);
          break;
        default:
          Rows<kR>(x, M, K, w + n * K, y + n, N);
          break;
      }
    }
  });
}

bool CpuHasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
  return has;
}
bool CpuHasAvx512Bf16() {
  static const bool has = CpuHasAvx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}
#else
bool CpuHasAvx512() { return false; }
bool CpuHasAvx512Bf16() { return false; }
#endif

// LibTorch without the kernel above. One float32 row still avoids gemm: BLAS gemm with m=1 repacks
// the whole weight first (~4x the traffic of gemv, which streams it once).
at::Tensor Fallback(const at::Tensor& x, const at::Tensor& weight,
                    const c10::optional<at::Tensor>& bias) {
  if (weight.dim() == 2 && x.dim() >= 1 && x.numel() == x.size(-1) && x.device().is_cpu() &&
      weight.device().is_cpu() && x.scalar_type() == at::kFloat &&
      weight.scalar_type() == at::kFloat) {
    auto y = at::mv(weight, x.reshape({-1}));
    if (bias.has_value() && bias->defined()) y = y + *bias;
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = weight.size(0);
    return y.view(shape);
  }
  return at::linear(x, weight, bias);
}

at::Tensor LinearOp(const at::Tensor& x, const at::Tensor& weight,
                    const c10::optional<at::Tensor>& bias) {
  return SmallLinear(x, weight, bias);
}

TORCH_LIBRARY(pg, m) {
  m.def("linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor", &LinearOp);
}

}  // namespace

bool SmallLinearApplies(const at::Tensor& x, const at::Tensor& weight) {
  if (weight.dim() != 2 || x.dim() < 1 || !x.device().is_cpu() || !weight.device().is_cpu() ||
      x.scalar_type() != weight.scalar_type() || !weight.is_contiguous()) {
    return false;
  }
  const int64_t K = weight.size(1);
  if (K == 0 || weight.size(0) == 0 || x.size(-1) != K) return false;
  const int64_t rows = x.numel() / K;
  switch (weight.scalar_type()) {
    case at::kFloat:
      return CpuHasAvx512() && rows >= 1 && rows <= kSmallLinearMaxRows;
    case at::kBFloat16:
      return CpuHasAvx512Bf16() && rows >= 1 && rows <= kSmallLinearMaxRows;
    default:
      return false;
  }
}

at::Tensor SmallLinear(const at::Tensor& x, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias) {
  if (!SmallLinearApplies(x, weight)) return Fallback(x, weight, bias);
#if defined(__x86_64__)
  const int64_t K = weight.size(1), N = weight.size(0);
  const int64_t M = x.numel() / K;
  auto y = at::empty({M, N}, x.options().dtype(at::kFloat));
  if (weight.scalar_type() == at::kBFloat16) {
    const auto xb = x.reshape({M, K}).contiguous();
    Run(xb.data_ptr<c10::BFloat16>(), M, K, weight.data_ptr<c10::BFloat16>(), N,
        y.data_ptr<float>());
  } else {
    const auto xf = x.reshape({M, K}).contiguous();
    Run(xf.data_ptr<float>(), M, K, weight.data_ptr<float>(), N, y.data_ptr<float>());
  }
  if (bias.has_value() && bias->defined()) y.add_(bias->to(at::kFloat));
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  return y.to(x.scalar_type()).view(shape);
#else
  return Fallback(x, weight, bias);
#endif
}

void EnsureOpsRegistered() {}

int SmallLinearThreadsSeen(bool reset) {
  const uint64_t seen = reset ? g_threads_seen.exchange(0) : g_threads_seen.load();
  return __builtin_popcountll(seen);
}

}  // namespace pg::model
