#include "server/text/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "server/common/status.h"
#include "server/text/bpe.h"
#include "server/text/tokenizer_json.h"
#include "server/text/utf8.h"

namespace pg::text {
namespace {

using json = nlohmann::json;

// Ids above this are refused: they would make the id -> token table absurdly large.
constexpr int64_t kMaxId = int64_t{1} << 24;

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Byte trie over added-token contents, for tokenizers' leftmost-longest matching.
class Trie {
 public:
  Trie() : nodes_(1) {}

  void Insert(std::string_view key, int32_t value) {
    int32_t node = 0;
    for (char c : key) {
      const auto b = static_cast<unsigned char>(c);
      auto& children = nodes_[node].children;
      auto it = std::find_if(children.begin(), children.end(),
                             [b](const auto& child) { return child.first == b; });
      if (it != children.end()) {
        node = it->second;
      } else {
        const auto next = static_cast<int32_t>(nodes_.size());
        children.emplace_back(b, next);
        nodes_.emplace_back();
        node = next;
      }
    }
    // First definition wins for duplicate contents (tokenizers keeps the first added token).
    if (node != 0 && nodes_[node].value < 0) nodes_[node].value = value;
  }

  bool empty() const { return nodes_[0].children.empty(); }

  // Longest key starting at s[pos]: sets *len and returns its value, or -1.
  int32_t LongestAt(std::string_view s, size_t pos, size_t* len) const {
    int32_t node = 0;
    int32_t best = -1;
    for (size_t i = pos; i < s.size(); ++i) {
      const auto b = static_cast<unsigned char>(s[i]);
      const auto& children = nodes_[node].children;
      auto it = std::find_if(children.begin(), children.end(),
                             [b](const auto& child) { return child.first == b; });
      if (it == children.end()) break;
      node = it->second;
      if (nodes_[node].value >= 0) {
        best = nodes_[node].value;
        *len = i + 1 - pos;
      }
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t value = -1;
  };
  std::vector<Node> nodes_;
};

struct NormalizerOp {
  enum Kind { kReplace, kPrepend } kind;
  std::string a;  // pattern, or the prepended string
  std::string b;  // replacement
};

struct DecoderOp {
  enum Kind { kReplace, kByteFallback, kFuse, kStrip } kind;
  std::string a;  // pattern / strip content
  std::string b;  // replacement
  int start = 0;  // Strip
  int stop = 0;
};

struct Piece {
  int32_t added = -1;  // index into added tokens, or -1 for plain text
  size_t begin = 0;
  size_t end = 0;
};

// char::is_alphanumeric() || c == '_' on the character next to a single_word token. Non-ASCII
// characters count as word characters (an approximation of Unicode Alphabetic/Numeric; no token in
// the PaliGemma file uses single_word).
bool IsWordChar(char32_t c) {
  return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z');
}

char32_t LastChar(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  const size_t len = utf8::ValidSequenceLength(s, i);
  return len ? utf8::DecodeAt(s, i, len) : 0xFFFD;
}

char32_t FirstChar(std::string_view s) {
  const size_t len = utf8::ValidSequenceLength(s, 0);
  return len ? utf8::DecodeAt(s, 0, len) : 0xFFFD;
}

bool Bool(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed tokenizer.json: ", AsAbsl(what)));
}

absl::StatusOr<std::string> StringPattern(const json& op, std::string_view where) {
  auto it = op.find("pattern");
  if (it == op.end() || !it->is_object())
    return Malformed(absl::StrCat(AsAbsl(where), " without a pattern"));
  if (it->contains("String")) return (*it)["String"].get<std::string>();
  return absl::UnimplementedError(absl::StrCat(
      "tokenizer.json: ", AsAbsl(where), " with a non-String (regex) pattern is not supported"));
}

absl::Status ParseNormalizer(const json& j, std::vector<NormalizerOp>* ops) {
  if (j.is_null()) return absl::OkStatus();
  if (!j.is_object()) return Malformed("normalizer is not an object");
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const json& sub : j.at("normalizers")) RETURN_IF_ERROR(ParseNormalizer(sub, ops));
    return absl::OkStatus();
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::string pattern, StringPattern(j, "Replace normalizer"));
    if (pattern.empty()) return Malformed("Replace normalizer with an empty pattern");
    ops->push_back({NormalizerOp::kReplace, pattern, j.at("content").get<std::string>()});
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    ops->push_back({NormalizerOp::kPrepend, j.at("prepend").get<std::string>(), ""});
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: normalizer type '", type, "' is not supported"));
}

absl::Status ParseDecoder(const json& j, std::vector<DecoderOp>* ops) {
  if (!j.is_object()) return Malformed("decoder is not an object");
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const json& sub : j.at("decoders")) RETURN_IF_ERROR(ParseDecoder(sub, ops));
    return absl::OkStatus();
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::string pattern, StringPattern(j, "Replace decoder"));
    if (pattern.empty()) return Malformed("Replace decoder with an empty pattern");
    ops->push_back({DecoderOp::kReplace, pattern, j.at("content").get<std::string>()});
    return absl::OkStatus();
  }
  if (type == "ByteFallback") {
    ops->push_back({DecoderOp::kByteFallback, "", ""});
    return absl::OkStatus();
  }
  if (type == "Fuse") {
    ops->push_back({DecoderOp::kFuse, "", ""});
    return absl::OkStatus();
  }
  if (type == "Strip") {
    DecoderOp op{DecoderOp::kStrip, j.at("content").get<std::string>(), ""};
    op.start = j.at("start").get<int>();
    op.stop = j.at("stop").get<int>();
    ops->push_back(std::move(op));
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: decoder type '", type, "' is not supported"));
}

