// keel::simd beside the functions a user would otherwise call: glibc's
// memchr, memrchr, memmem and strcspn, std::find, std::count,
// std::string_view::find / find_first_of and std::boyer_moore_horspool_searcher.
//
// Sizes 16 B, 64 B, 1 KiB, 64 KiB and 16 MiB; the byte searches look for a
// match at the far end (the whole haystack is scanned), count runs on dense
// and absent bytes, substring search on English-like text (needle absent) and
// (a 29-byte phrase and a 7-byte word, both absent) and
// on "aaa...a" with an "aa...ab" needle. KEEL_SIMD=avx2 (etc.) benchmarks
// another kernel level; the name of the one in use is printed in the context.
#include <keel/simd.hpp>

#include <benchmark/benchmark.h>

#ifdef KEEL_BENCH_HYPERSCAN
#include <hs/hs.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace ks = keel::simd;

const std::vector<std::int64_t> kSizes = {16, 64, 1 << 10, 64 << 10, 16 << 20};

void sizes(benchmark::internal::Benchmark* b) {
  for (auto s : kSizes) b->Arg(s);
}

// English-like text: words from a small vocabulary, spaces, punctuation and
// a newline every few words. No '|' or '@' or 'Z' anywhere.
std::string make_text_uncached(std::size_t n, std::uint32_t seed) {
  static const char* const words[] = {
      "the",     "of",     "and",   "to",      "in",     "a",     "is",    "that",    "for",     "it",
      "as",      "was",    "with",  "be",      "by",     "on",    "not",   "he",      "this",    "are",
      "or",      "his",    "from",  "at",      "which",  "but",   "have",  "an",      "had",     "they",
      "you",     "were",   "their", "one",     "all",    "we",    "can",   "her",     "has",     "there",
      "been",    "if",     "more",  "when",    "will",   "would", "who",   "so",      "no",      "server",
      "request", "client", "error", "timeout", "buffer", "queue", "index", "message", "control", "system"};
  std::mt19937 rng(seed);
  std::string s;
  s.reserve(n + 16);
  while (s.size() < n) {
    s += words[rng() % std::size(words)];
    const auto r = rng() % 16;
    s += r == 0 ? ".\n" : r == 1 ? ", " : " ";
  }
  s.resize(n);
  return s;
}

// Google Benchmark calls each function several times: build each text once.
const std::string& make_text(std::size_t n, std::uint32_t seed = 42) {
  static std::map<std::pair<std::size_t, std::uint32_t>, std::string> cache;
  auto& s = cache[{n, seed}];
  if (s.size() != n) s = make_text_uncached(n, seed);
  return s;
}

// Text without `c`, then `c` as the very last byte.
std::string at_end(std::size_t n, char c) {
  std::string s = make_text(n);
  std::replace(s.begin(), s.end(), c, '_');
  s.back() = c;
  return s;
}

template <class F>
void run(benchmark::State& state, const std::string& hay, F f) {
  for (auto _ : state) {
    std::string_view h(hay);
    benchmark::DoNotOptimize(h);
    benchmark::DoNotOptimize(f(h));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(hay.size()));
}

std::size_t n_of(const benchmark::State& s) {
  return static_cast<std::size_t>(s.range(0));
}

// ---------------------------------------------------------- find (memchr) ---
void BM_find_keel(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return ks::find(s, '|'); });
}
// The dispatch before the direct call: a load of the kernel table (checked
// for null), then the kernel's pointer in it. Kept to measure the difference.
void BM_find_keel_table(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    return s.size() < ks::detail::kShort ? ks::detail::short_find(p, s.size(), '|')
                                         : ks::detail::active().find(p, s.size(), '|');
  });
}
void BM_find_memchr(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return std::memchr(s.data(), '|', s.size()); });
}
void BM_find_std_find(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return std::find(s.begin(), s.end(), '|'); });
}
void BM_find_string_view(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return s.find('|'); });
}
BENCHMARK(BM_find_keel)->Apply(sizes);
BENCHMARK(BM_find_keel_table)->Apply(sizes);
BENCHMARK(BM_find_memchr)->Apply(sizes);
BENCHMARK(BM_find_std_find)->Apply(sizes);
BENCHMARK(BM_find_string_view)->Apply(sizes);

