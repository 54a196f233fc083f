// keel-vault: an encrypted credential store on the command line
// (keel::crypto::CredentialStore over a keel::sqlite pool).
//
//   keel-vault --db FILE put NAME      reads the secret from stdin (bytes as given)
//   keel-vault --db FILE get NAME      writes the secret to stdout
//   keel-vault --db FILE rm NAME
//   keel-vault --db FILE ls            one name per line
//   keel-vault --db FILE rotate        re-encrypts everything under a new password
//   keel-vault --db FILE info          format, KDF and its cost, records, seals (no password)
//
// The password comes from KEEL_VAULT_PASSWORD or a prompt on the terminal
// (echo off; asked twice when `put` creates the vault); rotate's new one from
// KEEL_VAULT_NEW_PASSWORD or a prompt (asked twice). An empty password is
// refused. A password read from the environment is wiped from this process's
// environment at once, but the environment of the shell that set it, and of
// anything else it started, still holds it: prefer the prompt.
// --kdf argon2id|pbkdf2 picks the KDF for a new vault and for rotate (default
// argon2id); --iterations N sets PBKDF2's count (default 600000, minimum
// 100000). -v / KEEL_LOG for logs on stderr.
//
// Passwords and secrets live only in wiped, fixed-capacity buffers (never
// grown, so no partial copies are left in freed memory), are read and written
// with read(2)/write(2) rather than through stdio's buffers, and the process
// makes no core dumps (RLIMIT_CORE 0, not dumpable). Ctrl-C at a prompt puts
// the terminal back as it was.
//
// Every failure prints one line on stderr and exits non-zero:
// 1 error (wrong password: AUTH_FAILED, missing name: NOT_FOUND, damaged
// vault: DATA_LOSS, ...), 2 usage.
#include <keel/crypto.hpp>
#include <keel/log.hpp>
#include <keel/sqlite.hpp>
#include <keel/vault.hpp>

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kc = keel::crypto;