// "<0xNN>" -> byte, as tokenizers' ByteFallback decoder recognises it (u8::from_str_radix(.., 16)
// on the two characters after "<0x", which also accepts a '+' sign).
std::optional<unsigned char> ByteToken(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(t[3]);
  const int lo = hex(t[4]);
  if (lo < 0) return std::nullopt;
  if (t[3] == '+') return static_cast<unsigned char>(lo);
  if (hi < 0) return std::nullopt;
  return static_cast<unsigned char>(hi * 16 + lo);
}

}  // namespace

struct Tokenizer::Impl {
  BpeModel model;
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> present;  // id has a token
  std::vector<uint8_t> special;  // id is an added token flagged special
  std::vector<AddedToken> added;
  absl::flat_hash_map<std::string, int32_t> added_to_id;
  Trie raw_trie;         // added tokens with normalized == false, matched on the input text
  Trie normalized_trie;  // added tokens with normalized == true, matched on normalised text
  std::vector<NormalizerOp> normalizer;
  bool has_decoder = false;
  std::vector<DecoderOp> decoder;

  void SetToken(int32_t id, const std::string& token) {
    if (static_cast<size_t>(id) >= id_to_token.size()) {
      id_to_token.resize(id + 1);
      present.resize(id + 1, 0);
      special.resize(id + 1, 0);
    }
    id_to_token[id] = token;
    present[id] = 1;
  }

  std::string Normalize(std::string_view s) const {
    std::string out(s);
    for (const NormalizerOp& op : normalizer) {
      if (op.kind == NormalizerOp::kReplace) {
        out = absl::StrReplaceAll(out, {{op.a, op.b}});
      } else if (!out.empty()) {
        out = op.a + out;
      }
    }
    return out;
  }

