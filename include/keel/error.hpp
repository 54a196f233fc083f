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
//     return std::move(e).wrap(keel::Errc::internal, "user table out of sync");
//     e.root_code();  e.has(keel::Errc::not_found);         // the wrapped kind
//     fmt::print("{:v}\n", e);  // every layer with its file:line, "Caused by:"
//
// Guarantees: a bare kind never allocates; copying one with a message or
// context allocates and may throw std::bad_alloc, moving never throws. The
// views message(), contexts() and chain() return point into the Error they
// were called on; called on a temporary they return owning strings instead.
// Compiled with KEEL_ERROR_STACKTRACE=1 (off by default, see below), errors
// made with a message also record the call stack. std::format works as fmt
// does where the standard library has <format>.
// <keel/result.hpp> includes this header.
#pragma once

#include <keel/detail/assert.hpp>
#include <keel/detail/http_status.hpp>
#include <keel/errc.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

/// KEEL_ERROR_STACKTRACE: 0 (the default) or 1. At 1, every Error made with a
/// message also records the call stack it was made on (Boost.Stacktrace:
/// addresses only; names and lines are looked up when it is printed), shown
/// by `{:v}` and read with keel::stacktrace(e). Define it the same way for
/// every translation unit of a program, and link a Boost.Stacktrace backend
/// (boost_stacktrace_backtrace with BOOST_STACKTRACE_LINK, or the header-only
/// default with -ldl). At 0 nothing of it is compiled.
#ifndef KEEL_ERROR_STACKTRACE
#define KEEL_ERROR_STACKTRACE 0
#endif
#if KEEL_ERROR_STACKTRACE
#include <boost/stacktrace.hpp>
#endif

namespace keel {

#if KEEL_ERROR_STACKTRACE
/// The call stack an Error was made on, kept as a payload
/// (KEEL_ERROR_STACKTRACE=1 only).
struct Stacktrace {
  boost::stacktrace::stacktrace frames;
};
#endif

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

namespace detail {
// A typed value attached to an Error, type-erased so Error stays one word.
struct PayloadBase {
  PayloadBase() = default;
  PayloadBase(const PayloadBase&) = delete;
  PayloadBase& operator=(const PayloadBase&) = delete;
  virtual ~PayloadBase() = default;
  [[nodiscard]] virtual const void* type() const noexcept = 0;
  [[nodiscard]] virtual const void* get() const noexcept = 0;
  [[nodiscard]] virtual std::unique_ptr<PayloadBase> clone() const = 0;
};
// One address per payload type: its identity.
template <class P>
inline constexpr char payload_type_tag = 0;
template <class P>
struct PayloadOf final : PayloadBase {
  explicit PayloadOf(P v) : value(std::move(v)) {}
  [[nodiscard]] const void* type() const noexcept override { return &payload_type_tag<P>; }
  [[nodiscard]] const void* get() const noexcept override { return &value; }
  [[nodiscard]] std::unique_ptr<PayloadBase> clone() const override {
    return std::make_unique<PayloadOf>(value);
  }
  P value;
};
}  // namespace detail

/// An error: a code, an optional message, where it was made, a chain of
/// context frames added on the way up (each with where it was added), and
/// optionally the error it wraps (its cause). One pointer wide.
class Error {
 public:
  /// A bare code: no allocation, no message, no location.
  // NOLINTNEXTLINE(google-explicit-constructor): Errc -> Error is the point.
  Error(Errc code) noexcept : bits_((static_cast<std::uintptr_t>(code) << 1U) | 1U) {}

  /// A code with a message and the location it was made at.
  Error(Errc code, std::string message, SourceLocation where = ::keel::SourceLocation::current())
      : bits_(reinterpret_cast<std::uintptr_t>(new Rep{code, std::move(message), where, {}, {}})) {
#if KEEL_ERROR_STACKTRACE
    record_stacktrace();
#endif
  }

