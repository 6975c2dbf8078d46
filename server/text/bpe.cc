#include "server/text/bpe.h"

#include <cstdio>
#include <queue>

#include "server/text/utf8.h"

namespace pg::text {
namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool removed;
};

// A candidate merge of symbols[pos] with its right neighbour. The heap pops the lowest rank first
// and, among equal ranks, the leftmost position (tokenizers' Merge ordering).
struct Candidate {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
  bool operator>(const Candidate& o) const {
    if (rank != o.rank) return rank > o.rank;
    return pos > o.pos;
  }
};

}  // namespace

void BpeModel::IndexByteTokens() {
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab.find(absl::string_view(name));
    byte_ids[b] = it == vocab.end() ? -1 : it->second;
  }
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    auto it = vocab.find(AsAbsl(word));
    if (it != vocab.end()) {
      out->push_back(it->second);
      return;
    }
  }

  // Initial symbols: one per character, or its UTF-8 bytes as <0xNN> tokens, or <unk> (fused runs).
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, false});
  };
  // tokenizers keeps a pending <unk> and only flushes it before the next in-vocabulary character or
  // at the end of the word (not before byte-fallback tokens); reproduced as is.
  bool pending_unk = false;
  size_t pos = 0;
  while (pos < word.size()) {
    size_t len = utf8::ValidSequenceLength(word, pos);
    if (len == 0) len = 1;  // callers sanitise; never loop forever on stray bytes
    const std::string_view ch = word.substr(pos, len);
    pos += len;
    auto it = vocab.find(AsAbsl(ch));
    if (it != vocab.end()) {
      if (pending_unk) {
        add(*unk_id);
        pending_unk = false;
      }
      add(it->second);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (char c : ch) all = all && byte_ids[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : ch) add(byte_ids[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_id.has_value()) {
      if (pending_unk && !fuse_unk) add(*unk_id);
      pending_unk = true;
    }
    // No unk token configured: tokenizers fails the encode; we drop the character.
  }
  if (pending_unk) add(*unk_id);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    auto it = merges.find(PairKey(symbols[left].id, symbols[right].id));
    if (it != merges.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale entry: the pair at this position changed since it was queued.
    auto it = merges.find(PairKey(left.id, right.id));
    if (it == merges.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.removed = true;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) out->push_back(symbols[i].id);
}

}  // namespace pg::text