  // tokenizers' AddedVocabulary::find_matches: leftmost-longest matches, then single_word / lstrip
  // / rstrip adjustments; the text between matches is returned as plain pieces.
  std::vector<Piece> FindMatches(std::string_view s, const Trie& trie) const {
    std::vector<Piece> pieces;
    size_t start_offset = 0;
    if (!trie.empty()) {
      size_t pos = 0;
      while (pos < s.size()) {
        size_t len = 0;
        const int32_t idx = trie.LongestAt(s, pos, &len);
        if (idx < 0) {
          ++pos;
          continue;
        }
        const AddedToken& tok = added[idx];
        size_t start = pos;
        size_t stop = pos + len;
        pos = stop;
        if (start < start_offset) continue;  // swallowed by a previous rstrip
        if (tok.single_word) {
          const bool start_space = start == 0 || !IsWordChar(LastChar(s.substr(0, start)));
          const bool stop_space = stop == s.size() || !IsWordChar(FirstChar(s.substr(stop)));
          if (!start_space || !stop_space) continue;
        }
        if (tok.lstrip) {
          size_t new_start = start;
          while (new_start > 0) {
            size_t i = new_start - 1;
            while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
            const size_t clen = utf8::ValidSequenceLength(s, i);
            if (clen == 0 || !utf8::IsWhitespace(utf8::DecodeAt(s, i, clen))) break;
            new_start = i;
          }
          start = std::max(new_start, start_offset);
        }
        if (tok.rstrip) {
          while (stop < s.size()) {
            const size_t clen = utf8::ValidSequenceLength(s, stop);
            if (clen == 0 || !utf8::IsWhitespace(utf8::DecodeAt(s, stop, clen))) break;
            stop += clen;
          }
          pos = stop;
        }
        if (start_offset < start) pieces.push_back({-1, start_offset, start});
        pieces.push_back({idx, start, stop});
        start_offset = stop;
      }
    }
    if (start_offset < s.size()) pieces.push_back({-1, start_offset, s.size()});
    return pieces;
  }

  std::string RunDecoder(std::vector<std::string> tokens) const {
    if (!has_decoder) {
      std::string out;
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (i) out += ' ';
        out += tokens[i];
      }
      return out;
    }
    for (const DecoderOp& op : decoder) {
      switch (op.kind) {
        case DecoderOp::kReplace:
          for (std::string& t : tokens) t = absl::StrReplaceAll(t, {{op.a, op.b}});
          break;
        case DecoderOp::kFuse: {
          std::string all;
          for (const std::string& t : tokens) all += t;
          tokens.assign(1, std::move(all));
          break;
        }
        case DecoderOp::kStrip:
          for (std::string& t : tokens) t = Strip(t, op);
          break;
        case DecoderOp::kByteFallback: {
          // Runs of <0xNN> tokens become their UTF-8 text; a run that is not valid UTF-8 as a whole
          // becomes one U+FFFD per byte (tokenizers' ByteFallback decoder).
          std::vector<std::string> result;
          std::string bytes;
          auto flush = [&]() {
            if (bytes.empty()) return;
            if (utf8::Sanitize(bytes) == bytes) {
              result.push_back(bytes);
            } else {
              for (size_t i = 0; i < bytes.size(); ++i) result.push_back("\xEF\xBF\xBD");
            }
            bytes.clear();
          };
          for (std::string& t : tokens) {
            if (auto b = ByteToken(t)) {
              bytes.push_back(static_cast<char>(*b));
            } else {
              flush();
              result.push_back(std::move(t));
            }
          }
          flush();
          tokens = std::move(result);
          break;
        }
      }
    }
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
  }

  // tokenizers' Strip decoder: drops up to `start` leading and `stop` trailing characters equal to
  // `content` (a single character).
  static std::string Strip(const std::string& t, const DecoderOp& op) {
    std::string_view v(t);
    if (op.a.empty()) return t;
    for (int i = 0; i < op.start && v.substr(0, op.a.size()) == op.a; ++i)
      v.remove_prefix(op.a.size());
    for (int i = 0;
         i < op.stop && v.size() >= op.a.size() && v.substr(v.size() - op.a.size()) == op.a; ++i) {
      v.remove_suffix(op.a.size());
    }
    return std::string(v);
  }
};

