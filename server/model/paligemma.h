// A loaded PaliGemma bundle: the TorchScript vision tower, Gemma 2 decoder and VAE, and greedy
// generation against a KV cache this class allocates. Knows nothing of requests, JSON or gRPC.
#pragma once

#include <torch/script.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model/manifest.h"

namespace pg::model {

struct LoadOptions {
  std::string device = "cpu";  // "cpu" or "cuda[:N]"
  std::string dtype =
      "float32";  // "float32" or "bfloat16"; fp32 on CPU reproduces transformers exactly
  // torch::jit::freeze the modules after attaching the weights. Off by default: on the 3B model it
  // added 2-4 s to a load and changed no measured speed (docs/performance.md).
  bool freeze = false;
};

// Checks options.device and options.dtype before any load (the server validates its flags with it,
// so a typo fails at start rather than at the first request) and canonicalises the dtype's short
// names (fp32, bf16, fp16) to float32, bfloat16, float16, the names the exporter knows.
absl::StatusOr<LoadOptions> CheckLoadOptions(LoadOptions options);

// Where a load's time went (the benchmark compares the total with the time to read the bundle).
struct LoadTimings {
  double deserialize_ms = 0;  // torch::jit::load: the archives' records into memory
  double convert_ms = 0;      // to the device and dtype
  double freeze_ms = 0;
  // Parameter bytes used in place from the mapped weights files, and bytes the load allocated for
  // them (a dtype or device conversion, or a format 1 bundle).
  int64_t mapped_bytes = 0, copied_bytes = 0;
};

struct GenerateOptions {
  int max_new_tokens = 256;
  // Parity tests compare against goldens made with <eos> suppressed; serving never sets this.
  bool suppress_eos = false;
  // Polled between decode steps (deadline, cancellation); returning true stops generation early.
  std::function<bool()> should_stop;
};

struct Generation {
  std::vector<int32_t>
      tokens;  // generated ids, without the prompt; ends with <eos> if one was produced
  bool stopped_early = false;  // should_stop() returned true
  double prefill_ms = 0;       // wall time of the batch's prefill
  double decode_ms = 0;        // wall time of the batch's decode loop
};

// One prompt of a batch: the image features of its image and the text prefix ids (<bos> … \n).
struct PromptInput {
  torch::Tensor image_features;  // [N, H] as returned by EncodeImage (one row of it)
  std::vector<int32_t> prefix_ids;
};

// A KV cache of SLOTS sequences x MAXLEN positions, allocated once (the continuous-batching
// scheduler owns one per model and hands its slots to requests).
struct KvCache {
  torch::Tensor k, v;  // [L, SLOTS, KVH, MAXLEN, D] in the model dtype
  int64_t slots = 0, max_len = 0;
};

class PaliGemma {
 public:
  static absl::StatusOr<std::unique_ptr<PaliGemma>> Load(const std::string& bundle_dir,
                                                         const LoadOptions& options = {});

  const Manifest& manifest() const { return manifest_; }
  torch::ScalarType dtype() const { return dtype_; }
  const torch::Device& device() const { return device_; }

  // Normalised CHW float pixels (3 x S x S) -> projector output [1, N, H] (before 1/sqrt(H)
  // scaling).
  absl::StatusOr<torch::Tensor> EncodeImage(const std::vector<float>& chw) const;

  // Greedy generation for a batch of prompts, each with its own image; rows stop independently.
  absl::StatusOr<std::vector<Generation>> Generate(const std::vector<PromptInput>& prompts,
                                                   const GenerateOptions& options) const;

  // Prefill only, for parity checks: soft-capped logits at every prefix position, [N + T, V]
  // (float32).
  absl::StatusOr<torch::Tensor> PrefixLogits(const PromptInput& prompt) const;