// -------------------------------------------------------- rfind (memrchr) ---
std::string at_start(std::size_t n, char c) {
  std::string s = make_text(n);
  std::replace(s.begin(), s.end(), c, '_');
  s.front() = c;
  return s;
}
void BM_rfind_keel(benchmark::State& st) {
  const std::string h = at_start(n_of(st), '|');
  run(st, h, [](std::string_view s) { return ks::rfind(s, '|'); });
}
void BM_rfind_memrchr(benchmark::State& st) {
  const std::string h = at_start(n_of(st), '|');
  run(st, h, [](std::string_view s) { return memrchr(s.data(), '|', s.size()); });
}
void BM_rfind_string_view(benchmark::State& st) {
  const std::string h = at_start(n_of(st), '|');
  run(st, h, [](std::string_view s) { return s.rfind('|'); });
}
BENCHMARK(BM_rfind_keel)->Apply(sizes);
BENCHMARK(BM_rfind_memrchr)->Apply(sizes);
BENCHMARK(BM_rfind_string_view)->Apply(sizes);

// --------------------------------------------- find_any of three (strcspn) ---
void BM_find_any3_keel(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return ks::find_any(s, '|', '@', 'Z'); });
}
void BM_find_any3_strcspn(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');  // std::string is NUL-terminated
  run(st, h, [](std::string_view s) { return std::strcspn(s.data(), "|@Z"); });
}
void BM_find_any3_string_view(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return s.find_first_of("|@Z"); });
}
BENCHMARK(BM_find_any3_keel)->Apply(sizes);
BENCHMARK(BM_find_any3_strcspn)->Apply(sizes);
BENCHMARK(BM_find_any3_string_view)->Apply(sizes);

// ---------------------------------------- find_first_of, 8 bytes (strcspn) ---
constexpr const char* kSet8 = "|@Z#$%^&";
void BM_first_of8_keel(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return ks::find_first_of(s, kSet8); });
}
void BM_first_of8_keel_byteset(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  const ks::ByteSet set(kSet8);
  run(st, h, [&set](std::string_view s) { return ks::find_first_of(s, set); });
}
void BM_first_of8_strcspn(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return std::strcspn(s.data(), kSet8); });
}
void BM_first_of8_string_view(benchmark::State& st) {
  const std::string h = at_end(n_of(st), '|');
  run(st, h, [](std::string_view s) { return s.find_first_of(kSet8); });
}
BENCHMARK(BM_first_of8_keel)->Apply(sizes);
BENCHMARK(BM_first_of8_keel_byteset)->Apply(sizes);
BENCHMARK(BM_first_of8_strcspn)->Apply(sizes);
BENCHMARK(BM_first_of8_string_view)->Apply(sizes);

// ------------------------------------------------------ count (std::count) ---
void BM_count_dense_keel(benchmark::State& st) {
  const std::string h = make_text(n_of(st));
  run(st, h, [](std::string_view s) { return ks::count(s, ' '); });
}
void BM_count_dense_std_count(benchmark::State& st) {
  const std::string h = make_text(n_of(st));
  run(st, h, [](std::string_view s) { return std::count(s.begin(), s.end(), ' '); });
}
void BM_count_absent_keel(benchmark::State& st) {
  const std::string h = make_text(n_of(st));
  run(st, h, [](std::string_view s) { return ks::count(s, '|'); });
}
void BM_count_absent_std_count(benchmark::State& st) {
  const std::string h = make_text(n_of(st));
  run(st, h, [](std::string_view s) { return std::count(s.begin(), s.end(), '|'); });
}
BENCHMARK(BM_count_dense_keel)->Apply(sizes);
BENCHMARK(BM_count_dense_std_count)->Apply(sizes);
BENCHMARK(BM_count_absent_keel)->Apply(sizes);
BENCHMARK(BM_count_absent_std_count)->Apply(sizes);