namespace {

absl::Status LoadModel(TokenizerJson& doc, BpeModel* model) {
  const json& root = doc.rest;
  auto model_it = root.find("model");
  if (model_it == root.end()) return Malformed("missing \"model\"");
  const json& m = *model_it;
  if (!m.is_object()) return Malformed("\"model\" is not an object");
  if (m.contains("type") && m["type"] != "BPE") {
    return absl::UnimplementedError(absl::StrCat("tokenizer.json: model type ", m["type"].dump(),
                                                 " is not supported (only BPE)"));
  }
  if (!doc.has_vocab) return Malformed("missing or non-object \"model.vocab\"");
  if (!doc.has_merges) return Malformed("missing or non-array \"model.merges\"");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = m.find(key);
    if (it != m.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      return absl::UnimplementedError(
          absl::StrCat("tokenizer.json: model.", key, " is not supported"));
    }
  }
  if (auto it = m.find("dropout"); it != m.end() && !it->is_null() && it->get<double>() != 0.0) {
    return absl::UnimplementedError("tokenizer.json: BPE dropout is not supported");
  }
  model->byte_fallback = Bool(m, "byte_fallback");
  model->fuse_unk = Bool(m, "fuse_unk");
  model->ignore_merges = Bool(m, "ignore_merges");

  model->vocab.reserve(doc.vocab.size());
  for (auto& [token, id] : doc.vocab) {
    if (id < 0 || id >= kMaxId) return Malformed(absl::StrCat("vocab id ", id, " out of range"));
    // A repeated key keeps its last id, as a JSON object read into a map does.
    model->vocab.insert_or_assign(std::move(token), static_cast<int32_t>(id));
  }
  doc.vocab = {};
  model->IndexByteTokens();

