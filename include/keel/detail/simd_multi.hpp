// keel/detail/simd_multi.hpp: the automaton and Teddy tables behind
// keel::simd::MultiFinder.
//
// Not part of the API. From the needles it builds:
//   - byte classes: bytes no needle uses share class 0, so the tables have one
//     column per distinct needle byte (upper and lower case of a letter share
//     one when matching ignores ASCII case);
//   - the trie of the needles, completed into an Aho-Corasick automaton in a
//     dense states x classes table (a transition is a trie edge exactly when it
//     goes one level deeper);
//   - per state, the longest needle that ends there (through suffix links),
//     the lowest needle index it spells and the lowest index in its subtree;
//   - Teddy nibble tables over the first one to three bytes of every needle,
//     when there are at most 64 needles and none is empty;
//   - a 65536-bit filter of the needles' first (up to) four bytes, hashed by
//     class, which rejects most Teddy candidates with one bit test before the
//     trie walk (with many needles the nibble tables pass many starts).
// Searches: candidate starts from the Teddy kernel, each verified by walking
// the trie from that start; once verification has cost more than the bytes
// scanned (plus a constant), or without Teddy, the automaton scans the rest,
// so a search is O(n + longest needle).
#pragma once

#include <keel/detail/simd_core.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string_view>
#include <vector>

namespace keel::simd::detail {

class MultiPlan {
 public:
  static constexpr std::uint32_t kNone = 0xffffffffu;
  static constexpr std::size_t kTeddyMax = 64;

  MultiPlan() = default;

  template <class Get>
  MultiPlan(std::size_t count, Get get, bool icase) : count_(count) {
    lengths_.resize(count);
    // Classes.
    std::array<bool, 256> used{};
    for (std::size_t i = 0; i < count; ++i) {
      const std::string_view s = get(i);
      lengths_[i] = s.size();
      for (char ch : s) used[key(static_cast<uchar>(ch), icase)] = true;
    }
    const auto distinct = static_cast<std::size_t>(std::count(used.begin(), used.end(), true));
    if (distinct == 256) {  // every byte in some needle (only without folding): class = byte
      for (std::size_t b = 0; b < 256; ++b) cls_[b] = static_cast<uchar>(b);
      classes_ = 256;
    } else {
      std::array<uchar, 256> of_key{};
      std::size_t next = 1;
      for (std::size_t b = 0; b < 256; ++b) {
        if (used[b]) of_key[b] = static_cast<uchar>(next++);
      }
      classes_ = next;
      for (std::size_t b = 0; b < 256; ++b) cls_[b] = of_key[key(static_cast<uchar>(b), icase)];
    }
    // Trie.
    add_state(0, 0);
    for (std::size_t i = 0; i < count; ++i) {
      const std::string_view s = get(i);
      std::uint32_t node = 0;
      for (char ch : s) {
        const std::size_t c = cls_[static_cast<uchar>(ch)];
        std::uint32_t& to = delta_[node * classes_ + c];
        if (to == 0) {
          const auto fresh = static_cast<std::uint32_t>(depth_.size());
          to = fresh;  // before add_state: it may reallocate delta_
          add_state(node, depth_[node] + 1);
          node = fresh;
        } else {
          node = to;
        }
      }
      here_[node] = std::min(here_[node], static_cast<std::uint32_t>(i));
      min_len_ = std::min(min_len_, s.size());
      max_len_ = std::max(max_len_, s.size());
    }
    if (count == 0) min_len_ = 0;
    empty_ = here_[0];
    // Subtree minima: children are numbered after their parents.
    below_ = here_;
    for (std::size_t u = depth_.size(); u-- > 1;) {
      below_[parent_[u]] = std::min(below_[parent_[u]], below_[u]);
    }
    // Suffix links, breadth first, completing the table in place: a state's
    // row holds only its trie edges until the state is processed.
    std::vector<std::uint32_t> fail(depth_.size(), 0);
    std::vector<std::uint32_t> queue;
    queue.reserve(depth_.size());
    queue.push_back(0);
    for (std::size_t qi = 0; qi < queue.size(); ++qi) {
      const std::uint32_t u = queue[qi];
      for (std::size_t c = 0; c < classes_; ++c) {
        std::uint32_t& to = delta_[u * classes_ + c];
        const std::uint32_t via_fail = u == 0 ? 0 : delta_[fail[u] * classes_ + c];
        if (to != 0 && depth_[to] == depth_[u] + 1 && parent_[to] == u) {
          fail[to] = via_fail;
          out_len_[to] = here_[to] != kNone ? depth_[to] : out_len_[via_fail];
          queue.push_back(to);
        } else {
          to = via_fail;
        }
      }
    }
    parent_.clear();
    parent_.shrink_to_fit();
    build_teddy(get, icase);
    if (teddy_ok_) {
      prefix_ = std::min<std::size_t>(4, min_len_);
      filter_.assign(kFilterBits / 64, 0);
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint32_t h = prefix_hash(reinterpret_cast<const uchar*>(get(i).data()));
        filter_[h >> 6] |= std::uint64_t{1} << (h & 63);
      }
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] std::size_t length(std::size_t i) const noexcept { return lengths_[i]; }
  [[nodiscard]] bool has_teddy() const noexcept { return teddy_ok_; }
  [[nodiscard]] const TeddyTables& teddy() const noexcept { return teddy_; }
  [[nodiscard]] std::size_t min_len() const noexcept { return min_len_; }
  /// Whether some needle is empty (it matches at every position).
  [[nodiscard]] bool has_empty() const noexcept { return empty_ != kNone; }

  /// False when no needle can start at p + at (at + min_len() <= n holds).
  [[nodiscard]] bool may_start(const uchar* p, std::size_t at) const noexcept {
    const std::uint32_t h = prefix_hash(p + at);
    return ((filter_[h >> 6] >> (h & 63)) & 1u) != 0;
  }

