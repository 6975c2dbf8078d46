#include "server/text/answer.h"

#include <cstddef>

namespace pg::text {
namespace {

// Special tokens of the Gemma vocabulary that the decoded answer may carry; they are removed before
// parsing so that they can appear anywhere (even between loc/seg tokens) without breaking an
// object.
constexpr std::string_view kIgnoredTokens[] = {
    "<eos>", "<bos>", "<pad>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<image>"};

// Python's \s on ASCII (we never treat non-ASCII bytes as whitespace).
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Matches `<{name}` + exactly `digits` ASCII digits + `>` at text[pos]; stores the number.
bool MatchToken(std::string_view text, size_t pos, std::string_view name, size_t digits,
                int* value) {
  const size_t len = 1 + name.size() + digits + 1;
  if (pos + len > text.size() || text[pos] != '<' || text.substr(pos + 1, name.size()) != name ||
      text[pos + len - 1] != '>') {
    return false;
  }
  int v = 0;
  for (size_t i = 0; i < digits; ++i) {
    const char c = text[pos + 1 + name.size() + i];
    if (!IsDigit(c)) return false;
    v = v * 10 + (c - '0');
  }
  *value = v;
  return true;
}

constexpr size_t kLocLen = 9;  // <locNNNN>
constexpr size_t kSegLen = 8;  // <segNNN>

bool MatchLocs(std::string_view text, size_t pos, std::array<int, 4>* loc) {
  for (size_t i = 0; i < 4; ++i) {
    if (!MatchToken(text, pos + i * kLocLen, "loc", 4, &(*loc)[i])) return false;
  }
  return true;
}

std::string StripIgnoredTokens(std::string_view answer) {
  std::string out;
  out.reserve(answer.size());
  size_t pos = 0;
  while (pos < answer.size()) {
    bool skipped = false;
    if (answer[pos] == '<') {
      for (std::string_view token : kIgnoredTokens) {
        if (answer.substr(pos, token.size()) == token) {
          pos += token.size();
          skipped = true;
          break;
        }
      }
    }
    if (!skipped) out.push_back(answer[pos++]);
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

// A hand-written equivalent of big_vision's / the reference app's regex, applied repeatedly:
//   (.*?) <loc(\d{4})>{4} \s* (?:<seg(\d{3})>{16})? \s* ([^;<>]+)? ' '? (?:; )?
// Differences, all deliberate: text before an object may contain newlines (Python's `.` stops at
// them, which would silently drop every later object); \s and \d are ASCII only.
// Out-of-range values: an object with a loc > 1023 is consumed and dropped; a seg > 127 keeps the
// box and label with seg = nullopt. Fewer than 16 seg tokens: the regex's optional group fails, so
// the box is kept with seg = nullopt and an empty label, and the partial seg tokens are skipped as
// leading text of the next object.
std::vector<DetectedObject> ParseAnswer(std::string_view answer) {
  const std::string text = StripIgnoredTokens(answer);
  std::vector<DetectedObject> objects;
  size_t pos = 0;
  while (pos < text.size()) {
    // (.*?): the leftmost position where four loc tokens follow.
    DetectedObject obj;
    size_t start = text.find("<loc", pos);
    while (start != std::string::npos && !MatchLocs(text, start, &obj.loc)) {
      start = text.find("<loc", start + 1);
    }
    if (start == std::string::npos) break;
    pos = start + 4 * kLocLen;
    while (pos < text.size() && IsSpace(text[pos])) ++pos;

    std::array<int, 16> seg{};
    bool has_seg = true;
    for (size_t i = 0; i < 16 && has_seg; ++i) {
      has_seg = MatchToken(text, pos + i * kSegLen, "seg", 3, &seg[i]);
    }
    bool seg_in_range = true;
    if (has_seg) {
      pos += 16 * kSegLen;
      while (pos < text.size() && IsSpace(text[pos])) ++pos;
      for (int v : seg) seg_in_range = seg_in_range && v <= 127;
    }

    const size_t label_begin = pos;
    while (pos < text.size() && text[pos] != ';' && text[pos] != '<' && text[pos] != '>') ++pos;
    obj.label = std::string(Trim(std::string_view(text).substr(label_begin, pos - label_begin)));
    if (pos < text.size() && text[pos] == ' ') ++pos;
    if (text.compare(pos, 2, "; ") == 0) pos += 2;

    bool loc_in_range = true;
    for (int v : obj.loc) loc_in_range = loc_in_range && v <= 1023;
    if (!loc_in_range) continue;
    if (has_seg && seg_in_range) obj.seg = seg;
    objects.push_back(std::move(obj));
  }
  return objects;
}

}  // namespace pg::text
