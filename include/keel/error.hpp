// keel/error.hpp: keel::Error, one word holding a kind, a message, where it
// was made, and the context it gathered on the way up; formatted with fmt.
//
//     keel::Error e(keel::Errc::not_found, "no user 7");     // records file:line
//     e.context("loading profile");                          // anyhow's .context()
//     fmt::print("{}\n", e);   // loading profile: NOT_FOUND: no user 7
//     keel::Error bare = keel::Errc::busy;                   // inline, no allocation
//     keel::Error os = keel::Error::from(ec);                // std::error_code -> kind
//
// Thread-safety: a value type; distinct objects may be used from distinct
// threads, one object mutated from several needs a lock.
// Guarantees: a bare kind never allocates; copying one with a message or
// context allocates and may throw std::bad_alloc, moving never throws. The
// views message(), contexts() and chain() return point into the Error they
// were called on; called on a temporary they return owning strings instead.
// <keel/result.hpp> includes this header.
#pragma once

#include <keel/detail/assert.hpp>
#include <keel/errc.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace keel {

/// Where an error was made. std::source_location's interface, built on the
/// compiler builtins so it also works where <source_location> does not
/// (clang 14 with libstdc++ 12).
class SourceLocation {
 public:
  constexpr SourceLocation() noexcept = default;
  [[nodiscard]] static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                                        const char* function = __builtin_FUNCTION(),
                                                        unsigned line = __builtin_LINE()) noexcept {
    SourceLocation loc;
    loc.file_ = file;
    loc.function_ = function;
    loc.line_ = line;
    return loc;
  }
  [[nodiscard]] constexpr const char* file_name() const noexcept { return file_; }
  [[nodiscard]] constexpr const char* function_name() const noexcept { return function_; }
  [[nodiscard]] constexpr unsigned line() const noexcept { return line_; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  unsigned line_ = 0;
};

namespace detail {
/// At most `limit` bytes of untrusted text for an error message that echoes
/// it: control bytes become '?', and a longer text is cut with "...".
[[nodiscard]] inline std::string excerpt(std::string_view text, std::size_t limit = 64) {
  std::string out;
  const bool cut = text.size() > limit;
  if (cut) text = text.substr(0, limit);
  out.reserve(text.size() + (cut ? 3 : 0));
  for (const char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : ch);
  }
  if (cut) out += "...";
  return out;
}
}  // namespace detail

/// An error: a code, an optional message, where it was made, and a chain of
/// context frames added on the way up. One pointer wide.
class Error {
 public:
  /// A bare code: no allocation, no message, no location.
  // NOLINTNEXTLINE(google-explicit-constructor): Errc -> Error is the point.
  Error(Errc code) noexcept : bits_((static_cast<std::uintptr_t>(code) << 1U) | 1U) {}

  /// A code with a message and the location it was made at.
  Error(Errc code, std::string message, SourceLocation where = ::keel::SourceLocation::current())
      : bits_(reinterpret_cast<std::uintptr_t>(new Rep{code, std::move(message), where, {}})) {}

  Error(const Error& other) : bits_(other.bits_) {
    if (const Rep* r = other.rep()) bits_ = reinterpret_cast<std::uintptr_t>(new Rep(*r));
  }
  Error(Error&& other) noexcept : bits_(other.bits_) { other.bits_ = kMovedFrom; }
  /// Strong guarantee: on std::bad_alloc *this is unchanged.
  Error& operator=(const Error& other) {
    if (this != &other) *this = Error(other);
    return *this;
  }
  Error& operator=(Error&& other) noexcept {
    if (this != &other) {
      destroy();
      bits_ = other.bits_;
      other.bits_ = kMovedFrom;
    }
    return *this;
  }
  ~Error() { destroy(); }

  /// Converts a std::error_code (see keel::errc_from for the kinds): a keel
  /// code stays a bare kind; any other keeps the original category and text
  /// in the message ("generic: Connection timed out"). A success code is not
  /// an error: it gives Errc::internal saying so.
  [[nodiscard]] static Error from(std::error_code ec,
                                  SourceLocation where = ::keel::SourceLocation::current()) {
    if (!ec) return {Errc::internal, "a success std::error_code was converted to an error", where};
    if (is_keel_category(ec.category())) {
      const Errc kind = errc_from(ec);
      if (kind != Errc::unknown) return {kind};
      return {kind, fmt::format("keel code {} is not known to this build", ec.value()), where};
    }
    return {errc_from(ec), fmt::format("{}: {}", ec.category().name(), ec.message()), where};
  }