  // --- Slot-level API for the continuous-batching scheduler (server/engine/scheduler.h). ---
  absl::StatusOr<KvCache> AllocateCache(int64_t slots, int64_t max_len) const;
  // Prefills one prompt into cache slot `slot` (positions 0..N+T-1) and returns its first greedy
  // token.
  absl::StatusOr<int32_t> PrefillSlot(const PromptInput& prompt, int64_t slot, KvCache& cache,
                                      bool suppress_eos) const;
  // One decode step for a batch of rows: row r feeds ids[r] at positions[r] into slots[r]; returns
  // each row's next greedy token.
  absl::StatusOr<std::vector<int32_t>> DecodeStep(const std::vector<int64_t>& ids,
                                                  const std::vector<int64_t>& positions,
                                                  const std::vector<int64_t>& slots,
                                                  const std::vector<bool>& suppress_eos,
                                                  KvCache& cache) const;
  // Positions a prompt of `prefix_tokens` text tokens and `max_new_tokens` needs in a cache slot.
  int64_t PositionsNeeded(int64_t prefix_tokens, int max_new_tokens) const {
    return manifest_.num_image_tokens + prefix_tokens + max_new_tokens;
  }
  // Bytes of parameters (vision + language + VAE) as loaded, and of the language model alone (what
  // one decode step reads); the MLP's intermediate size (for FLOP counts).
  int64_t parameter_bytes() const { return parameter_bytes_; }
  int64_t language_bytes() const { return language_bytes_; }
  int64_t intermediate_size() const { return intermediate_size_; }
  const LoadTimings& load_timings() const { return load_timings_; }

  // VAE: codebook indices [B][16] -> mask logits, B x 64 x 64 floats in the decoder's raw range.
  absl::StatusOr<std::vector<std::array<float, 64 * 64>>> DecodeMasks(
      const std::vector<std::array<int, 16>>& codes) const;

 private:
  PaliGemma() = default;

  struct Prefilled {
    torch::Tensor k_cache, v_cache, hidden;  // hidden: [B, N+T, H]
    std::vector<int64_t> prefix_lengths;     // N + len(prefix_ids) per row
  };
  absl::StatusOr<Prefilled> Prefill(const std::vector<PromptInput>& prompts,
                                    int extra_positions) const;
  absl::Status PrefillInto(const std::vector<PromptInput>& prompts, const torch::Tensor& slots,
                           torch::Tensor& k_cache, torch::Tensor& v_cache, torch::Tensor* hidden,
                           std::vector<int64_t>* prefix_lengths) const;
  // Greedy next tokens from final-normed hidden states [B,H]: the argmax of the soft-capped logits,
  // computed without the soft-cap over the whole vocabulary (exactly the same ids; see the .cc).
  torch::Tensor GreedyFromHidden(const torch::Tensor& hidden,
                                 const std::vector<bool>& suppress_eos) const;
  torch::Tensor GreedyFromLogits(torch::Tensor logits, const std::vector<bool>& suppress_eos) const;
  torch::Tensor DecodeNext(const torch::Tensor& ids, const torch::Tensor& positions,
                           const torch::Tensor& slots, torch::Tensor& k_cache,
                           torch::Tensor& v_cache, const std::vector<bool>& suppress_eos) const;

  Manifest manifest_;
  torch::Device device_{torch::kCPU};
  torch::ScalarType dtype_ = torch::kFloat32;
  // TorchScript methods are const-callable only through a mutable module; calls do not change it.
  mutable torch::jit::script::Module vision_, language_, vae_;
  torch::Tensor embed_;  // the tied LM head [V, H] (a view of language_'s parameter)
  double final_softcap_ = 0;
  bool has_decode_hidden_ = false;  // bundles exported before decode_hidden fall back to decode
  int64_t parameter_bytes_ = 0, language_bytes_ = 0, intermediate_size_ = 0;
  LoadTimings load_timings_;
  // Model compute is serialised: LibTorch already spreads one call over every core, so concurrent
  // calls would only oversubscribe them. The scheduler's steps, vision and VAE calls all take it.
  mutable std::mutex compute_mu_;
};

}  // namespace pg::model
