// keel-linecount FILE...: counts newlines like `wc -l`, with keel::simd::count.
//
//     keel-linecount access.log error.log     # one line per file, then a total
//     cat big.log | keel-linecount            # no FILE, or "-": standard input
//
// Regular files are mapped (no copy into a buffer); pipes and terminals are
// read in 1 MiB chunks. A file that cannot be opened is reported on stderr
// and the exit status is 1, the other files are still counted (as wc does).
#include <keel/simd.hpp>

#include "mapped_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Count {
  std::size_t lines = 0;
  bool ok = true;
  std::string error;
};

Count count_stream(int fd) {
  Count c;
  std::vector<char> buf(std::size_t{1} << 20);
  for (;;) {
    const ssize_t got = ::read(fd, buf.data(), buf.size());
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      c.ok = false;
      c.error = std::strerror(errno);
      break;
    }
    c.lines += keel::simd::count(std::string_view(buf.data(), static_cast<std::size_t>(got)), '\n');
  }
  return c;
}

Count count_fd(int fd) {
  Count c;
  if (keel_examples::scan_mapped(fd,
                                 [&](std::string_view bytes) { c.lines = keel::simd::count(bytes, '\n'); })) {
    return c;
  }
  return count_stream(fd);  // pipes, terminals, /proc files reporting size 0
}

Count count_path(const std::string& path) {
  if (path == "-") return count_fd(STDIN_FILENO);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Count{0, false, std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Count{0, false, "Is a directory"};
  }
  Count c = count_fd(fd);
  ::close(fd);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths(argv + 1, argv + argc);
  if (!paths.empty() && (paths[0] == "-h" || paths[0] == "--help")) {
    fmt::print("usage: keel-linecount [FILE...]\ncounts newlines like `wc -l`; no FILE or - reads stdin\n");
    return 0;
  }
  const bool named = !paths.empty();
  if (!named) paths.emplace_back("-");
  std::vector<std::size_t> counts;
  std::vector<const std::string*> shown;
  std::size_t total = 0;
  int status = 0;
  for (const std::string& p : paths) {
    const Count c = count_path(p);
    if (!c.ok) {
      fmt::print(stderr, "keel-linecount: {}: {}\n", p, c.error);
      status = 1;
      continue;
    }
    counts.push_back(c.lines);
    shown.push_back(&p);
    total += c.lines;
  }
  const std::size_t width = paths.size() > 1 ? fmt::formatted_size("{}", total) : 1;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (named) {
      fmt::print("{:>{}} {}\n", counts[i], width, *shown[i]);
    } else {
      fmt::print("{}\n", counts[i]);
    }
  }
  if (paths.size() > 1) fmt::print("{:>{}} total\n", total, width);
  return status;
}
