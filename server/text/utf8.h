// Small UTF-8 helpers shared by the tokenizer: the text we receive is arbitrary bytes, while every
// `tokenizers` semantic we mirror is defined on Unicode scalar values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pg::text::utf8 {

// Length in bytes of the well-formed UTF-8 sequence starting at s[pos], or 0 when it is not well
// formed (bad lead byte, bad or missing continuation byte, overlong form, surrogate, > U+10FFFF).
size_t ValidSequenceLength(std::string_view s, size_t pos);

// Decodes the well-formed sequence at s[pos] (caller checked ValidSequenceLength(s, pos) == len >
// 0).
char32_t DecodeAt(std::string_view s, size_t pos, size_t len);

// Replaces every ill-formed subsequence by U+FFFD using the "maximal subpart" rule of Unicode §3.9
// (what Rust's String::from_utf8_lossy and Python's bytes.decode(errors="replace") do). Valid input
// is returned unchanged.
std::string Sanitize(std::string_view s);

// Unicode White_Space property (Rust's char::is_whitespace).
bool IsWhitespace(char32_t c);

void Append(char32_t c, std::string* out);

}  // namespace pg::text::utf8