// ------------------------------------ matches: every newline (memchr loop) ---
void BM_lines_keel_matches(benchmark::State& st) {
  const std::string h = make_text(n_of(st));
  run(st, h, [](std::string_view s) {
    std::size_t sum = 0;
    for (std::size_t pos : ks::matches(s, '\n')) sum += pos;
    return sum;
  });
}
void BM_lines_memchr_loop(benchmark::State& st) {
  const std::string h = make_text(n_of(st));
  run(st, h, [](std::string_view s) {
    std::size_t sum = 0;
    const char* p = s.data();
    const char* end = p + s.size();
    while (const void* hit = std::memchr(p, '\n', static_cast<std::size_t>(end - p))) {
      const char* q = static_cast<const char*>(hit);
      sum += static_cast<std::size_t>(q - s.data());
      p = q + 1;
    }
    return sum;
  });
}
BENCHMARK(BM_lines_keel_matches)->Apply(sizes);
BENCHMARK(BM_lines_memchr_loop)->Apply(sizes);

// ------------------------------------------------ substring (memmem etc.) ---
constexpr std::string_view kTextNeedle = "request for the message queue";  // absent, 29 bytes
constexpr std::string_view kWordNeedle = "handler";                        // absent, 7 bytes
std::string text_hay(std::size_t n) {
  std::string h = make_text(n);
  // Make sure the needles are absent (they could appear by chance).
  for (std::size_t at; (at = h.find(kTextNeedle)) != std::string::npos;) h[at] = 'R';
  for (std::size_t at; (at = h.find(kWordNeedle)) != std::string::npos;) h[at] = 'H';
  return h;
}
std::string aaa_hay(std::size_t n) {
  return std::string(n, 'a');
}
std::string aaa_needle(std::size_t n) {
  return std::string(std::min<std::size_t>(32, n / 2) - 1, 'a') + "b";
}

enum class Input { text, word, aaab };
template <class Search>
void substring(benchmark::State& st, Input in, Search search) {
  const std::string h = in == Input::aaab ? aaa_hay(n_of(st)) : text_hay(n_of(st));
  const std::string needle = in == Input::aaab   ? aaa_needle(n_of(st))
                             : in == Input::text ? std::string(kTextNeedle)
                                                 : std::string(kWordNeedle);
  run(st, h, [&](std::string_view s) { return search(s, std::string_view(needle)); });
}
const auto keel_sub = [](std::string_view h, std::string_view n) { return ks::find(h, n); };
const auto memmem_sub = [](std::string_view h, std::string_view n) {
  return memmem(h.data(), h.size(), n.data(), n.size());
};
const auto sv_sub = [](std::string_view h, std::string_view n) { return h.find(n); };
const auto bmh_sub = [](std::string_view h, std::string_view n) {
  // The searcher is built per call, as it would be for a needle known late.
  return std::search(h.begin(), h.end(), std::boyer_moore_horspool_searcher(n.begin(), n.end()));
};
void BM_sub_text_keel(benchmark::State& st) {
  substring(st, Input::text, keel_sub);
}
void BM_sub_text_memmem(benchmark::State& st) {
  substring(st, Input::text, memmem_sub);
}
void BM_sub_text_string_view(benchmark::State& st) {
  substring(st, Input::text, sv_sub);
}
void BM_sub_text_bmh(benchmark::State& st) {
  substring(st, Input::text, bmh_sub);
}
void BM_sub_aaab_keel(benchmark::State& st) {
  substring(st, Input::aaab, keel_sub);
}
void BM_sub_aaab_memmem(benchmark::State& st) {
  substring(st, Input::aaab, memmem_sub);
}
void BM_sub_aaab_string_view(benchmark::State& st) {
  substring(st, Input::aaab, sv_sub);
}
void BM_sub_aaab_bmh(benchmark::State& st) {
  substring(st, Input::aaab, bmh_sub);
}
BENCHMARK(BM_sub_text_keel)->Apply(sizes);
BENCHMARK(BM_sub_text_memmem)->Apply(sizes);
BENCHMARK(BM_sub_text_string_view)->Apply(sizes);
BENCHMARK(BM_sub_text_bmh)->Apply(sizes);
void BM_sub_word_keel(benchmark::State& st) {
  substring(st, Input::word, keel_sub);
}
void BM_sub_word_memmem(benchmark::State& st) {
  substring(st, Input::word, memmem_sub);
}
void BM_sub_word_string_view(benchmark::State& st) {
  substring(st, Input::word, sv_sub);
}
void BM_sub_word_bmh(benchmark::State& st) {
  substring(st, Input::word, bmh_sub);
}
BENCHMARK(BM_sub_word_keel)->Apply(sizes);
BENCHMARK(BM_sub_word_memmem)->Apply(sizes);
BENCHMARK(BM_sub_word_string_view)->Apply(sizes);
BENCHMARK(BM_sub_word_bmh)->Apply(sizes);
BENCHMARK(BM_sub_aaab_keel)->Apply(sizes);
BENCHMARK(BM_sub_aaab_memmem)->Apply(sizes);
BENCHMARK(BM_sub_aaab_string_view)->Apply(sizes);
BENCHMARK(BM_sub_aaab_bmh)->Apply(sizes);

