// keel-errors: an error made deep in a call chain, given context on the way
// up (anyhow's .context()), printed as one line and turned into the JSON
// error response an HTTP or IPC handler would send.
#include <keel/json.hpp>
#include <keel/result.hpp>

#include <fmt/format.h>

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

}  // namespace

int main() {
  fmt::print("{}\n", handle_get(1));
  fmt::print("{}\n", handle_get(42));
  return 0;
}
