// SmallLinear (the decode-step kernel behind pg::linear) against a float64 reference, over the
// shapes that exercise its blocking: rows of x in and across blocks of 8, weight rows in pairs and
// an odd one, K below, at and across the 16-wide vectors.
#include "server/model/small_linear.h"

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/script.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>

using pg::model::kSmallLinearMaxRows;
using pg::model::SmallLinear;
using pg::model::SmallLinearApplies;

namespace {

bool CpuHasAvx512() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool KernelExpected(at::ScalarType dtype, int64_t rows) {
#if defined(__x86_64__)
  if (dtype == at::kBFloat16) {
    return CpuHasAvx512() && __builtin_cpu_supports("avx512bf16") && rows <= kSmallLinearMaxRows;
  }
#endif
  return CpuHasAvx512() && rows <= kSmallLinearMaxRows;
}

// Largest |got - want| relative to what rounding allows: float32 accumulation over K terms of size
// |x||w| and the bias, plus, for bfloat16 outputs, the final rounding to 8 significant bits.
double WorstError(const at::Tensor& got, const at::Tensor& x, const at::Tensor& w,
                  const c10::optional<at::Tensor>& b) {
  auto xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  auto want = at::matmul(xd, wd.t());
  if (b) want = want + b->to(at::kDouble);
  auto scale = at::matmul(xd.abs(), wd.abs().t()) + 1e-30;
  if (b) scale = scale + b->to(at::kDouble).abs();
  const double terms = static_cast<double>(w.size(1) + 1);
  auto allowed = scale * (terms * 1.2e-7);
  if (got.scalar_type() == at::kBFloat16) allowed = allowed + want.abs() * (1.0 / 256) + 1e-30;
  return ((got.to(at::kDouble) - want).abs() / allowed).max().item<double>();
}

}  // namespace

CATCH_TEST_CASE("SmallLinear matches a float64 reference on every block shape", "[small_linear]") {
  at::manual_seed(7);
  at::set_num_threads(2);
  c10::InferenceMode guard;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t rows : {1, 2, 3, 7, 8, 9, 16, 64, 65}) {
      for (int64_t k : {1, 5, 16, 17, 40, 333}) {
        for (int64_t n : {1, 2, 3, 37, 300}) {
          for (bool with_bias : {false, true}) {
            auto x = at::randn({rows, k}).to(dtype);
            auto w = at::randn({n, k}).to(dtype);
            c10::optional<at::Tensor> b;
            if (with_bias) b = at::randn({n}).to(dtype);
            CATCH_INFO("dtype " << dtype << " rows " << rows << " k " << k << " n " << n << " bias "
                                << with_bias);
            CATCH_REQUIRE(SmallLinearApplies(x, w) == KernelExpected(dtype, rows));
            auto y = SmallLinear(x, w, b);
            CATCH_REQUIRE(y.scalar_type() == dtype);
            CATCH_REQUIRE(y.sizes() == at::IntArrayRef({rows, n}));
            CATCH_REQUIRE(WorstError(y, x, w, b) <= 1.0);
          }
        }
      }
    }
  }
}

CATCH_TEST_CASE("SmallLinear keeps leading dimensions and splits wide weights across threads",
                "[small_linear]") {
  at::manual_seed(8);
  at::set_num_threads(2);
  c10::InferenceMode guard;
  // [B, 1, K] is what a decode step passes; 4099 weight rows cover many parallel chunks and an odd
  // tail.
  auto x = at::randn({4, 1, 2304});
  auto w = at::randn({4099, 2304});
  pg::model::SmallLinearThreadsSeen(/*reset=*/true);
  auto y = SmallLinear(x, w, c10::nullopt);
  CATCH_REQUIRE(y.sizes() == at::IntArrayRef({4, 1, 4099}));
  CATCH_REQUIRE(WorstError(y.view({4, 4099}), x.view({4, 2304}), w, c10::nullopt) <= 1.0);
  // Both threads took a share: LibTorch's at::parallel_for is inline OpenMP, serial unless this
  // library is built with -fopenmp.
#if !PG_CUDA_BUILD
  if (KernelExpected(at::kFloat, 4)) CATCH_REQUIRE(pg::model::SmallLinearThreadsSeen() == 2);
#endif
}

