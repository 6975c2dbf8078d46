#include "server/text/utf8.h"

namespace pg::text::utf8 {
namespace {

bool IsContinuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Valid range of the second byte for a lead byte (Unicode Table 3-7); {0, 0} for an invalid lead.
struct Range {
  unsigned char lo, hi;
  size_t len;
};

Range SecondByteRange(unsigned char lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {0x80, 0xBF, 2};
  if (lead == 0xE0) return {0xA0, 0xBF, 3};
  if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) return {0x80, 0xBF, 3};
  if (lead == 0xED) return {0x80, 0x9F, 3};
  if (lead == 0xF0) return {0x90, 0xBF, 4};
  if (lead >= 0xF1 && lead <= 0xF3) return {0x80, 0xBF, 4};
  if (lead == 0xF4) return {0x80, 0x8F, 4};
  return {0, 0, 0};
}

// Number of bytes of the (possibly truncated) sequence at pos that are a valid prefix; >= 1.
size_t MaximalSubpart(std::string_view s, size_t pos, size_t* full_len) {
  const auto lead = static_cast<unsigned char>(s[pos]);
  *full_len = 0;
  if (lead < 0x80) {
    *full_len = 1;
    return 1;
  }
  const Range r = SecondByteRange(lead);
  if (r.len == 0) return 1;
  size_t i = 1;
  for (; i < r.len && pos + i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    const bool ok = i == 1 ? (b >= r.lo && b <= r.hi) : IsContinuation(b);
    if (!ok) break;
  }
  if (i == r.len) *full_len = r.len;
  return i;
}

}  // namespace

size_t ValidSequenceLength(std::string_view s, size_t pos) {
  size_t full = 0;
  MaximalSubpart(s, pos, &full);
  return full;
}

char32_t DecodeAt(std::string_view s, size_t pos, size_t len) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (len == 1) return b0;
  char32_t c = b0 & (0xFF >> (len + 1));
  for (size_t i = 1; i < len; ++i) c = (c << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3F);
  return c;
}

std::string Sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t full = 0;
    const size_t n = MaximalSubpart(s, pos, &full);
    if (full > 0) {
      out.append(s.data() + pos, full);
    } else {
      out.append("\xEF\xBF\xBD");
    }
    pos += n;
  }
  return out;
}

bool IsWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

void Append(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace pg::text::utf8