  // Resolving 580 K merges is 1.7 M lookups in a 256 K-entry map, mostly cache misses: do it on a
  // few threads (the map is read-only by then), then insert serially so ranks stay deterministic.
  struct Resolved {
    int32_t a, b, merged;
  };
  std::vector<Resolved> resolved(doc.merges.size());
  std::vector<absl::Status> errors;
  {
    const size_t n = doc.merges.size();
    // Small files (tests, the fuzzer's inputs) resolve on this thread: starting threads would cost
    // more than the lookups.
    const size_t threads =
        n < 16384 ? 1 : std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
    const size_t chunk = (n + threads - 1) / threads;
    errors.resize(threads);
    auto work = [&](size_t t) {
      std::string joined;
      for (size_t i = t * chunk; i < std::min(n, (t + 1) * chunk); ++i) {
        const auto& [a, b] = doc.merges[i];
        joined.assign(a);
        joined.append(b);
        auto ia = model->vocab.find(AsAbsl(a));
        auto ib = model->vocab.find(AsAbsl(b));
        auto im = model->vocab.find(AsAbsl(joined));
        if (ia == model->vocab.end() || ib == model->vocab.end() || im == model->vocab.end()) {
          const std::string& bad = ia == model->vocab.end()   ? a
                                   : ib == model->vocab.end() ? b
                                                              : joined;
          errors[t] = Malformed(absl::StrCat("merge #", i, ": token '", bad, "' not in vocab"));
          return;
        }
        resolved[i] = {ia->second, ib->second, im->second};
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) {
      try {
        pool.emplace_back(work, t);
      } catch (const std::system_error&) {
        work(t);  // no thread available: resolve this chunk here
      }
    }
    work(0);
    for (std::thread& th : pool) th.join();
  }
  for (const absl::Status& status : errors) RETURN_IF_ERROR(status);
  model->merges.reserve(resolved.size());
  for (size_t rank = 0; rank < resolved.size(); ++rank) {
    // A repeated pair keeps its last rank, as tokenizers' HashMap collection does.
    const Resolved& r = resolved[rank];
    model->merges[BpeModel::PairKey(r.a, r.b)] = {static_cast<uint32_t>(rank), r.merged};
  }
  doc.merges = {};

  if (auto it = m.find("unk_token"); it != m.end() && it->is_string()) {
    auto unk = model->vocab.find(it->get<std::string>());
    if (unk == model->vocab.end()) return Malformed("model.unk_token is not in the vocabulary");
    model->unk_id = unk->second;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file '", path, "'"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read tokenizer file '", path, "'"));
  auto tokenizer = FromJson(buffer.str());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view text) {
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(TokenizerJson doc, ReadTokenizerJson(text));
  const json& j = doc.rest;
  if (!j.is_object()) return Malformed("the top level is not an object");
  try {
    RETURN_IF_ERROR(LoadModel(doc, &impl->model));

    if (auto it = j.find("pre_tokenizer"); it != j.end() && !it->is_null()) {
      return absl::UnimplementedError(absl::StrCat("tokenizer.json: pre_tokenizer ",
                                                   it->value("type", "?"),
                                                   " is not supported (only null)"));
    }
    if (auto it = j.find("normalizer"); it != j.end()) {
      RETURN_IF_ERROR(ParseNormalizer(*it, &impl->normalizer));
    }
    if (auto it = j.find("decoder"); it != j.end() && !it->is_null()) {
      impl->has_decoder = true;
      RETURN_IF_ERROR(ParseDecoder(*it, &impl->decoder));
    }

    for (const auto& [token, id] : impl->model.vocab) impl->SetToken(id, token);

    if (auto it = j.find("added_tokens"); it != j.end() && !it->is_null()) {
      if (!it->is_array()) return Malformed("\"added_tokens\" is not an array");
      for (const json& a : *it) {
        AddedToken tok;
        tok.content = a.at("content").get<std::string>();
        const int64_t id = a.at("id").get<int64_t>();
        if (id < 0 || id >= kMaxId)
          return Malformed(absl::StrCat("added token id ", id, " out of range"));
        if (tok.content.empty()) return Malformed(absl::StrCat("added token ", id, " is empty"));
        tok.id = static_cast<int32_t>(id);
        tok.special = Bool(a, "special");
        tok.lstrip = Bool(a, "lstrip");
        tok.rstrip = Bool(a, "rstrip");
        tok.single_word = Bool(a, "single_word");
        tok.normalized = Bool(a, "normalized");
        impl->SetToken(tok.id, tok.content);
        impl->special[tok.id] = tok.special ? 1 : 0;
        impl->added_to_id.emplace(tok.content, tok.id);
        const auto index = static_cast<int32_t>(impl->added.size());
        if (tok.normalized) {
          impl->normalized_trie.Insert(impl->Normalize(tok.content), index);
        } else {
          impl->raw_trie.Insert(tok.content, index);
        }
        impl->added.push_back(std::move(tok));
      }
    }
  } catch (const json::exception& e) {
    return Malformed(e.what());
  }
  if (impl->id_to_token.empty()) return Malformed("empty vocabulary");
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::Encode(std::string_view input) const {
  // Python strings are always valid Unicode; arbitrary bytes are first decoded the way
  // bytes.decode("utf-8", errors="replace") would, so ill-formed bytes encode as U+FFFD.
  const std::string text = utf8::Sanitize(input);
  std::vector<int32_t> ids;
  for (const Piece& piece : impl_->FindMatches(text, impl_->raw_trie)) {
    if (piece.added >= 0) {
      ids.push_back(impl_->added[piece.added].id);
      continue;
    }
    const std::string normalized =
        impl_->Normalize(std::string_view(text).substr(piece.begin, piece.end - piece.begin));
    for (const Piece& sub : impl_->FindMatches(normalized, impl_->normalized_trie)) {
      if (sub.added >= 0) {
        ids.push_back(impl_->added[sub.added].id);
      } else {
        // pre_tokenizer is null: the whole piece is one BPE word.
        impl_->model.EncodeWord(std::string_view(normalized).substr(sub.begin, sub.end - sub.begin),
                                &ids);
      }
    }
  }
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_to_token.size() || !impl_->present[id]) {
      continue;
    }
    if (skip_special_tokens && impl_->special[id]) continue;
    tokens.push_back(impl_->id_to_token[id]);
  }
  return impl_->RunDecoder(std::move(tokens));
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (auto it = impl_->added_to_id.find(AsAbsl(token)); it != impl_->added_to_id.end())
    return it->second;
  if (auto it = impl_->model.vocab.find(AsAbsl(token)); it != impl_->model.vocab.end())
    return it->second;
  return std::nullopt;
}

std::string Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_to_token.size()) return "";
  return impl_->id_to_token[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id] != 0;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }

std::vector<int32_t> EncodePrompt(const Tokenizer& tokenizer, std::string_view prompt) {
  return tokenizer.Encode(absl::StrCat("<bos>", AsAbsl(prompt), "\n"));
}

}  // namespace pg::text