// -------------------------------- substring on 1 MiB of text (memmem) ---
// 8- and 16-byte needles absent from the text, beside memmem and beside
// keel's own scan for one absent byte over the same text (the ceiling of a
// prefilter that must look at every byte).
//
// The text: sentences of the 500 most common English words, drawn with
// weight 1 / (rank + 4)^0.7, which puts every letter within about 1.5 points
// of its share in English prose (e 12.6%, t 8.7%, p 1.8%, v 1.0%, x 0.1%);
// a capital after each full stop, commas, a line break every 40 words or so.
std::string english_text(std::size_t n, std::uint32_t seed) {
  static constexpr std::string_view kWords =
      "the of and to a in is it you that he was for on are with as I his they be at one have this from "
      "or had by not word but what some we can out other were all there when up use your how said an "
      "each she which do their time if will way about many then them write would like so these her "
      "long make thing see him two has look more day could go come did number sound no most people my "
      "over know water than call first who may down side been now find any new work part take get "
      "place made live where after back little only round man year came show every good me give our "
      "under name very through just form sentence great think say help low line differ turn cause much "
      "mean before move right boy old too same tell does set three want air well also play small end "
      "put home read hand port large spell add even land here must big high such follow act why ask "
      "men change went light kind off need house picture try us again animal point mother world near "
      "build self earth father head stand own page should country found answer school grow study still "
      "learn plant cover food sun four between state keep eye never last let thought city tree cross "
      "farm hard start might story saw far sea draw left late run don't while press close night real "
      "life few north open seem together next white children begin got walk example ease paper group "
      "always music those both mark often letter until mile river car feet care second book carry took "
      "science eat room friend began idea fish mountain stop once base hear horse cut sure watch color "
      "face wood main enough plain girl usual young ready above ever red list though feel talk bird "
      "soon body dog family direct pose leave song measure door product black short numeral class wind "
      "question happen complete ship area half rock order fire south problem piece told knew pass "
      "since top whole king space heard best hour better true during hundred five remember step early "
      "hold west ground interest reach fast verb sing listen six table travel less morning ten simple "
      "several vowel toward war lay against pattern slow center love person money serve appear road "
      "map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark "
      "machine note wait plan figure star box noun field rest correct able pound done beauty drive "
      "stood contain front teach week final gave green oh quick develop ocean warm free minute strong "
      "special mind behind clear tail produce fact street inch multiply nothing course stay wheel full "
      "force blue object decide surface deep moon island foot system busy test record boat common gold "
      "possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought "
      "heat snow tire bring yes distant fill east paint language among size exact zero quiet";
  std::vector<std::string_view> words;
  std::vector<double> weights;
  for (std::size_t at = 0; at < kWords.size();) {
    std::size_t end = kWords.find(' ', at);
    if (end == std::string_view::npos) end = kWords.size();
    words.push_back(kWords.substr(at, end - at));
    weights.push_back(1.0 / std::pow(static_cast<double>(words.size() + 3), 0.7));
    at = end + 1;
  }
  std::mt19937 rng(seed);
  std::discrete_distribution<std::size_t> pick(weights.begin(), weights.end());
  std::string s;
  s.reserve(n + 32);
  bool capital = true;
  while (s.size() < n) {
    const std::size_t at = s.size();
    s += words[pick(rng)];
    if (capital && s[at] >= 'a' && s[at] <= 'z') s[at] = static_cast<char>(s[at] - 'a' + 'A');
    const auto r = rng() % 280;  // 1/40 line break, 1/14 full stop, 1/10 comma
    capital = r < 27;
    s += r < 7 ? ".\n" : r < 27 ? ". " : r < 55 ? ", " : " ";
  }
  s.resize(n);
  return s;
}
const std::vector<std::int64_t> kTextSizes = {64, 64 << 10, 1 << 20};
void text_sizes(benchmark::internal::Benchmark* b) {
  for (auto s : kTextSizes) b->Arg(s);
}
constexpr std::string_view kNeedle8 = "pipeline";           // absent
constexpr std::string_view kNeedle16 = "database cluster";  // absent
const std::string& text_without(std::size_t n) {
  static std::map<std::size_t, std::string> cache;
  auto& h = cache[n];
  if (h.size() != n) {
    h = english_text(n, 42);
    for (std::string_view nd : {kNeedle8, kNeedle16}) {
      for (std::size_t at; (at = h.find(nd)) != std::string::npos;) h[at] = '_';
    }
  }
  return h;
}
void BM_sub8_keel(benchmark::State& st) {
  run(st, text_without(n_of(st)), [](std::string_view h) { return ks::find(h, kNeedle8); });
}
void BM_sub8_memmem(benchmark::State& st) {
  run(st, text_without(n_of(st)), [](std::string_view h) { return memmem_sub(h, kNeedle8); });
}
void BM_sub16_keel(benchmark::State& st) {
  run(st, text_without(n_of(st)), [](std::string_view h) { return ks::find(h, kNeedle16); });
}
void BM_sub16_memmem(benchmark::State& st) {
  run(st, text_without(n_of(st)), [](std::string_view h) { return memmem_sub(h, kNeedle16); });
}
void BM_byte_scan_keel(benchmark::State& st) {  // the ceiling: one absent byte
  run(st, text_without(n_of(st)), [](std::string_view h) { return ks::find(h, '|'); });
}
BENCHMARK(BM_sub8_keel)->Apply(text_sizes);
BENCHMARK(BM_sub8_memmem)->Apply(text_sizes);
BENCHMARK(BM_sub16_keel)->Apply(text_sizes);
BENCHMARK(BM_sub16_memmem)->Apply(text_sizes);
BENCHMARK(BM_byte_scan_keel)->Apply(text_sizes);