namespace {

constexpr std::string_view kUsage =
    "usage: keel-vault --db FILE [--kdf argon2id|pbkdf2] [--iterations N] [-v] "
    "put|get|rm|ls|rotate|info [NAME]\n"
    "  password: KEEL_VAULT_PASSWORD or a prompt; rotate's new one: KEEL_VAULT_NEW_PASSWORD or a prompt\n";

constexpr std::size_t kMaxPassword = 1024;
constexpr std::size_t kMaxSecret = std::size_t{1} << 20U;  // 1 MiB

// The terminal a prompt changed, for the signal handler to put back.
volatile sig_atomic_t g_tty_fd = -1;
termios g_tty_saved{};

extern "C" void restore_tty_and_die(int sig) {
  // Only async-signal-safe calls here.
  if (g_tty_fd >= 0) ::tcsetattr(g_tty_fd, TCSAFLUSH, &g_tty_saved);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Turns echo off on a terminal for its lifetime, and back on when it ends,
// even by Ctrl-C (SIGINT), SIGTERM, SIGHUP or SIGQUIT.
class EchoOff {
 public:
  explicit EchoOff(int fd) : fd_(fd) {
    if (::tcgetattr(fd, &saved_) != 0) return;
    g_tty_saved = saved_;
    g_tty_fd = fd;
    struct sigaction sa {};
    sa.sa_handler = restore_tty_and_die;
    sigemptyset(&sa.sa_mask);
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
    termios quiet = saved_;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= static_cast<tcflag_t>(ECHONL);
    active_ = ::tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;
  ~EchoOff() {
    if (g_tty_fd < 0) return;
    ::tcsetattr(fd_, TCSAFLUSH, &saved_);
    g_tty_fd = -1;
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }
  [[nodiscard]] bool active() const noexcept { return active_; }

 private:
  static constexpr std::array<int, 4> kSignals = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  int fd_;
  termios saved_{};
  std::array<struct sigaction, 4> old_{};
  bool active_ = false;
};

// Reads a line from the terminal with echo off, into a wiped buffer.
keel::Result<kc::SecretBytes> prompt_once(const char* what) {
  const int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return keel::fail(keel::Errc::invalid_argument,
                      "no terminal to ask for the {}; set the environment variable", what);
  }
  KEEL_TRY_ASSIGN(auto pw, kc::SecretBytes::with_capacity(kMaxPassword));
  bool too_long = false;
  {
    const EchoOff quiet(fd);
    const std::string ask = fmt::format("{}: ", what);
    (void)!::write(fd, ask.data(), ask.size());
    for (;;) {
      unsigned char c = 0;
      const ssize_t n = ::read(fd, &c, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || c == '\n') break;
      if (!pw.try_push_back(c)) too_long = true;
    }
    if (!quiet.active()) (void)!::write(fd, "\n", 1);
  }
  ::close(fd);
  if (too_long)
    return keel::fail(keel::Errc::invalid_argument, "the password is longer than {} bytes", kMaxPassword);
  return pw;
}

keel::Result<kc::SecretBytes> prompt(const char* what, bool confirm) {
  KEEL_TRY_ASSIGN(auto first, prompt_once(what));
  if (first.empty()) return keel::fail(keel::Errc::invalid_argument, "an empty password is refused");
  if (confirm) {
    KEEL_TRY_ASSIGN(auto second, prompt_once("the same again"));
    if (!(first == second)) return keel::fail(keel::Errc::invalid_argument, "the passwords do not match");
  }
  return first;
}

// The password in environment variable `env` (then wiped and removed from
// this process's environment), or nullopt when it is not set.
keel::Result<std::optional<kc::SecretBytes>> password_from_env(const char* env) {
  char* v = std::getenv(env);
  if (v == nullptr) return std::optional<kc::SecretBytes>{};
  const std::size_t n = std::strlen(v);
  KEEL_TRY_ASSIGN(auto pw, kc::SecretBytes::with_capacity(kMaxPassword));
  const bool fits = pw.try_append({reinterpret_cast<const std::uint8_t*>(v), n});
  OPENSSL_cleanse(v, n);  // the copy in the environment block (and /proc/PID/environ)
  ::unsetenv(env);
  if (!fits) return keel::fail(keel::Errc::invalid_argument, "{} is longer than {} bytes", env, kMaxPassword);
  if (pw.empty())
    return keel::fail(keel::Errc::invalid_argument, "{} is empty; an empty password is refused", env);
  return std::optional<kc::SecretBytes>(std::move(pw));
}

keel::Result<kc::SecretBytes> password_from(const char* env, const char* what, bool confirm) {
  KEEL_TRY_ASSIGN(auto from_env, password_from_env(env));
  if (from_env) return std::move(*from_env);
  return prompt(what, confirm);
}

// All of stdin, into a wiped buffer that never grows past kMaxSecret.
keel::Result<kc::SecretBytes> read_secret() {
  KEEL_TRY_ASSIGN(auto secret, kc::SecretBytes::with_capacity(kMaxSecret));
  std::array<std::uint8_t, 4096> chunk{};
  keel::Result<void> status;
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = keel::fail(keel::Errc::io, "reading stdin: {}", std::strerror(errno));
      break;
    }
    if (n == 0) break;
    if (!secret.try_append(std::span(chunk.data(), static_cast<std::size_t>(n)))) {
      status = keel::fail(keel::Errc::invalid_argument, "the secret is larger than {} bytes", kMaxSecret);
      break;
    }
  }
  OPENSSL_cleanse(chunk.data(), chunk.size());
  if (!status) return std::move(status).error();
  return secret;
}

keel::Result<void> write_all(int fd, std::span<const std::uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return keel::fail(keel::Errc::io, "writing to stdout: {}", std::strerror(errno));
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return {};
}

