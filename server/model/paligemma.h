// A loaded PaliGemma bundle: the TorchScript vision tower, Gemma 2 decoder and VAE, and greedy generation
// against a KV cache this class allocates. Knows nothing of requests, JSON or gRPC.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>

#include "absl/status/statusor.h"
#include "server/model/manifest.h"

namespace pg::model {

struct LoadOptions {
  std::string device = "cpu";    // "cpu" or "cuda[:N]"
  std::string dtype = "float32"; // "float32" or "bfloat16"; fp32 on CPU reproduces transformers exactly
};

struct GenerateOptions {
  int max_new_tokens = 256;
  // Parity tests compare against goldens made with <eos> suppressed; serving never sets this.
  bool suppress_eos = false;
  // Polled between decode steps (deadline, cancellation); returning true stops generation early.
  std::function<bool()> should_stop;
};

struct Generation {
  std::vector<int32_t> tokens;  // generated ids, without the prompt; ends with <eos> if one was produced
  bool stopped_early = false;   // should_stop() returned true
  double prefill_ms = 0;        // wall time of the batch's prefill
  double decode_ms = 0;         // wall time of the batch's decode loop
};

// One prompt of a batch: the image features of its image and the text prefix ids (<bos> … \n).
struct PromptInput {
  torch::Tensor image_features;  // [N, H] as returned by EncodeImage (one row of it)
  std::vector<int32_t> prefix_ids;
};

class PaliGemma {
 public:
  static absl::StatusOr<std::unique_ptr<PaliGemma>> Load(const std::string& bundle_dir,
                                                          const LoadOptions& options = {});

  const Manifest& manifest() const { return manifest_; }
  torch::ScalarType dtype() const { return dtype_; }
  const torch::Device& device() const { return device_; }

  // Normalised CHW float pixels (3 x S x S) -> projector output [1, N, H] (before 1/sqrt(H) scaling).
  absl::StatusOr<torch::Tensor> EncodeImage(const std::vector<float>& chw) const;

  // Greedy generation for a batch of prompts, each with its own image; rows stop independently.
  absl::StatusOr<std::vector<Generation>> Generate(const std::vector<PromptInput>& prompts,
                                                   const GenerateOptions& options) const;

  // Prefill only, for parity checks: soft-capped logits at every prefix position, [N + T, V] (float32).
  absl::StatusOr<torch::Tensor> PrefixLogits(const PromptInput& prompt) const;

  // VAE: codebook indices [B][16] -> mask logits, B x 64 x 64 floats in the decoder's raw range.
  absl::StatusOr<std::vector<std::array<float, 64 * 64>>> DecodeMasks(
      const std::vector<std::array<int, 16>>& codes) const;

 private:
  PaliGemma() = default;

  struct Prefilled {
    torch::Tensor k_cache, v_cache, hidden;  // hidden: [B, N+T, H]
    std::vector<int64_t> prefix_lengths;     // N + len(prefix_ids) per row
  };
  absl::StatusOr<Prefilled> Prefill(const std::vector<PromptInput>& prompts, int extra_positions) const;

  Manifest manifest_;
  torch::Device device_{torch::kCPU};
  torch::ScalarType dtype_ = torch::kFloat32;
  // TorchScript methods are const-callable only through a mutable module; calls do not change it.
  mutable torch::jit::script::Module vision_, language_, vae_;
};

}  // namespace pg::model