  /// Lowest index of a needle starting at p + at, or kNone; *walked gets the
  /// number of bytes examined.
  std::uint32_t verify(const uchar* p, std::size_t n, std::size_t at, std::size_t& walked) const noexcept {
    std::uint32_t best = here_[0];
    std::uint32_t node = 0;
    std::size_t i = at;
    while (i < n && below_[node] < best) {
      const std::uint32_t to = delta_[node * classes_ + cls_[p[i]]];
      if (depth_[to] != depth_[node] + 1) break;  // not a trie edge
      node = to;
      best = std::min(best, here_[node]);
      ++i;
    }
    walked = i - at + 1;
    return best;
  }

  /// The leftmost start >= from of any needle (the automaton alone), or npos.
  std::size_t leftmost_start(const uchar* p, std::size_t n, std::size_t from) const noexcept {
    std::uint32_t state = 0;
    std::size_t best = npos;
    for (std::size_t i = from; i < n; ++i) {
      state = delta_[state * classes_ + cls_[p[i]]];
      if (const std::uint32_t len = out_len_[state]; len != 0) {
        best = std::min(best, i + 1 - len);
      }
      // A needle ending later starts after i + 1 - max_len: none can beat best.
      if (best != npos && i + 1 >= best + max_len_) break;
    }
    return best;
  }

 private:
  static uchar key(uchar b, bool icase) noexcept { return icase ? fold(b) : b; }
  static constexpr std::size_t kFilterBits = 65536;

  /// Hash of the classes of the first prefix_ bytes at q, 16 bits.
  std::uint32_t prefix_hash(const uchar* q) const noexcept {
    std::uint32_t k = 0;
    for (std::size_t j = 0; j < prefix_; ++j) k |= static_cast<std::uint32_t>(cls_[q[j]]) << (8 * j);
    return (k * 0x9e3779b1u) >> 16;
  }

  void add_state(std::uint32_t parent, std::uint32_t depth) {
    delta_.resize(delta_.size() + classes_, 0);
    depth_.push_back(depth);
    parent_.push_back(parent);
    here_.push_back(kNone);
    out_len_.push_back(0);
  }

  template <class Get>
  void build_teddy(Get get, bool icase) {
    teddy_ = {};
    if (count_ == 0 || count_ > kTeddyMax || empty_ != kNone) return;
    // Three fingerprint bytes whenever the needles allow: with two, even one
    // needle a bucket passes every start of a common pair ("th", "ta", "sh"
    // in English), thousands of candidates a MiB, each a mispredicted branch
    // and a filter probe; the third byte's two shuffles cost far less.
    const std::size_t k = std::min<std::size_t>(3, min_len_);
    teddy_.k = k;
    // Needles with the same first bytes share a bucket, which keeps the
    // nibble tables sparse: sort by fingerprint, then cut into 8 runs.
    std::vector<std::size_t> order(count_);
    std::iota(order.begin(), order.end(), std::size_t{0});
    const auto fp = [&](std::size_t i) {
      std::uint32_t v = 0;
      for (std::size_t j = 0; j < k; ++j) v = v << 8 | key(static_cast<uchar>(get(i)[j]), icase);
      return v;
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return fp(a) < fp(b); });
    // More than 16 needles: 16 buckets in two sets of nibble tables (with
    // fewer, two needles a bucket already keep candidates rare, and the
    // second set only costs shuffles).
    teddy_.fat = count_ > 16;
    const std::size_t buckets = teddy_.fat ? 16 : 8;
    for (std::size_t r = 0; r < count_; ++r) {
      const std::size_t bucket = r * buckets / count_;
      const auto bit = static_cast<uchar>(1u << (bucket & 7u));
      auto& lo = bucket < 8 ? teddy_.lo : teddy_.lo2;
      auto& hi = bucket < 8 ? teddy_.hi : teddy_.hi2;
      const std::string_view s = get(order[r]);
      for (std::size_t j = 0; j < k; ++j) {
        const auto b = static_cast<uchar>(s[j]);
        const uchar variants[2] = {b, icase && is_alpha(b) ? static_cast<uchar>(b ^ 0x20u) : b};
        auto& full = bucket < 8 ? teddy_.full : teddy_.full2;
        for (uchar x : variants) {
          lo[j][x & 15u] = static_cast<uchar>(lo[j][x & 15u] | bit);
          hi[j][x >> 4] = static_cast<uchar>(hi[j][x >> 4] | bit);
          full[j][x & 127u] = static_cast<uchar>(full[j][x & 127u] | bit);
        }
      }
    }
    teddy_ok_ = true;
  }

  std::size_t count_ = 0;
  std::size_t classes_ = 1;
  std::array<uchar, 256> cls_{};
  std::vector<std::uint32_t> delta_;    // states x classes
  std::vector<std::uint32_t> depth_;    // per state
  std::vector<std::uint32_t> parent_;   // per state, while building
  std::vector<std::uint32_t> here_;     // lowest index of a needle equal to the state's string
  std::vector<std::uint32_t> below_;    // lowest index in the state's subtree
  std::vector<std::uint32_t> out_len_;  // longest needle ending at the state, 0 for none
  std::vector<std::size_t> lengths_;
  std::size_t min_len_ = static_cast<std::size_t>(-1);
  std::size_t max_len_ = 0;
  std::uint32_t empty_ = kNone;  // lowest index of an empty needle
  TeddyTables teddy_{};
  bool teddy_ok_ = false;
  std::size_t prefix_ = 0;             // bytes the filter hashes
  std::vector<std::uint64_t> filter_;  // kFilterBits bits, when teddy_ok_
};

}  // namespace keel::simd::detail