CATCH_TEST_CASE("SmallLinear accumulates bfloat16 weights in float32", "[small_linear]") {
  if (!CpuHasAvx512()) {
    CATCH_WARN(
        "no AVX-512 here: SmallLinear uses at::linear, whose bfloat16 accuracy is LibTorch's");
    return;
  }
  c10::InferenceMode guard;
  // 8192 terms of 1/8 each: the sum 1024 is exact in float32, while a bfloat16 running sum stops
  // growing at 256 (its spacing there is 2, more than the 0.125 added).
  auto x = at::full({1, 8192}, 0.125, at::kBFloat16);
  auto w = at::ones({3, 8192}, at::kBFloat16);
  auto y = SmallLinear(x, w, c10::nullopt);
  CATCH_REQUIRE(y.to(at::kFloat).eq(1024.0f).all().item<bool>());
}

CATCH_TEST_CASE("SmallLinear leaves other shapes, dtypes and devices to at::linear",
                "[small_linear]") {
  c10::InferenceMode guard;
  auto w = at::randn({5, 8});
  // More rows than a decode batch: a prefill, which BLAS gemm handles well.
  auto many = at::randn({kSmallLinearMaxRows + 1, 8});
  CATCH_REQUIRE_FALSE(SmallLinearApplies(many, w));
  CATCH_REQUIRE(at::allclose(SmallLinear(many, w, c10::nullopt), at::linear(many, w), 1e-5, 1e-5));
  // float64, mixed dtypes, a transposed (non-contiguous) weight.
  CATCH_REQUIRE_FALSE(SmallLinearApplies(at::randn({2, 8}, at::kDouble), w.to(at::kDouble)));
  CATCH_REQUIRE_FALSE(SmallLinearApplies(at::randn({2, 8}), w.to(at::kBFloat16)));
  auto wt = at::randn({8, 5}).t();
  CATCH_REQUIRE_FALSE(SmallLinearApplies(at::randn({2, 8}), wt));
  CATCH_REQUIRE(at::allclose(SmallLinear(at::ones({2, 8}), wt, c10::nullopt),
                             at::linear(at::ones({2, 8}), wt), 1e-5, 1e-5));
  // A size mismatch is at::linear's error, not a read past the end.
  CATCH_REQUIRE_THROWS_AS(SmallLinear(at::randn({2, 7}), w, c10::nullopt), c10::Error);
}

// TorchScript resolves ops.pg.linear in a saved archive through the dispatcher's registry; the
// model tests load archives that call it.
CATCH_TEST_CASE("pg::linear is registered with the exporter's schema", "[small_linear]") {
  pg::model::EnsureOpsRegistered();
  c10::InferenceMode guard;
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow("pg::linear", "");
  std::ostringstream schema;
  schema << op.schema();
  // exporter/ops.py defines the same schema for Python.
  CATCH_REQUIRE(schema.str() == "pg::linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  auto x = at::randn({3, 1, 20});
  auto w = at::randn({6, 20});
  auto b = at::randn({6});
  auto y =
      op.typed<at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&)>()
          .call(x, w, b);
  CATCH_REQUIRE(at::allclose(y, at::linear(x, w, b), 1e-5, 1e-5));
}

// The scheduler's promise that a sequence decodes to the same tokens alone or batched rests on
// this.
CATCH_TEST_CASE("each row comes out the same alone and in any batch", "[small_linear]") {
  at::manual_seed(9);
  at::set_num_threads(2);
  c10::InferenceMode guard;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    if (!KernelExpected(dtype, kSmallLinearMaxRows)) {
      // LibTorch's gemm promises nothing of the kind (docs/performance.md).
      CATCH_WARN("no kernel for " << dtype << " on this CPU: batch invariance not checked");
      continue;
    }
    auto w = at::randn({1001, 700}).to(dtype);
    auto b = at::randn({1001}).to(dtype);
    auto x = at::randn({kSmallLinearMaxRows, 700}).to(dtype);
    auto all = SmallLinear(x, w, b);
    for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{8}, kSmallLinearMaxRows}) {
      for (int64_t i = 0; i < rows; i += 2) {
        CATCH_INFO("dtype " << dtype << " batch " << rows << " row " << i);
        auto some = SmallLinear(x.narrow(0, 0, rows), w, b);
        auto alone = SmallLinear(x.narrow(0, i, 1), w, b);
        CATCH_REQUIRE(at::equal(some[i], alone[0]));
        CATCH_REQUIRE(at::equal(all[i], alone[0]));
      }
    }
  }
}