  Error(const Error& other) : bits_(other.bits_) {
    if (const Rep* r = other.rep()) bits_ = reinterpret_cast<std::uintptr_t>(clone(*r));
  }
  Error(Error&& other) noexcept : bits_(other.bits_) {
    other.bits_ = kMovedFrom;
  }
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
  ~Error() {
    destroy();
  }

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
    return message_view();
  }
  [[nodiscard]] std::string message() const&& {
    return std::string(message_view());
  }
  /// Where the error was made; a default (empty) location for a bare code.
  [[nodiscard]] SourceLocation where() const noexcept {
    if (const Rep* r = rep()) return r->where;
    return {};
  }
  /// Context frames, outermost (added last) first. Views into this Error; on
  /// a temporary Error, owning copies.
  [[nodiscard]] std::vector<std::string_view> contexts() const& KEEL_LIFETIMEBOUND {
    std::vector<std::string_view> out;
    if (const Rep* r = rep()) {
      out.reserve(r->context.size());
      for (auto it = r->context.rbegin(); it != r->context.rend(); ++it) out.emplace_back(it->text);
    }
    return out;
  }
  [[nodiscard]] std::vector<std::string> contexts() const&& {
    std::vector<std::string> out;
    for (std::string_view v : contexts()) out.emplace_back(v);
    return out;
  }
  /// Where each context frame was added, in contexts()' order (a default
  /// location for a frame added without one).
  [[nodiscard]] std::vector<SourceLocation> context_locations() const {
    std::vector<SourceLocation> out;
    if (const Rep* r = rep()) {
      for (auto it = r->context.rbegin(); it != r->context.rend(); ++it) out.push_back(it->where);
    }
    return out;
  }
  /// Every message of the chain, outermost first, the way anyhow's chain()
  /// iterates: this error's contexts and message (omitted when empty), then
  /// its cause's, down to the root. Views into this Error; on a temporary
  /// Error, owning copies.
  [[nodiscard]] std::vector<std::string_view> chain() const& KEEL_LIFETIMEBOUND {
    std::vector<std::string_view> out;
    for (const Error* e = this; e != nullptr; e = e->cause()) {
      for (std::string_view c : e->contexts()) out.push_back(c);
      if (auto m = e->message_view(); !m.empty()) out.push_back(m);
    }
    return out;
  }
  [[nodiscard]] std::vector<std::string> chain() const&& {
    std::vector<std::string> out;
    for (std::string_view v : chain()) out.emplace_back(v);
    return out;
  }

  /// The error this one wraps (see wrap()), or null.
  [[nodiscard]] const Error* cause() const noexcept KEEL_LIFETIMEBOUND {
    if (const Rep* r = rep()) return r->cause.get();
    return nullptr;
  }
  /// The kind of the innermost cause: what went wrong first. code() for an
  /// error that wraps nothing.
  [[nodiscard]] Errc root_code() const noexcept {
    const Error* e = this;
    while (const Error* c = e->cause()) e = c;
    return e->code();
  }
  /// Whether this error or any cause is of kind `c`.
  [[nodiscard]] bool has(Errc c) const noexcept {
    for (const Error* e = this; e != nullptr; e = e->cause()) {
      if (e->code() == c) return true;
    }
    return false;
  }
  /// A new error of another kind that keeps this one as its cause, for a
  /// layer that re-classifies what it got (a missing row that means a broken
  /// invariant): `return std::move(e).wrap(Errc::internal, "user table out of
  /// sync");` The kind callers see is the new one; root_code() and has() still
  /// find the original, and `{:v}` prints it under "Caused by:".
  [[nodiscard]] Error wrap(Errc kind, std::string message = {},
                           SourceLocation where = ::keel::SourceLocation::current()) && {
    Error outer(kind, std::move(message), where);
    outer.mut().cause = std::make_unique<Error>(std::move(*this));
    return outer;
  }

