// A user of every component: find_package(keel COMPONENTS keel), <keel/keel.hpp>.
#include <keel/keel.hpp>

#include <fmt/format.h>

int main() {
  keel::Error e = keel::Error(keel::Errc::not_found, "no such user").context("loading profile");
  const auto j = keel::to_json(e);
  if (j.at("status").get<int>() != 404) return 1;
  auto back = keel::error_from_json(j);
  if (!back || !(*back == e)) return 1;
  keel::log::set_verbosity(0);
  fmt::print("keel all-components consumer: {}\n", j.dump());
  return 0;
}