// ------------------------------------------- reverse substring (vs find) ---
void BM_rsub16_keel(benchmark::State& st) {
  run(st, text_without(n_of(st)), [](std::string_view h) { return ks::rfind(h, kNeedle16); });
}
void BM_rsub16_string_view(benchmark::State& st) {
  run(st, text_without(n_of(st)), [](std::string_view h) { return h.rfind(kNeedle16); });
}
BENCHMARK(BM_rsub16_keel)->Apply(text_sizes);
BENCHMARK(BM_rsub16_string_view)->Apply(text_sizes);

// --------------------------------------- case-insensitive (strcasestr) ---
constexpr std::string_view kIcaseNeedle = "Pipeline STAGE";  // absent in any case
void BM_icase_keel(benchmark::State& st) {
  run(st, text_without(n_of(st)), [](std::string_view h) { return ks::find_icase(h, kIcaseNeedle); });
}
void BM_icase_strcasestr(benchmark::State& st) {
  const std::string& hay = text_without(n_of(st));  // NUL-terminated
  const std::string needle(kIcaseNeedle);
  run(st, hay, [&](std::string_view h) { return strcasestr(h.data(), needle.c_str()); });
}
BENCHMARK(BM_icase_keel)->Apply(text_sizes);
BENCHMARK(BM_icase_strcasestr)->Apply(text_sizes);