  /// Attaches a small typed value a caller can act on (a retry-after
  /// duration, SQLite's extended code, an HTTP status, a SQLSTATE), read back
  /// with payload<P>(). One value per type: attaching another P replaces it.
  /// Kept through context(), copies and wrap() (the cause keeps its own);
  /// not compared by ==. In JSON where the type is registered (see
  /// keel::register_json_payload in <keel/json.hpp>).
  template <class P>
  Error& attach(P value) & {
    static_assert(std::is_copy_constructible_v<P> && !std::is_reference_v<P>,
                  "a payload is a copyable value");
    auto made = std::make_unique<detail::PayloadOf<P>>(std::move(value));
    auto& list = mut().payloads;
    for (auto& p : list) {
      if (p->type() == &detail::payload_type_tag<P>) {
        p = std::move(made);
        return *this;
      }
    }
    list.push_back(std::move(made));
    return *this;
  }
  template <class P>
  Error&& attach(P value) && {
    return std::move(attach(std::move(value)));
  }
  /// The payload of type P on this error or, failing that, the nearest cause
  /// that has one; null when none does.
  template <class P>
  [[nodiscard]] const P* payload() const noexcept KEEL_LIFETIMEBOUND {
    for (const Error* e = this; e != nullptr; e = e->cause()) {
      if (const Rep* r = e->rep()) {
        for (const auto& p : r->payloads) {
          if (p->type() == &detail::payload_type_tag<P>) return static_cast<const P*>(p->get());
        }
      }
    }
    return nullptr;
  }
  /// Calls f(type, value) for each payload of this error (not its causes):
  /// `type` is the address that identifies the payload's type. For
  /// serialisers; payload<P>() is the way to read one.
  template <class F>
  void for_each_payload(F&& f) const {
    if (const Rep* r = rep()) {
      for (const auto& p : r->payloads) f(p->type(), p->get());
    }
  }

  [[nodiscard]] bool is_transient() const noexcept {
    return keel::is_transient(code());
  }
  /// The HTTP status of the kind; keel::http_status(e) in <keel/json.hpp> is
  /// the documented spelling, this one stays for existing code.
  [[nodiscard]] int http_status() const noexcept {
    return keel::http_status(code());
  }
  [[nodiscard]] std::error_code error_code() const noexcept {
    return make_error_code(code());
  }
  // NOLINTNEXTLINE(google-explicit-constructor): an Error converts to its error_code.
  operator std::error_code() const noexcept {
    return error_code();
  }

  /// Adds a context frame ("while doing what") and records where it was
  /// added; an empty string adds nothing. On std::bad_alloc the Error is
  /// unchanged.
  Error& context(std::string what, SourceLocation where = ::keel::SourceLocation::current()) & {
    if (!what.empty()) mut().context.push_back(Frame{std::move(what), where});
    return *this;
  }
  Error&& context(std::string what, SourceLocation where = ::keel::SourceLocation::current()) && {
    return std::move(context(std::move(what), where));
  }

  /// Same kind, message, context and cause (locations are not compared).
  friend bool operator==(const Error& a, const Error& b) noexcept {
    if (a.code() != b.code() || a.message_view() != b.message_view()) return false;
    const Rep* ra = a.rep();
    const Rep* rb = b.rep();
    const std::size_t na = ra ? ra->context.size() : 0;
    const std::size_t nb = rb ? rb->context.size() : 0;
    if (na != nb) return false;
    for (std::size_t i = 0; i < na; ++i) {
      if (ra->context[i].text != rb->context[i].text) return false;
    }
    const Error* ca = a.cause();
    const Error* cb = b.cause();
    if ((ca == nullptr) != (cb == nullptr)) return false;
    return ca == nullptr || *ca == *cb;
  }
  friend bool operator==(const Error& a, Errc b) noexcept {
    return a.code() == b;
  }

  /// One line: "outer context: inner context: CODE: message", then the
  /// cause's own line after ": ". A context frame equal to what follows it is
  /// written once.
  [[nodiscard]] std::string to_string() const;

 private:
  struct Frame {
    std::string text;
    SourceLocation where;
  };
  struct Rep {
    Errc code;
    std::string message;
    SourceLocation where;
    std::vector<Frame> context;    // innermost first
    std::unique_ptr<Error> cause;  // the wrapped error, if any
    std::vector<std::unique_ptr<detail::PayloadBase>> payloads{};
  };
  static_assert(alignof(Rep) >= 2, "the low bit tags inline codes");
  // A moved-from Error reads as Errc::internal with no message.
  static constexpr std::uintptr_t kMovedFrom = (static_cast<std::uintptr_t>(Errc::internal) << 1U) | 1U;

