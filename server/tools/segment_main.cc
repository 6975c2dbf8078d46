// paligemma-segment: run one segmentation through the engine and print the result as JSON.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "server/engine/result_json.h"
#include "server/engine/segmenter.h"

namespace {

constexpr char kUsage[] =
    "usage: paligemma-segment --bundle DIR --image FILE --prompt TEXT [--max-new-tokens N]\n"
    "                         [--show-tokens] [--no-image] [--no-full-masks] [--dtype "
    "float32|bfloat16]\n"
    "                         [--device cpu|cuda] [--threads N] [--suppress-eos]\n";

int Fail(const std::string& message) {
  std::cerr << "paligemma-segment: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  pg::engine::EnsurePassiveOpenMp(argv);
  std::string bundle, image_path, prompt;
  bool have_prompt = false, show_tokens = false;
  pg::engine::EngineOptions engine_options;
  pg::engine::SegmentOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--bundle" && value(&bundle)) {
    } else if (arg == "--image" && value(&image_path)) {
    } else if (arg == "--prompt" && value(&prompt)) {
      have_prompt = true;
    } else if (arg == "--max-new-tokens" && value(&v)) {
      try {
        options.max_new_tokens = std::stoi(v);
      } catch (const std::exception&) {
        return Fail("--max-new-tokens needs an integer, got '" + v + "'");
      }
    } else if (arg == "--threads" && value(&v)) {
      try {
        engine_options.threads = std::stoi(v);
      } catch (const std::exception&) {
        return Fail("--threads needs an integer, got '" + v + "'");
      }
    } else if (arg == "--dtype" && value(&engine_options.load.dtype)) {
    } else if (arg == "--device" && value(&engine_options.load.device)) {
    } else if (arg == "--show-tokens") {
      show_tokens = true;
    } else if (arg == "--no-image") {
      options.include_image = false;
    } else if (arg == "--no-full-masks") {
      options.include_full_masks = false;
    } else if (arg == "--suppress-eos") {
      options.suppress_eos = true;
    } else {
      std::cerr << kUsage;
      return Fail("unknown or incomplete argument '" + arg + "'");
    }
  }
  if (bundle.empty() || image_path.empty() || !have_prompt) {
    std::cerr << kUsage;
    return Fail("--bundle, --image and --prompt are required");
  }

  std::ifstream in(image_path, std::ios::binary);
  if (!in) return Fail("cannot read image file " + image_path);
  std::stringstream bytes;
  bytes << in.rdbuf();

  auto segmenter = pg::engine::Segmenter::Create(bundle, engine_options);
  if (!segmenter.ok()) return Fail(std::string(segmenter.status().message()));

  pg::engine::SegmentRequest request{bytes.str(), prompt, options};
  auto result = (*segmenter)->Segment(request);
  if (!result.ok()) return Fail(std::string(result.status().message()));
  std::cout << pg::engine::ResultToJson(*result, show_tokens).dump(2) << "\n";
  return 0;
}
