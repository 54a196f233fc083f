// keel-vault: an encrypted credential store on the command line
// (keel::crypto::CredentialStore over a keel::sqlite pool).
//
//   keel-vault --db FILE put NAME      reads the secret from stdin (bytes as given)
//   keel-vault --db FILE get NAME      writes the secret to stdout
//   keel-vault --db FILE rm NAME
//   keel-vault --db FILE ls            one name per line
//   keel-vault --db FILE rotate        re-encrypts everything under a new password
//
// The password comes from KEEL_VAULT_PASSWORD or a prompt on the terminal
// (no echo); rotate's new one from KEEL_VAULT_NEW_PASSWORD or a prompt
// (asked twice). `put` creates the vault when FILE holds none.
// --iterations N sets the PBKDF2 count for a new vault and for rotate
// (default 600000, minimum 100000). -v / KEEL_LOG for logs on stderr.
// Every failure prints one line on stderr and exits non-zero:
// 1 error (wrong password: AUTH_FAILED, missing name: NOT_FOUND, ...), 2 usage.
#include <keel/crypto.hpp>
#include <keel/vault.hpp>
#include <keel/log.hpp>
#include <keel/sqlite.hpp>

#include <fmt/format.h>
#include <termios.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kc = keel::crypto;

namespace {

constexpr std::string_view kUsage =
    "usage: keel-vault --db FILE [--iterations N] [-v] put|get|rm|ls|rotate [NAME]\n"
    "  password: KEEL_VAULT_PASSWORD or a prompt; rotate's new one: KEEL_VAULT_NEW_PASSWORD or a prompt\n";

// A std::string wiped when it goes.
struct Password {
  std::string text;
  Password() = default;
  explicit Password(std::string t) : text(std::move(t)) {}
  Password(const Password&) = delete;
  Password& operator=(const Password&) = delete;
  Password(Password&&) = default;
  Password& operator=(Password&&) = default;
  ~Password() {
    if (!text.empty()) OPENSSL_cleanse(text.data(), text.size());
  }
};

// Reads a line from the terminal with echo off.
keel::Result<Password> prompt(const char* what) {
  FILE* tty = std::fopen("/dev/tty", "r+");
  if (tty == nullptr) {
    return keel::fail(keel::Errc::invalid_argument,
                      "no terminal to ask for the {}; set the environment variable", what);
  }
  const int fd = ::fileno(tty);
  termios old{};
  const bool have_termios = ::tcgetattr(fd, &old) == 0;
  if (have_termios) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::fprintf(tty, "%s: ", what);
  std::fflush(tty);
  Password pw;
  for (int c = std::fgetc(tty); c != EOF && c != '\n'; c = std::fgetc(tty))
    pw.text.push_back(static_cast<char>(c));
  if (have_termios) ::tcsetattr(fd, TCSAFLUSH, &old);
  std::fputc('\n', tty);
  std::fclose(tty);
  return pw;
}

keel::Result<Password> password_from(const char* env, const char* what, bool confirm) {
  if (const char* v = std::getenv(env); v != nullptr) return Password(v);
  KEEL_TRY_ASSIGN(auto first, prompt(what));
  if (confirm) {
    KEEL_TRY_ASSIGN(auto second, prompt("again"));
    if (first.text != second.text)
      return keel::fail(keel::Errc::invalid_argument, "the passwords do not match");
  }
  return first;
}

struct Args {
  std::string db;
  std::string command;
  std::string name;
  std::uint32_t iterations = kc::kDefaultIterations;
};

keel::Result<Args> parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string_view> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--db" && i + 1 < argc) {
      a.db = argv[++i];
    } else if (arg == "--iterations" && i + 1 < argc) {
      const std::string_view v = argv[++i];
      const auto r = std::from_chars(v.data(), v.data() + v.size(), a.iterations);
      if (r.ec != std::errc() || r.ptr != v.data() + v.size()) {
        return keel::fail(keel::Errc::invalid_argument, "--iterations wants a number, got \"{}\"", v);
      }
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
  const bool no_name = a.command == "ls" || a.command == "rotate";
  if (!wants_name && !no_name)
    return keel::fail(keel::Errc::invalid_argument, "unknown command \"{}\"", a.command);
  if (wants_name && positional.size() != 2) {
    return keel::fail(keel::Errc::invalid_argument, "{} takes one NAME", a.command);
  }
  if (no_name && positional.size() != 1)
    return keel::fail(keel::Errc::invalid_argument, "{} takes no NAME", a.command);
  if (wants_name) a.name = positional[1];
  return a;
}

keel::Result<void> run(const Args& a) {
  const bool creating = a.command == "put";
  if (!creating && ::access(a.db.c_str(), F_OK) != 0) {
    return keel::fail(keel::Errc::not_found, "no vault at {}", a.db);
  }
  keel::sqlite::PoolConfig pc;
  pc.path = a.db;
  pc.min_idle = 1;
  pc.max_size = 2;
  KEEL_TRY_ASSIGN(auto pool, keel::sqlite::Pool::open(pc).context(fmt::format("opening {}", a.db)));
  KEEL_TRY_ASSIGN(auto password, password_from("KEEL_VAULT_PASSWORD", "vault password", false));
  kc::StoreConfig cfg;
  cfg.iterations = a.iterations;
  // The store's own warnings (weak stored KDF parameters, a key nearing its
  // seal limit) are always worth showing.
  auto store_log = std::make_shared<spdlog::logger>("keel-vault-store", keel::log::logger()->sinks().begin(),
                                                    keel::log::logger()->sinks().end());
  store_log->set_level(spdlog::level::warn);
  cfg.logger = std::move(store_log);
  auto opened = creating ? kc::CredentialStore::open_or_create(pool, password.text, cfg)
                         : kc::CredentialStore::open(pool, password.text, cfg);
  if (!opened) return std::move(opened).error().context(a.db);
  auto& store = *opened;

  if (a.command == "put") {
    std::string secret{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    auto r = store.put(a.name, secret);
    if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
    return r;
  }
  if (a.command == "get") {
    KEEL_TRY_ASSIGN(auto secret, store.get(a.name));
    std::fwrite(secret.view().data(), 1, secret.size(), stdout);
    if (std::fflush(stdout) != 0) return keel::fail(keel::Errc::io, "writing to stdout failed");
    return {};
  }
  if (a.command == "rm") return store.remove(a.name);
  if (a.command == "ls") {
    KEEL_TRY_ASSIGN(auto names, store.list());
    for (const auto& n : names) fmt::print("{}\n", n);
    return {};
  }
  // rotate
  KEEL_TRY_ASSIGN(auto fresh, password_from("KEEL_VAULT_NEW_PASSWORD", "new vault password", true));
  return store.rotate(fresh.text);
}

}  // namespace

int main(int argc, char** argv) {
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
