// keel-errors: an error made deep in a call chain, given context on the way
// up (anyhow's .context()), printed as one line and turned into the JSON
// error response an HTTP or IPC handler would send; then an OS error on a
// file whose name is not UTF-8, re-kinded with its cause kept and printed as
// a logical stack ({:v}).
#include <keel/json.hpp>
#include <keel/result.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <string>

namespace {

struct User {
  int id;
  std::string name;
};

const std::map<int, User>& users() {
  static const std::map<int, User> db = {{1, {1, "ada"}}, {2, {2, "grace"}}};
  return db;
}

keel::Result<User> find_user(int id) {
  const auto it = users().find(id);
  if (it == users().end()) return keel::fail(keel::Errc::not_found, "no user with id {}", id);
  return it->second;
}

keel::Result<std::string> greeting(int id) {
  KEEL_TRY_ASSIGN(const User user, find_user(id).context("loading profile"));
  return fmt::format("hello, {}", user.name);
}

// A handler: the error's kind picks the status, the chain explains it.
std::string handle_get(int id) {
  auto body = greeting(id).context(fmt::format("handling GET /users/{}", id));
  if (!body) {
    const auto& err = body.error();
    fmt::print("log line: {}\n", err);
    return fmt::format("HTTP {} {}", err.http_status(), keel::to_json(err).dump());
  }
  return fmt::format("HTTP 200 {}", *body);
}

// errno through keel::from_errno: the kind follows the OS error (ENOENT is
// NOT_FOUND), the OS text and this line are kept.
keel::Result<std::string> read_avatar(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return keel::from_errno().context(fmt::format("opening {}", path));
  std::fclose(f);
  return std::string("avatar bytes");
}

// A missing avatar here means the store is broken: re-kind it as INTERNAL
// (status 500) and keep the NOT_FOUND underneath for the log.
std::string handle_avatar(int id) {
  // The name holds a byte that is not UTF-8, as file names may.
  auto body = read_avatar(fmt::format("/nonexistent/avatars/{}-\xff.png", id))
                  .wrap(keel::Errc::internal, "avatar store unreadable")
                  .context(fmt::format("handling GET /users/{}/avatar", id));
  if (!body) {
    const auto& err = body.error();
    fmt::print("log stack:\n{:v}\n", err);
    fmt::print("root kind: {}\n", err.root_code());
    return fmt::format("HTTP {} {}", err.http_status(), keel::to_json(err).dump());
  }
  return fmt::format("HTTP 200 {}", *body);
}

}  // namespace

int main() {
  fmt::print("{}\n", handle_get(1));
  fmt::print("{}\n", handle_get(42));
  fmt::print("{}\n", handle_avatar(7));
  return 0;
}
