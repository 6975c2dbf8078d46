#include "server/model/paligemma.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "server/common/clock.h"
#include "server/common/status.h"
#include "server/model/small_linear.h"
#include "server/model/weights_file.h"

namespace pg::model {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<torch::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16") return torch::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name, "' (expected float32, bfloat16 or float16)"));
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& name) {
  try {
    torch::Device device(name);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device '", name, "' requested but this LibTorch has no usable CUDA device"));
    }
    return device;
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(absl::StrCat("unknown device '", name, "'"));
  }
}

c10::optional<torch::ScalarType> TorchDtype(const std::string& safetensors_dtype) {
  if (safetensors_dtype == "F32") return torch::kFloat32;
  if (safetensors_dtype == "BF16") return torch::kBFloat16;
  if (safetensors_dtype == "F16") return torch::kFloat16;
  return c10::nullopt;
}

// Bundle format 2: the archive's parameters are zero-stride placeholders of the right shape and
// dtype; the weights are in <module>.safetensors. Each tensor views the mapped file (no copy)
// unless the load asks for another dtype or device, in which case that one conversion is the only
// copy made.
absl::Status AttachWeights(torch::jit::script::Module& module, const std::string& path,
                           const std::string& display, const torch::Device& device,
                           torch::ScalarType dtype, LoadTimings* timings) {
  ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  ASSIGN_OR_RETURN(auto entries, ParseWeightsHeader(std::string_view(file->data(), file->size()),
                                                    file->size(), display));
  std::map<std::string, const WeightEntry*> by_name;
  for (const auto& e : entries) by_name[e.name] = &e;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    auto it = by_name.find(p.name);
    if (it == by_name.end())
      return absl::InvalidArgumentError(absl::StrCat(display, " lacks tensor ", p.name));
    const WeightEntry& e = *it->second;
    if (TorchDtype(e.dtype) != p.value.scalar_type() ||
        p.value.sizes() != c10::IntArrayRef(e.shape)) {
      return absl::InvalidArgumentError(
          absl::StrCat(display, ": tensor ", p.name, " is ", e.dtype, " ",
                       c10::str(c10::IntArrayRef(e.shape)), ", the module expects ",
                       c10::toString(p.value.scalar_type()), " ", c10::str(p.value.sizes())));
    }
  }
  for (const auto& e : entries) {
    // "layers.0.mlp.gate_proj.weight": walk to the owning submodule, then replace the placeholder.
    torch::jit::script::Module owner = module;
    std::string rest = e.name;
    for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
      const std::string part = rest.substr(0, dot);
      if (!owner.hasattr(part) || !owner.attr(part).isModule()) {
        return absl::InvalidArgumentError(
            absl::StrCat(display, ": tensor ", e.name, " has no place in the module"));
      }
      owner = owner.attr(part).toModule();
    }
    if (!owner.hasattr(rest) || !owner.attr(rest).isTensor()) {
      return absl::InvalidArgumentError(
          absl::StrCat(display, ": tensor ", e.name, " has no place in the module"));
    }
    auto keep_mapped = [file](void*) {};
    torch::Tensor t = torch::from_blob(file->data() + e.offset, e.shape, keep_mapped,
                                       torch::TensorOptions().dtype(*TorchDtype(e.dtype)));
    if (t.scalar_type() != dtype || t.device() != device) t = t.to(device, dtype);
    owner.register_parameter(rest, t, /*is_buffer=*/false);
    // Counted from where the attached tensor's bytes are, not from the decision above.
    const auto* bytes = static_cast<const char*>(t.data_ptr());
    const bool in_place =
        t.device().is_cpu() && bytes >= file->data() && bytes < file->data() + file->size();
    (in_place ? timings->mapped_bytes : timings->copied_bytes) += t.numel() * t.element_size();
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::jit::script::Module> LoadModule(const std::string& bundle_dir,
                                                      const std::string& file,
                                                      const std::vector<std::string>& methods,
                                                      const torch::Device& device,
                                                      torch::ScalarType dtype, int format_version,
                                                      LoadTimings* timings) {
  const std::string path = bundle_dir + "/" + file;
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat("bundle is missing ", path));
  torch::jit::script::Module module;
  auto t0 = Clock::now();
  try {
    // Format 2 archives hold code and placeholders only; they are loaded on the CPU, where the
    // weights file is mapped.
    module = torch::jit::load(path, format_version >= 2 ? torch::Device(torch::kCPU) : device);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("could not load ", path, ": ", e.what_without_backtrace()));
  }
  for (const auto& method : methods) {
    if (!module.find_method(method)) {
      return absl::InvalidArgumentError(absl::StrCat(path, " has no method '", method, "'"));
    }
  }
  module.eval();
  auto t1 = Clock::now();
  try {
    if (format_version >= 2) {
      const std::string stem = file.substr(0, file.size() - 3);  // "language.pt" -> "language"
      const std::string weights = bundle_dir + "/" + stem + ".safetensors";
      if (!fs::exists(weights))
        return absl::NotFoundError(absl::StrCat("bundle is missing ", weights));
      RETURN_IF_ERROR(
          AttachWeights(module, weights, stem + ".safetensors", device, dtype, timings));
    } else {
      module.to(device, dtype);
      for (const auto& p : module.parameters())
        timings->copied_bytes += p.numel() * p.element_size();
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("could not load the weights of ", path, ": ", e.what_without_backtrace()));
  }
  auto t2 = Clock::now();
  timings->deserialize_ms += Ms(t0, t1);
  timings->convert_ms += Ms(t1, t2);
  return module;
}

