// A thread-safe LRU map with a byte budget and hit/miss counters, for the vision-tower output cache
// and the (optional) response cache. Values are shared_ptr<const V>: a hit hands out the cached
// value without copying it, and eviction never invalidates one a request still holds.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace pg::engine {

struct CacheStats {
  uint64_t hits = 0, misses = 0, evictions = 0;
  size_t entries = 0;
  int64_t bytes = 0, budget = 0;
};

template <typename V>
class LruCache {
 public:
  explicit LruCache(int64_t budget_bytes) : budget_(budget_bytes) {}

  bool enabled() const { return budget_ > 0; }

  // The value for `key` (counted as a hit, and made most recent), or null (a miss).
  std::shared_ptr<const V> Get(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return nullptr;
    }
    ++stats_.hits;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->value;
  }

  // Inserts (or replaces) `key`; evicts least recently used entries past the budget. A value larger
  // than the whole budget is not kept.
  void Put(const std::string& key, std::shared_ptr<const V> value, int64_t bytes) {
    if (bytes > budget_) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      stats_.bytes -= it->second->bytes;
      order_.erase(it->second);
      index_.erase(it);
    }
    order_.push_front(Entry{key, std::move(value), bytes});
    index_[key] = order_.begin();
    stats_.bytes += bytes;
    while (stats_.bytes > budget_ && !order_.empty()) {
      const Entry& last = order_.back();
      stats_.bytes -= last.bytes;
      index_.erase(last.key);
      order_.pop_back();
      ++stats_.evictions;
    }
  }

  CacheStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    CacheStats s = stats_;
    s.entries = index_.size();
    s.budget = budget_;
    return s;
  }

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const V> value;
    int64_t bytes;
  };
  const int64_t budget_;
  mutable std::mutex mu_;
  std::list<Entry> order_;  // most recent first
  std::unordered_map<std::string, typename std::list<Entry>::iterator> index_;
  CacheStats stats_;
};

// A 128-bit content hash (two independent 64-bit hashes, hex) of a byte buffer; collisions between
// different images are not a practical concern at this width.
std::string ContentHash(const void* data, size_t size);

}  // namespace pg::engine