// -------------------------------------------- many needles (Hyperscan) ---
// Lower-case words of 5-10 letters absent from the text, 8, 16 or 64 at once.
const std::vector<std::string>& absent_words(std::size_t count) {
  static std::map<std::size_t, std::vector<std::string>> cache;
  auto& w = cache[count];
  if (w.empty()) {
    std::mt19937 rng(static_cast<std::uint32_t>(count));
    const std::string& text = text_without(1 << 20);
    while (w.size() < count) {
      std::string s;
      const std::size_t len = 5 + rng() % 6;
      for (std::size_t i = 0; i < len; ++i) s += static_cast<char>('a' + rng() % 26);
      if (text.find(s) == std::string::npos) w.push_back(s);
    }
  }
  return w;
}
const std::vector<std::int64_t> kNeedleCounts = {8, 16, 64};
void multi_args(benchmark::internal::Benchmark* b) {
  for (auto c : kNeedleCounts) b->Args({c, 1 << 20});
}
void BM_multi_keel(benchmark::State& st) {
  const auto& words = absent_words(static_cast<std::size_t>(st.range(0)));
  const ks::MultiFinder finder(words);
  const std::string& h = text_without(static_cast<std::size_t>(st.range(1)));
  run(st, h, [&](std::string_view s) { return finder.find(s).pos; });
}
void BM_multi_find_loop(benchmark::State& st) {  // one keel::simd::find per needle
  const auto& words = absent_words(static_cast<std::size_t>(st.range(0)));
  const std::string& h = text_without(static_cast<std::size_t>(st.range(1)));
  run(st, h, [&](std::string_view s) {
    std::size_t best = ks::npos;
    for (const auto& w : words) best = std::min(best, ks::find(s, w));
    return best;
  });
}
void BM_multi_setup_keel(benchmark::State& st) {
  const auto& words = absent_words(static_cast<std::size_t>(st.range(0)));
  for (auto _ : st) {
    ks::MultiFinder finder(words);
    benchmark::DoNotOptimize(&finder);
  }
}
BENCHMARK(BM_multi_keel)->Apply(multi_args);
BENCHMARK(BM_multi_find_loop)->Apply(multi_args);
BENCHMARK(BM_multi_setup_keel)->Apply(multi_args);
#ifdef KEEL_BENCH_HYPERSCAN
struct HsDb {
  hs_database_t* db = nullptr;
  hs_scratch_t* scratch = nullptr;
  explicit HsDb(const std::vector<std::string>& words) {
    std::vector<const char*> exprs;
    std::vector<unsigned> flags, ids;
    for (std::size_t i = 0; i < words.size(); ++i) {
      exprs.push_back(words[i].c_str());  // lower-case letters: literal as a pattern
      flags.push_back(HS_FLAG_SINGLEMATCH);
      ids.push_back(static_cast<unsigned>(i));
    }
    hs_compile_error_t* err = nullptr;
    if (hs_compile_multi(exprs.data(), flags.data(), ids.data(), static_cast<unsigned>(exprs.size()),
                         HS_MODE_BLOCK, nullptr, &db, &err) != HS_SUCCESS) {
      hs_free_compile_error(err);
      db = nullptr;
      return;
    }
    hs_alloc_scratch(db, &scratch);
  }
  ~HsDb() {
    hs_free_scratch(scratch);
    hs_free_database(db);
  }
  HsDb(const HsDb&) = delete;
  HsDb& operator=(const HsDb&) = delete;
};
int hs_on_match(unsigned, unsigned long long, unsigned long long to, unsigned, void* ctx) {
  *static_cast<unsigned long long*>(ctx) = to;
  return 1;  // stop at the first match
}
void BM_multi_hyperscan(benchmark::State& st) {
  const auto& words = absent_words(static_cast<std::size_t>(st.range(0)));
  HsDb hs(words);
  if (hs.db == nullptr) {
    st.SkipWithError("hs_compile_multi failed");
    return;
  }
  const std::string& h = text_without(static_cast<std::size_t>(st.range(1)));
  run(st, h, [&](std::string_view s) {
    unsigned long long end = 0;
    hs_scan(hs.db, s.data(), static_cast<unsigned>(s.size()), 0, hs.scratch, hs_on_match, &end);
    return end;
  });
}
void BM_multi_setup_hyperscan(benchmark::State& st) {
  const auto& words = absent_words(static_cast<std::size_t>(st.range(0)));
  for (auto _ : st) {
    HsDb hs(words);
    benchmark::DoNotOptimize(hs.db);
  }
}
BENCHMARK(BM_multi_hyperscan)->Apply(multi_args);
BENCHMARK(BM_multi_setup_hyperscan)->Apply(multi_args);
#endif

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("keel_simd_isa", std::string(ks::active_isa()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