// No core file and no ptrace by other users' processes: a crash dump would
// hold the key and whatever secret was in memory.
void no_core_dumps() {
  const rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

struct Args {
  std::string db;
  std::string command;
  std::string name;
  kc::Kdf kdf = kc::Kdf::argon2id;
  std::uint32_t iterations = kc::kDefaultIterations;
  bool iterations_set = false;
};

keel::Result<Args> parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string_view> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--db" && i + 1 < argc) {
      a.db = argv[++i];
    } else if (arg == "--kdf" && i + 1 < argc) {
      KEEL_TRY_ASSIGN(a.kdf, kc::parse_kdf(argv[++i]));
    } else if (arg == "--iterations" && i + 1 < argc) {
      const std::string_view v = argv[++i];
      const auto r = std::from_chars(v.data(), v.data() + v.size(), a.iterations);
      if (r.ec != std::errc() || r.ptr != v.data() + v.size()) {
        return keel::fail(keel::Errc::invalid_argument, "--iterations wants a number, got \"{}\"", v);
      }
      a.iterations_set = true;
    } else if (arg.starts_with("-v") && arg.find_first_not_of('v', 1) == std::string_view::npos) {
      // verbosity, counted by keel::log
    } else if (arg.starts_with("-")) {
      return keel::fail(keel::Errc::invalid_argument, "unknown option {}", arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (a.db.empty()) return keel::fail(keel::Errc::invalid_argument, "--db FILE is required");
  if (positional.empty()) return keel::fail(keel::Errc::invalid_argument, "no command given");
  a.command = positional[0];
  const bool wants_name = a.command == "put" || a.command == "get" || a.command == "rm";
  const bool no_name = a.command == "ls" || a.command == "rotate" || a.command == "info";
  if (!wants_name && !no_name)
    return keel::fail(keel::Errc::invalid_argument, "unknown command \"{}\"", a.command);
  if (wants_name && positional.size() != 2) {
    return keel::fail(keel::Errc::invalid_argument, "{} takes one NAME", a.command);
  }
  if (no_name && positional.size() != 1)
    return keel::fail(keel::Errc::invalid_argument, "{} takes no NAME", a.command);
  if (a.iterations_set && a.kdf != kc::Kdf::pbkdf2) {
    return keel::fail(keel::Errc::invalid_argument, "--iterations goes with --kdf pbkdf2");
  }
  if (wants_name) a.name = positional[1];
  return a;
}

keel::Result<void> print_info(const keel::sqlite::Pool& pool) {
  KEEL_TRY_ASSIGN(auto info, kc::CredentialStore::info(pool));
  fmt::print("format: {}\nkdf: {}\nrecords: {}\nseals: {}\nkey epoch: {}\ncreated: {}\nrotated: {}\n",
             info.format, kc::describe(info.kdf), info.records, info.seal_count, info.key_epoch,
             info.created_at, info.rotated_at.empty() ? "never" : info.rotated_at);
  return {};
}

keel::Result<void> run(const Args& a) {
  const bool may_create = a.command == "put";
  if (!may_create && ::access(a.db.c_str(), F_OK) != 0) {
    return keel::fail(keel::Errc::not_found, "no vault at {}", a.db);
  }
  KEEL_TRY_ASSIGN(auto pool, keel::sqlite::Pool::open(kc::CredentialStore::pool_config(a.db))
                                 .context(fmt::format("opening {}", a.db)));
  if (a.command == "info") return print_info(pool).context(a.db);
  KEEL_TRY_ASSIGN(bool exists, kc::CredentialStore::exists(pool).context(a.db));
  if (!exists && !may_create) return keel::fail(keel::Errc::not_found, "no vault in {}", a.db);

  kc::StoreConfig cfg;
  cfg.kdf = a.kdf == kc::Kdf::pbkdf2 ? kc::KdfParams::pbkdf2(a.iterations) : kc::KdfParams::argon2id();
  // The store's own warnings (weak stored KDF parameters, a key nearing its
  // seal limit, loosened file modes) are always worth showing.
  auto store_log = std::make_shared<spdlog::logger>("keel-vault-store", keel::log::logger()->sinks().begin(),
                                                    keel::log::logger()->sinks().end());
  store_log->set_level(spdlog::level::warn);
  cfg.logger = keel::log::adapt(std::move(store_log));

  // A new vault's password is asked twice: a typo would lock its owner out.
  KEEL_TRY_ASSIGN(auto password, password_from("KEEL_VAULT_PASSWORD", "vault password", !exists));
  auto opened = exists ? kc::CredentialStore::open(pool, password.view(), cfg)
                       : kc::CredentialStore::create(pool, password.view(), cfg);
  if (!opened) return std::move(opened).error().context(a.db);
  auto& store = *opened;

  if (a.command == "put") {
    KEEL_TRY_ASSIGN(auto secret, read_secret());
    return store.put(a.name, secret.expose_secret());
  }
  if (a.command == "get") {
    KEEL_TRY_ASSIGN(auto secret, store.get(a.name));
    return write_all(STDOUT_FILENO, secret.expose_secret());
  }
  if (a.command == "rm") return store.remove(a.name);
  if (a.command == "ls") {
    KEEL_TRY_ASSIGN(auto names, store.list());
    for (const auto& n : names) fmt::print("{}\n", n);
    return {};
  }
  // rotate
  KEEL_TRY_ASSIGN(auto fresh, password_from("KEEL_VAULT_NEW_PASSWORD", "new vault password", true));
  return store.rotate(fresh.view());
}

}  // namespace

int main(int argc, char** argv) {
  no_core_dumps();
  const int verbosity = keel::log::count_verbosity(argc, argv);
  auto lg = keel::log::setup(verbosity, "keel-vault");
  if (!lg) {
    fmt::print(stderr, "keel-vault: {}\n", lg.error());
    return 2;
  }
  // Failures are reported once, as the one-line error below: without -v or
  // KEEL_LOG, the pool's own warnings about them would only repeat it.
  if (verbosity == 0 && std::getenv("KEEL_LOG") == nullptr) (*lg)->set_level(spdlog::level::err);
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    }
  }
  auto args = parse_args(argc, argv);
  if (!args) {
    fmt::print(stderr, "keel-vault: {} (see --help)\n", args.error());
    return 2;
  }
  if (auto r = run(*args); !r) {
    fmt::print(stderr, "keel-vault: {}\n", r.error());
    return 1;
  }
  return 0;
}
