// Shared by the tests that need the throwaway PostgreSQL cluster which ctest
// starts once per run (the postgres.cluster.start fixture, or by hand:
// tests/postgres_cluster.sh start DIR, then KEEL_PG_TEST_DIR=DIR).
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace keel_test {

/// Where the cluster's files are: its data, log and connection strings.
inline std::filesystem::path pg_cluster_dir() {
  if (const char* d = std::getenv("KEEL_PG_TEST_DIR")) return d;
  return std::filesystem::path(KEEL_TEST_BINARY_DIR) / "pgcluster";
}

/// A whole small file, without trailing newlines and spaces.
inline std::string read_text_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

/// The cluster's conninfo. A missing server is a failure, never a skip.
inline std::string pg_conninfo() {
  const auto f = pg_cluster_dir() / "conninfo";
  if (!std::filesystem::exists(f)) {
    FAIL("no PostgreSQL test server: " << f.string()
                                       << " is missing (ctest starts one through the postgres.cluster.start "
                                          "fixture; by hand: tests/postgres_cluster.sh start DIR and "
                                          "KEEL_PG_TEST_DIR=DIR)");
  }
  return read_text_file(f);
}

}  // namespace keel_test
