#include "server/text/tokenizer_json.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pg::text {
namespace {

using json = nlohmann::json;

class Handler : public nlohmann::json_sax<json> {
 public:
  explicit Handler(TokenizerJson* out) : out_(out) {}

  const std::string& error() const { return error_; }

  bool null() override { return Value(json(nullptr)); }
  bool boolean(bool v) override { return Value(json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == kVocab) return VocabId(v);
    return Value(json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == kVocab) {
      return VocabId(v > static_cast<number_unsigned_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    }
    return Value(json(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return Value(json(v)); }
  bool binary(binary_t&) override { return Fail("unexpected binary value"); }

  bool string(string_t& v) override {
    switch (mode_) {
      case kDom:
        return Value(json(std::move(v)));
      case kVocab:
        return Fail(absl::StrCat("vocab id of '", key_, "' is not an integer"));
      case kMerges: {
        const size_t space = v.find(' ');
        if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos) {
          return Fail(absl::StrCat("merge #", out_->merges.size(), " '", v, "' is not two tokens"));
        }
        out_->merges.emplace_back(v.substr(0, space), v.substr(space + 1));
        return true;
      }
      case kMergePair:
        if (pair_.size() >= 2) return Fail(MergePairError());
        pair_.push_back(std::move(v));
        return true;
    }
    return true;
  }

  bool start_object(std::size_t) override {
    if (mode_ != kDom) return Fail(mode_ == kVocab ? "vocab id is an object" : MergePairError());
    if (IsModelMember("vocab")) {
      mode_ = kVocab;
      out_->has_vocab = true;
      return true;
    }
    return Open(json::object());
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == kVocab) {
      mode_ = kDom;
      return true;
    }
    stack_.pop_back();
    return true;
  }

  bool start_array(std::size_t) override {
    if (mode_ == kVocab) return Fail(absl::StrCat("vocab id of '", key_, "' is not an integer"));
    if (mode_ == kMergePair) return Fail(MergePairError());
    if (mode_ == kMerges) {
      mode_ = kMergePair;
      pair_.clear();
      return true;
    }
    if (IsModelMember("merges")) {
      mode_ = kMerges;
      out_->has_merges = true;
      return true;
    }
    return Open(json::array());
  }
  bool end_array() override {
    if (mode_ == kMergePair) {
      if (pair_.size() != 2) return Fail(MergePairError());
      out_->merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = kMerges;
      return true;
    }
    if (mode_ == kMerges) {
      mode_ = kDom;
      return true;
    }
    stack_.pop_back();
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return Fail(e.what());
  }

 private:
  enum Mode { kDom, kVocab, kMerges, kMergePair };

  // True when the container about to open is the member `name` of the top-level "model" object.
  bool IsModelMember(const char* name) const {
    return stack_.size() == 2 && stack_[1].second && key_ == name;
  }

  bool Open(json value) {
    json* slot = Insert(std::move(value));
    const bool is_model =
        stack_.size() == 1 && stack_[0].first->is_object() && key_ == "model" && slot->is_object();
    stack_.emplace_back(slot, is_model);
    return true;
  }

  bool Value(json value) {
    Insert(std::move(value));
    return true;
  }

  json* Insert(json value) {
    if (stack_.empty()) {
      out_->rest = std::move(value);
      return &out_->rest;
    }
    json* parent = stack_.back().first;
    if (parent->is_object()) {
      json& slot = (*parent)[key_];
      slot = std::move(value);
      return &slot;
    }
    parent->push_back(std::move(value));
    return &parent->back();
  }

  std::string MergePairError() const {
    return absl::StrCat("merge #", out_->merges.size(), " is neither \"a b\" nor [a, b]");
  }

  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  TokenizerJson* out_;
  Mode mode_ = kDom;
  // Open DOM containers; the flag marks the top-level "model" object.
  std::vector<std::pair<json*, bool>> stack_;
  std::string key_;
  std::vector<std::string> pair_;
  std::string error_;

  bool VocabId(int64_t id) {
    out_->vocab.emplace_back(key_, id);
    return true;
  }
};

}  // namespace

absl::StatusOr<TokenizerJson> ReadTokenizerJson(std::string_view text) {
  TokenizerJson out;
  out.vocab.reserve(1 << 18);
  out.merges.reserve(1 << 19);
  Handler handler(&out);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &handler);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed tokenizer.json: ", e.what()));
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed tokenizer.json: ", handler.error().empty() ? "parse error" : handler.error()));
  }
  return out;
}

}  // namespace pg::text