  static Rep* clone(const Rep& r) {
    auto cause = r.cause ? std::make_unique<Error>(*r.cause) : nullptr;
    std::vector<std::unique_ptr<detail::PayloadBase>> payloads;
    payloads.reserve(r.payloads.size());
    for (const auto& p : r.payloads) payloads.push_back(p->clone());
    return new Rep{r.code, r.message, r.where, r.context, std::move(cause), std::move(payloads)};
  }
  [[nodiscard]] const Rep* rep() const noexcept {
    return (bits_ & 1U) != 0 ? nullptr : reinterpret_cast<const Rep*>(bits_);
  }
  [[nodiscard]] std::string_view message_view() const noexcept {
    if (const Rep* r = rep()) return r->message;
    return {};
  }
  Rep& mut() {
    if ((bits_ & 1U) != 0) {
      bits_ = reinterpret_cast<std::uintptr_t>(new Rep{code(), {}, {}, {}, {}});
    }
    return *reinterpret_cast<Rep*>(bits_);
  }
#if KEEL_ERROR_STACKTRACE
  // Captures the stack (addresses only) into the record; an allocation
  // failure leaves the error without one.
#if defined(__GNUC__) || defined(__clang__)
  [[gnu::noinline]]
#endif
  void
  record_stacktrace() noexcept {
#if KEEL_HAS_EXCEPTIONS
    try {
      attach(Stacktrace{boost::stacktrace::stacktrace(1, static_cast<std::size_t>(-1))});
    } catch (...) {
    }
#else
    attach(Stacktrace{boost::stacktrace::stacktrace(1, static_cast<std::size_t>(-1))});
#endif
  }
#endif
  // The bare-kind path stays a test and a branch; freeing a record is out of
  // line so it does not weigh on the callers' inlining.
  void destroy() noexcept {
    if ((bits_ & 1U) == 0) free_rep(reinterpret_cast<Rep*>(bits_));
  }
#if defined(__GNUC__) || defined(__clang__)
  [[gnu::noinline, gnu::cold]]
#endif
  static void
  free_rep(Rep* r) noexcept {
    delete r;
  }

  std::uintptr_t bits_;
};

static_assert(sizeof(Error) == sizeof(void*), "keel::Error is one word");

#if KEEL_ERROR_STACKTRACE
/// The call stack where the innermost error of e's chain that has one was
/// made (where things first went wrong), or null: a bare kind records none.
/// (KEEL_ERROR_STACKTRACE=1 only.)
[[nodiscard]] inline const boost::stacktrace::stacktrace* stacktrace(const Error& e) noexcept {
  const boost::stacktrace::stacktrace* found = nullptr;
  for (const Error* level = &e; level != nullptr; level = level->cause()) {
    level->for_each_payload([&](const void* type, const void* value) {
      if (type == &detail::payload_type_tag<Stacktrace>)
        found = &static_cast<const Stacktrace*>(value)->frames;
    });
  }
  return found;
}
#endif

/// errno (or e) as an Error of its kind (keel::errc_from_errno's table) with
/// the OS text and the caller's location, for the C APIs that report through
/// errno: `if (fd < 0) return keel::from_errno().context("opening " + path);`
/// Read errno before anything else can change it (the default argument does).
[[nodiscard]] inline Error from_errno(int e = errno,
                                      SourceLocation where = ::keel::SourceLocation::current()) {
  return Error::from(std::error_code(e, std::system_category()), where);
}

}  // namespace keel