  [[nodiscard]] Errc code() const noexcept {
    if (const Rep* r = rep()) return r->code;
    return static_cast<Errc>(bits_ >> 1U);
  }
  /// The root message ("" for a bare code). A view into this Error; on a
  /// temporary Error, an owning copy.
  [[nodiscard]] std::string_view message() const& noexcept KEEL_LIFETIMEBOUND {
    if (const Rep* r = rep()) return r->message;
    return {};
  }
  [[nodiscard]] std::string message() const&& { return std::string(message_view()); }
  /// Where the error was made; a default (empty) location for a bare code.
  [[nodiscard]] SourceLocation where() const noexcept {
    if (const Rep* r = rep()) return r->where;
    return {};
  }
  /// Context frames, outermost (added last) first. Views into this Error; on
  /// a temporary Error, owning copies.
  [[nodiscard]] std::vector<std::string_view> contexts() const& KEEL_LIFETIMEBOUND {
    std::vector<std::string_view> out;
    if (const Rep* r = rep()) out.assign(r->context.rbegin(), r->context.rend());
    return out;
  }
  [[nodiscard]] std::vector<std::string> contexts() const&& {
    std::vector<std::string> out;
    if (const Rep* r = rep()) out.assign(r->context.rbegin(), r->context.rend());
    return out;
  }
  /// Every message of the chain, outermost context first, the root message
  /// last (omitted when empty), the way anyhow's chain() iterates. Views into
  /// this Error; on a temporary Error, owning copies.
  [[nodiscard]] std::vector<std::string_view> chain() const& KEEL_LIFETIMEBOUND {
    auto out = contexts();
    if (auto m = message(); !m.empty()) out.push_back(m);
    return out;
  }
  [[nodiscard]] std::vector<std::string> chain() const&& {
    auto out = std::move(*this).contexts();
    if (auto m = message_view(); !m.empty()) out.emplace_back(m);
    return out;
  }
  [[nodiscard]] bool is_transient() const noexcept { return keel::is_transient(code()); }
  [[nodiscard]] int http_status() const noexcept { return keel::http_status(code()); }
  [[nodiscard]] std::error_code error_code() const noexcept { return make_error_code(code()); }
  // NOLINTNEXTLINE(google-explicit-constructor): an Error converts to its error_code.
  operator std::error_code() const noexcept { return error_code(); }

  /// Adds a context frame ("while doing what"); an empty string adds nothing.
  /// On std::bad_alloc the Error is unchanged.
  Error& context(std::string what) & {
    if (!what.empty()) mut().context.push_back(std::move(what));
    return *this;
  }
  Error&& context(std::string what) && { return std::move(context(std::move(what))); }

  /// Same kind, message and context (the location is not compared).
  friend bool operator==(const Error& a, const Error& b) noexcept {
    if (a.code() != b.code() || a.message_view() != b.message_view()) return false;
    const Rep* ra = a.rep();
    const Rep* rb = b.rep();
    const std::size_t na = ra ? ra->context.size() : 0;
    const std::size_t nb = rb ? rb->context.size() : 0;
    if (na != nb) return false;
    for (std::size_t i = 0; i < na; ++i) {
      if (ra->context[i] != rb->context[i]) return false;
    }
    return true;
  }
  friend bool operator==(const Error& a, Errc b) noexcept { return a.code() == b; }

  /// One line: "outer context: inner context: CODE: message". A context frame
  /// equal to what follows it is written once.
  [[nodiscard]] std::string to_string() const;

 private:
  struct Rep {
    Errc code;
    std::string message;
    SourceLocation where;
    std::vector<std::string> context;  // innermost first
  };
  static_assert(alignof(Rep) >= 2, "the low bit tags inline codes");
  // A moved-from Error reads as Errc::internal with no message.
  static constexpr std::uintptr_t kMovedFrom = (static_cast<std::uintptr_t>(Errc::internal) << 1U) | 1U;

  [[nodiscard]] const Rep* rep() const noexcept {
    return (bits_ & 1U) != 0 ? nullptr : reinterpret_cast<const Rep*>(bits_);
  }
  [[nodiscard]] std::string_view message_view() const noexcept {
    if (const Rep* r = rep()) return r->message;
    return {};
  }
  Rep& mut() {
    if ((bits_ & 1U) != 0) {
      bits_ = reinterpret_cast<std::uintptr_t>(new Rep{code(), {}, {}, {}});
    }
    return *reinterpret_cast<Rep*>(bits_);
  }
  void destroy() noexcept {
    if ((bits_ & 1U) == 0) delete reinterpret_cast<Rep*>(bits_);
  }

  std::uintptr_t bits_;
};

static_assert(sizeof(Error) == sizeof(void*), "keel::Error is one word");

}  // namespace keel

/// `{}` gives one line, outermost context first: "ctx: CODE: message".
/// `{:v}` appends where the error was made: " [at file:line]".
template <>
struct fmt::formatter<keel::Error> {
  bool verbose = false;
  constexpr auto parse(format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it == 'v') {
      verbose = true;
      ++it;
    }
    if (it != ctx.end() && *it != '}') {
#if FMT_VERSION >= 110000
      fmt::report_error("keel::Error takes {} or {:v}");
#else
      ctx.on_error("keel::Error takes {} or {:v}");
#endif
    }
    return it;
  }
  template <class FormatContext>
  auto format(const keel::Error& e, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = ctx.out();
    const auto frames = e.contexts();
    const auto msg = e.message();
    for (std::size_t i = 0; i < frames.size(); ++i) {
      // Never repeat the cause's text: skip a frame equal to the next one.
      const std::string_view next = i + 1 < frames.size() ? frames[i + 1] : msg;
      if (frames[i] == next) continue;
      out = fmt::format_to(out, "{}: ", frames[i]);
    }
    out = fmt::format_to(out, "{}", keel::to_string(e.code()));
    if (!msg.empty()) out = fmt::format_to(out, ": {}", msg);
    if (verbose) {
      const auto w = e.where();
      if (w.line() != 0) out = fmt::format_to(out, " [at {}:{}]", w.file_name(), w.line());
    }
    return out;
  }
};

template <>
struct fmt::formatter<keel::Errc> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(keel::Errc c, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(keel::to_string(c), ctx);
  }
};

namespace keel {

inline std::string Error::to_string() const {
  return fmt::format("{}", *this);
}

}  // namespace keel