// Freezing inlines the weights as constants (sharing their storage) and folds what depends only on
// them, e.g. RMSNorm's (1 + w); the methods the engine calls and the attributes it reads survive.
absl::Status Freeze(torch::jit::script::Module& module, std::vector<std::string> keep,
                    const std::string& what) {
  try {
    module = torch::jit::freeze(module, keep, /*optimize_numerics=*/false);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("could not freeze ", what, ": ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

// Converts a LibTorch exception into a Status so no c10::Error escapes the model layer.
template <typename F>
auto Guarded(const char* what, F&& f) -> absl::StatusOr<decltype(f())> {
  try {
    c10::InferenceMode inference;
    return f();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, " failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, " failed: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<LoadOptions> CheckLoadOptions(LoadOptions options) {
  ASSIGN_OR_RETURN(const torch::ScalarType dtype, ParseDtype(options.dtype));
  RETURN_IF_ERROR(ParseDevice(options.device).status());
  options.dtype = dtype == torch::kFloat32    ? "float32"
                  : dtype == torch::kBFloat16 ? "bfloat16"
                                              : "float16";
  return options;
}

absl::StatusOr<std::unique_ptr<PaliGemma>> PaliGemma::Load(const std::string& bundle_dir,
                                                           const LoadOptions& options) {
  EnsureOpsRegistered();  // format 3 archives call pg::linear
  std::unique_ptr<PaliGemma> model(new PaliGemma());
  ASSIGN_OR_RETURN(model->manifest_, LoadManifest(bundle_dir));
  ASSIGN_OR_RETURN(model->dtype_, ParseDtype(options.dtype));
  ASSIGN_OR_RETURN(model->device_, ParseDevice(options.device));
  LoadTimings& lt = model->load_timings_;
  const int version = model->manifest_.format_version;
  ASSIGN_OR_RETURN(model->vision_, LoadModule(bundle_dir, "vision.pt", {"forward"}, model->device_,
                                              model->dtype_, version, &lt));
  ASSIGN_OR_RETURN(model->language_,
                   LoadModule(bundle_dir, "language.pt", {"embed", "prefill", "decode", "logits"},
                              model->device_, model->dtype_, version, &lt));
  // The VAE is tiny; float32 keeps masks identical whatever the language model's dtype.
  ASSIGN_OR_RETURN(model->vae_, LoadModule(bundle_dir, "vae.pt", {"forward"}, model->device_,
                                           torch::kFloat32, version, &lt));
  auto& lm = model->language_;
  model->has_decode_hidden_ = lm.find_method("decode_hidden").has_value();
  if (!lm.hasattr("embed_tokens") || !lm.hasattr("final_softcap")) {
    return absl::InvalidArgumentError("language.pt lacks embed_tokens/final_softcap");
  }
  model->embed_ = lm.attr("embed_tokens").toTensor();
  model->final_softcap_ = lm.attr("final_softcap").toDouble();
  // Sizes are read before freezing, which turns parameters into graph constants.
  for (auto* m : {&model->vision_, &model->language_, &model->vae_}) {
    for (const auto& p : m->named_parameters()) {
      const int64_t bytes = p.value.numel() * p.value.element_size();
      model->parameter_bytes_ += bytes;
      if (m == &lm) model->language_bytes_ += bytes;
      if (m == &lm && p.name == "layers.0.mlp.gate_proj.weight") {
        model->intermediate_size_ = p.value.size(0);
      }
    }
  }
  if (options.freeze) {
    const auto t0 = Clock::now();
    std::vector<std::string> keep = {"embed",  "prefill",      "decode",
                                     "logits", "embed_tokens", "final_softcap"};
    if (model->has_decode_hidden_) keep.push_back("decode_hidden");
    RETURN_IF_ERROR(Freeze(model->vision_, {}, "vision.pt"));
    RETURN_IF_ERROR(Freeze(model->language_, keep, "language.pt"));
    RETURN_IF_ERROR(Freeze(model->vae_, {}, "vae.pt"));
    lt.freeze_ms = Ms(t0, Clock::now());
  }
  return model;
}

absl::StatusOr<torch::Tensor> PaliGemma::EncodeImage(const std::vector<float>& chw) const {
  const int s = manifest_.image_size;
  if (chw.size() != static_cast<size_t>(3) * s * s) {
    return absl::InvalidArgumentError(
        absl::StrCat("pixel buffer has ", chw.size(), " values, expected 3x", s, "x", s));
  }
  std::lock_guard<std::mutex> lock(compute_mu_);
  return Guarded("vision tower", [&] {
    auto pixels = torch::from_blob(const_cast<float*>(chw.data()), {1, 3, s, s}, torch::kFloat32)
                      .to(device_, dtype_);
    return vision_.forward({pixels}).toTensor();
  });
}

absl::StatusOr<PaliGemma::Prefilled> PaliGemma::Prefill(const std::vector<PromptInput>& prompts,
                                                        int extra_positions) const {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts to prefill");
  const int64_t n = manifest_.num_image_tokens;
  int64_t t = 0;
  for (const auto& p : prompts) {
    if (p.prefix_ids.empty()) return absl::InvalidArgumentError("empty prompt prefix");
    if (!p.image_features.defined() || p.image_features.dim() != 2 ||
        p.image_features.size(0) != n || p.image_features.size(1) != manifest_.hidden_size) {
      return absl::InvalidArgumentError("image features do not match the model's image tokens");
    }
    t = std::max<int64_t>(t, p.prefix_ids.size());
  }
  const int64_t max_len = n + t + extra_positions;
  if (max_len > manifest_.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("prompt + max_new_tokens needs ", max_len,
                                                   " positions, the model has ",
                                                   manifest_.max_position_embeddings));
  }
  const int64_t b = prompts.size();
  return Guarded("prefill", [&]() -> Prefilled {
    Prefilled out;
    auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
    const auto& m = manifest_;
    out.k_cache = torch::zeros({m.num_layers, b, m.num_kv_heads, max_len, m.head_dim}, opts);
    out.v_cache = torch::zeros_like(out.k_cache);
    auto slots = torch::arange(b, torch::kInt64).to(device_);
    absl::Status s =
        PrefillInto(prompts, slots, out.k_cache, out.v_cache, &out.hidden, &out.prefix_lengths);
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
    return out;
  });
}

// Runs language.prefill for `prompts` into cache rows `slots` (caller holds compute_mu_ and a
// c10::InferenceMode; LibTorch errors propagate as exceptions to the caller's Guarded).
absl::Status PaliGemma::PrefillInto(const std::vector<PromptInput>& prompts,
                                    const torch::Tensor& slots, torch::Tensor& k_cache,
                                    torch::Tensor& v_cache, torch::Tensor* hidden,
                                    std::vector<int64_t>* prefix_lengths) const {
  const int64_t n = manifest_.num_image_tokens;
  const int64_t b = prompts.size();
  int64_t t = 0;
  for (const auto& p : prompts) t = std::max<int64_t>(t, p.prefix_ids.size());
  auto ids = torch::full({b, t}, manifest_.pad_id, torch::kInt64);
  auto lengths = torch::empty({b}, torch::kInt64);
  auto ids_acc = ids.accessor<int64_t, 2>();
  auto len_acc = lengths.accessor<int64_t, 1>();
  prefix_lengths->clear();
  for (int64_t i = 0; i < b; ++i) {
    const auto& p = prompts[i].prefix_ids;
    for (size_t j = 0; j < p.size(); ++j) ids_acc[i][j] = static_cast<int64_t>(p[j]);
    len_acc[i] = static_cast<int64_t>(p.size());
    prefix_lengths->push_back(n + static_cast<int64_t>(p.size()));
  }
  std::vector<torch::Tensor> features;
  for (const auto& p : prompts) features.push_back(p.image_features);
  auto text_embeds = language_.run_method("embed", ids.to(device_)).toTensor();
  *hidden = language_
                .run_method("prefill", torch::stack(features).to(device_, dtype_), text_embeds,
                            lengths.to(device_), slots, k_cache, v_cache)
                .toTensor();
  return absl::OkStatus();
}

// Greedy decoding takes argmax over soft-capped logits c*tanh(x/c). tanh is monotonic, so the
// winner is the raw argmax -- except where rounding makes distinct raw values equal after the cap,
// in which case argmax picks the lowest index among them. To return exactly the ids the capped
// logits give, the cap is applied only to the few logits within `kWindow` of each row's maximum
// (any logit further below is strictly smaller after the cap, checked per row), and the whole row
// is capped in the rare case it is not (saturation). This skips tanh over 257k logits per token
// (~2-50 ms on this CPU).
torch::Tensor PaliGemma::GreedyFromLogits(torch::Tensor raw,
                                          const std::vector<bool>& suppress_eos) const {
  const int64_t b = raw.size(0);
  for (int64_t r = 0; r < b; ++r) {
    if (r < static_cast<int64_t>(suppress_eos.size()) && suppress_eos[r]) {
      raw[r][manifest_.eos_id] = -std::numeric_limits<float>::infinity();
    }
  }
  const double c = final_softcap_;
  auto cap = [c](const torch::Tensor& x) { return torch::tanh(x / c) * c; };
  if (c <= 0) return raw.argmax(-1).to(torch::kCPU);
  constexpr double kWindow = 1.0;
  auto max = std::get<0>(raw.max(-1, /*keepdim=*/true));  // [B,1]
  auto capped_max = cap(max);
  auto capped_floor = cap(max - kWindow);
  auto near = raw > (max - kWindow);  // [B,V]
  auto counts = near.sum(-1).to(torch::kCPU);
  auto ok = (capped_floor < capped_max).to(torch::kCPU);
  auto best = raw.argmax(-1).to(torch::kCPU).contiguous();
  auto best_acc = best.accessor<int64_t, 1>();
  auto counts_acc = counts.accessor<int64_t, 1>();
  for (int64_t r = 0; r < b; ++r) {
    if (counts_acc[r] == 1 && ok[r][0].item<bool>()) continue;  // a unique winner: the raw argmax
    if (!ok[r][0].item<bool>()) {                               // saturated: cap the whole row
      best_acc[r] = cap(raw[r]).argmax().item<int64_t>();
      continue;
    }
    auto idx = near[r].nonzero().view({-1});  // ascending indices
    auto vals = cap(raw[r].index_select(0, idx)).to(torch::kCPU, torch::kFloat64);
    const double target = capped_max[r][0].item<double>();
    auto idx_cpu = idx.to(torch::kCPU);
    for (int64_t i = 0; i < idx_cpu.size(0); ++i) {
      if (vals[i].item<double>() == target) {
        best_acc[r] = idx_cpu[i].item<int64_t>();
        break;
      }
    }
  }
  return best;
}

torch::Tensor PaliGemma::GreedyFromHidden(const torch::Tensor& hidden,
                                          const std::vector<bool>& suppress_eos) const {
  // The [V, H] head is the largest matrix of the model; SmallLinear streams it once per step.
  return GreedyFromLogits(SmallLinear(hidden, embed_, c10::nullopt), suppress_eos);
}

torch::Tensor PaliGemma::DecodeNext(const torch::Tensor& ids, const torch::Tensor& positions,
                                    const torch::Tensor& slots, torch::Tensor& k_cache,
                                    torch::Tensor& v_cache,
                                    const std::vector<bool>& suppress_eos) const {
  if (has_decode_hidden_) {
    auto hidden =
        language_.run_method("decode_hidden", ids, positions, slots, k_cache, v_cache).toTensor();
    return GreedyFromHidden(hidden, suppress_eos);
  }
  auto logits = language_.run_method("decode", ids, positions, slots, k_cache, v_cache).toTensor();
  for (size_t r = 0; r < suppress_eos.size(); ++r) {
    if (suppress_eos[r]) logits[r][manifest_.eos_id] = -std::numeric_limits<float>::infinity();
  }
  return logits.argmax(-1).to(torch::kCPU);
}

absl::StatusOr<torch::Tensor> PaliGemma::PrefixLogits(const PromptInput& prompt) const {
  std::lock_guard<std::mutex> lock(compute_mu_);
  ASSIGN_OR_RETURN(Prefilled p, Prefill({prompt}, 0));
  return Guarded("logits", [&] {
    auto hidden = p.hidden[0].narrow(0, 0, p.prefix_lengths[0]);
    return language_.run_method("logits", hidden).toTensor().to(torch::kCPU, torch::kFloat32);
  });
}

absl::StatusOr<std::vector<Generation>> PaliGemma::Generate(const std::vector<PromptInput>& prompts,
                                                            const GenerateOptions& options) const {
  if (options.max_new_tokens < 1) return absl::InvalidArgumentError("max_new_tokens must be >= 1");
  std::lock_guard<std::mutex> lock(compute_mu_);
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(Prefilled p, Prefill(prompts, options.max_new_tokens));
  const auto prefilled = std::chrono::steady_clock::now();
  const int64_t b = prompts.size();
  std::vector<Generation> out(b);
  auto result = Guarded("decode", [&]() -> bool {
    auto last = torch::tensor(p.prefix_lengths, torch::kInt64).sub(1).to(device_);
    auto hidden = p.hidden.index({torch::arange(b, torch::kInt64).to(device_), last});
    std::vector<bool> suppress(b, options.suppress_eos);
    auto next = GreedyFromHidden(hidden, suppress);
    std::vector<int64_t> active(b);
    for (int64_t i = 0; i < b; ++i) active[i] = i;
    for (int step = 0; step < options.max_new_tokens; ++step) {
      auto next_acc = next.accessor<int64_t, 1>();
      std::vector<int64_t> still, ids, positions;
      for (size_t r = 0; r < active.size(); ++r) {
        const int64_t row = active[r];
        const int32_t token = static_cast<int32_t>(next_acc[r]);
        out[row].tokens.push_back(token);
        if (token == manifest_.eos_id && !options.suppress_eos) continue;
        still.push_back(row);
        ids.push_back(token);
        positions.push_back(p.prefix_lengths[row] + step);
      }
      active = std::move(still);
      if (active.empty() || step + 1 == options.max_new_tokens) break;
      if (options.should_stop && options.should_stop()) {
        for (int64_t row : active) out[row].stopped_early = true;
        break;
      }
      next = DecodeNext(torch::tensor(ids, torch::kInt64).to(device_),
                        torch::tensor(positions, torch::kInt64).to(device_),
                        torch::tensor(active, torch::kInt64).to(device_), p.k_cache, p.v_cache,
                        std::vector<bool>(active.size(), options.suppress_eos));
    }
    return true;
  });
  if (!result.ok()) return result.status();
  const auto done = std::chrono::steady_clock::now();
  for (auto& g : out) {
    g.prefill_ms = std::chrono::duration<double, std::milli>(prefilled - start).count();
    g.decode_ms = std::chrono::duration<double, std::milli>(done - prefilled).count();
  }
  return out;
}

absl::StatusOr<KvCache> PaliGemma::AllocateCache(int64_t slots, int64_t max_len) const {
  if (slots < 1 || max_len < 1) return absl::InvalidArgumentError("empty KV cache requested");
  max_len = std::min<int64_t>(max_len, manifest_.max_position_embeddings);
  return Guarded("KV cache allocation", [&] {
    const auto& m = manifest_;
    auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
    KvCache cache;
    // zeros, not empty: the decode path masks positions past a row's length, and zeroed memory
    // keeps that masking free of NaN/Inf garbage.
    cache.k = torch::zeros({m.num_layers, slots, m.num_kv_heads, max_len, m.head_dim}, opts);
    cache.v = torch::zeros_like(cache.k);
    cache.slots = slots;
    cache.max_len = max_len;
    return cache;
  });
}

absl::StatusOr<int32_t> PaliGemma::PrefillSlot(const PromptInput& prompt, int64_t slot,
                                               KvCache& cache, bool suppress_eos) const {
  const int64_t n = manifest_.num_image_tokens;
  if (prompt.prefix_ids.empty()) return absl::InvalidArgumentError("empty prompt prefix");
  if (!prompt.image_features.defined() || prompt.image_features.dim() != 2 ||
      prompt.image_features.size(0) != n ||
      prompt.image_features.size(1) != manifest_.hidden_size) {
    return absl::InvalidArgumentError("image features do not match the model's image tokens");
  }
  if (slot < 0 || slot >= cache.slots) return absl::InvalidArgumentError("bad cache slot");
  if (n + static_cast<int64_t>(prompt.prefix_ids.size()) > cache.max_len) {
    return absl::InvalidArgumentError("prompt does not fit the KV cache");
  }
  std::lock_guard<std::mutex> lock(compute_mu_);
  return Guarded("prefill", [&]() -> int32_t {
    torch::Tensor hidden;
    std::vector<int64_t> lengths;
    auto slots = torch::tensor({slot}, torch::kInt64).to(device_);
    absl::Status s = PrefillInto({prompt}, slots, cache.k, cache.v, &hidden, &lengths);
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
    auto last = hidden[0].narrow(0, lengths[0] - 1, 1);  // [1,H]
    return static_cast<int32_t>(GreedyFromHidden(last, {suppress_eos})[0].item<int64_t>());
  });
}

absl::StatusOr<std::vector<int32_t>> PaliGemma::DecodeStep(const std::vector<int64_t>& ids,
                                                           const std::vector<int64_t>& positions,
                                                           const std::vector<int64_t>& slots,
                                                           const std::vector<bool>& suppress_eos,
                                                           KvCache& cache) const {
  if (ids.empty() || ids.size() != positions.size() || ids.size() != slots.size()) {
    return absl::InvalidArgumentError("decode step rows do not match");
  }
  for (size_t r = 0; r < ids.size(); ++r) {
    if (positions[r] >= cache.max_len || slots[r] < 0 || slots[r] >= cache.slots) {
      return absl::InvalidArgumentError("decode step outside the KV cache");
    }
  }
  std::lock_guard<std::mutex> lock(compute_mu_);
  return Guarded("decode", [&] {
    auto next =
        DecodeNext(torch::tensor(ids, torch::kInt64).to(device_),
                   torch::tensor(positions, torch::kInt64).to(device_),
                   torch::tensor(slots, torch::kInt64).to(device_), cache.k, cache.v, suppress_eos);
    auto acc = next.accessor<int64_t, 1>();
    std::vector<int32_t> out(ids.size());
    for (size_t r = 0; r < out.size(); ++r) out[r] = static_cast<int32_t>(acc[r]);
    return out;
  });
}

absl::StatusOr<std::vector<std::array<float, 64 * 64>>> PaliGemma::DecodeMasks(
    const std::vector<std::array<int, 16>>& codes) const {
  std::vector<std::array<float, 64 * 64>> masks(codes.size());
  if (codes.empty()) return masks;
  std::lock_guard<std::mutex> lock(compute_mu_);
  auto decoded = Guarded("mask decoder", [&] {
    auto input = torch::empty({static_cast<int64_t>(codes.size()), 16}, torch::kInt64);
    auto acc = input.accessor<int64_t, 2>();
    for (size_t i = 0; i < codes.size(); ++i) {
      for (int j = 0; j < 16; ++j) acc[i][j] = codes[i][j];
    }
    return vae_.forward({input.to(device_)})
        .toTensor()
        .to(torch::kCPU, torch::kFloat32)
        .contiguous();
  });
  if (!decoded.ok()) return decoded.status();
  if (decoded->numel() != static_cast<int64_t>(codes.size()) * 64 * 64) {
    return absl::InternalError("mask decoder returned an unexpected shape");
  }
  const float* data = decoded->data_ptr<float>();
  for (size_t i = 0; i < codes.size(); ++i) {
    std::copy(data + i * 64 * 64, data + (i + 1) * 64 * 64, masks[i].begin());
  }
  return masks;
}

}  // namespace pg::model