/// `{}` gives one line, outermost context first: "ctx: CODE: message", a
/// wrapped cause following after ": ".
/// `{:v}` gives the logical stack, anyhow's way: the outermost layer, then
/// "Caused by:" and every further layer (each context frame, each error's
/// "CODE: message"), numbered, each with where it was added or made:
///
///     handling GET /users/7 [at api.cpp:55]
///
///     Caused by:
///         0: INTERNAL: user table out of sync [at users.cpp:40]
///         1: NOT_FOUND: no user 7 [at db.cpp:12]
///
/// An error with no context and no cause is one line: "CODE: message [at
/// file:line]".
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
    if (!verbose) {
      for (const keel::Error* level = &e; level != nullptr; level = level->cause()) {
        if (level != &e) out = fmt::format_to(out, ": ");
        const auto frames = level->contexts();
        const auto msg = level->message();
        for (std::size_t i = 0; i < frames.size(); ++i) {
          // Never repeat the cause's text: skip a frame equal to the next one.
          const std::string_view next = i + 1 < frames.size() ? frames[i + 1] : msg;
          if (frames[i] == next) continue;
          out = fmt::format_to(out, "{}: ", frames[i]);
        }
        out = fmt::format_to(out, "{}", keel::to_string(level->code()));
        if (!msg.empty()) out = fmt::format_to(out, ": {}", msg);
      }
      return out;
    }
    int layer = -1;  // -1: the first line
    const auto line = [&](auto&& write_text, keel::SourceLocation w) {
      if (layer == 0) out = fmt::format_to(out, "\n\nCaused by:");
      if (layer >= 0) out = fmt::format_to(out, "\n    {}: ", layer);
      write_text();
      if (w.line() != 0) out = fmt::format_to(out, " [at {}:{}]", w.file_name(), w.line());
      ++layer;
    };
    for (const keel::Error* level = &e; level != nullptr; level = level->cause()) {
      const auto frames = level->contexts();
      const auto where = level->context_locations();
      const auto msg = level->message();
      for (std::size_t i = 0; i < frames.size(); ++i) {
        const std::string_view next = i + 1 < frames.size() ? frames[i + 1] : msg;
        if (frames[i] == next) continue;
        line([&] { out = fmt::format_to(out, "{}", frames[i]); }, where[i]);
      }
      line(
          [&] {
            out = fmt::format_to(out, "{}", keel::to_string(level->code()));
            if (!msg.empty()) out = fmt::format_to(out, ": {}", msg);
          },
          level->where());
    }
#if KEEL_ERROR_STACKTRACE
    if (const auto* trace = keel::stacktrace(e); trace != nullptr && !trace->empty()) {
      out = fmt::format_to(out, "\n\nStack trace:\n{}", boost::stacktrace::to_string(*trace));
    }
#endif
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

// std::format, where the standard library has it (libstdc++ 13, libc++ 17,
// MSVC): std::format("{}", e) and "{:v}" give what fmt gives, and an Errc
// formats as its code. libstdc++ 12 has no <format>, so there this is
// compiled out and fmt is the way.
#if defined(__has_include)
#if __has_include(<format>)
#include <version>
#if defined(__cpp_lib_format) && __cpp_lib_format >= 201907L
#include <format>
#define KEEL_HAS_STD_FORMAT 1
#endif
#endif
#endif
#ifndef KEEL_HAS_STD_FORMAT
#define KEEL_HAS_STD_FORMAT 0
#endif

#if KEEL_HAS_STD_FORMAT
template <>
struct std::formatter<keel::Error, char> {
  bool verbose = false;
  constexpr auto parse(std::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it == 'v') {
      verbose = true;
      ++it;
    }
    if (it != ctx.end() && *it != '}') {
#if KEEL_HAS_EXCEPTIONS
      throw std::format_error("keel::Error takes {} or {:v}");
#else
      std::abort();
#endif
    }
    return it;
  }
  template <class FormatContext>
  auto format(const keel::Error& e, FormatContext& ctx) const -> decltype(ctx.out()) {
    const std::string text = verbose ? fmt::format("{:v}", e) : fmt::format("{}", e);
    auto out = ctx.out();
    for (const char ch : text) *out++ = ch;
    return out;
  }
};

template <>
struct std::formatter<keel::Errc, char> : std::formatter<std::string_view, char> {
  template <class FormatContext>
  auto format(keel::Errc c, FormatContext& ctx) const -> decltype(ctx.out()) {
    return std::formatter<std::string_view, char>::format(keel::to_string(c), ctx);
  }
};
#endif
