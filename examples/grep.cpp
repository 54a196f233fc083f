// keel-grep: fixed-string grep on keel::simd, printing what `grep -F` prints.
//
//     keel-grep -F error app.log                  # lines holding "error"
//     keel-grep -i -n -F timeout -F refused *.log # either word, any ASCII case,
//                                                 # with line numbers
//     keel-grep -c -F GET access.log              # number of matching lines
//
// Options: -i (ASCII case-insensitive, as grep in the C locale), -c (count
// matching lines per file), -n (prefix line numbers), -F PATTERN or
// -e PATTERN (repeatable; a PATTERN holding newlines is one pattern per
// line, as in grep). Without -F/-e the first operand is the pattern. With
// more than one FILE every line (or count) is prefixed with "FILE:"; no FILE
// or "-" reads standard input. Exit status: 0 when a line matched, 1 when
// none did, 2 on an error (a file that cannot be read), as grep.
//
// One pattern runs keel::simd::find (or find_icase); several run one
// MultiFinder. Matches are searched over the whole buffer, not line by line:
// the line around a match is found afterwards with rfind/find of '\n', and
// line numbers with count('\n'). Regular files are mapped whole with
// MAP_POPULATE, which measured faster than read() into one reused buffer
// (docs/simd.md); pipes are read into one reused buffer. Unlike grep, files
// holding NUL bytes are not reported as binary.
#include <keel/simd.hpp>

#include "mapped_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace ks = keel::simd;

struct Options {
  bool icase = false;
  bool count = false;
  bool number = false;
  std::vector<std::string> patterns;
  std::vector<std::string> files;
};

/// One pattern: find/find_icase; several: a MultiFinder.
class Searcher {
 public:
  Searcher(std::vector<std::string> patterns, bool icase) : patterns_(std::move(patterns)), icase_(icase) {
    if (patterns_.size() > 1)
      multi_.emplace(patterns_, icase ? ks::Case::ascii_insensitive : ks::Case::sensitive);
  }
  /// Start of the first match at or after `from`, or npos.
  [[nodiscard]] std::size_t find(std::string_view hay, std::size_t from) const noexcept {
    if (multi_) return multi_->find(hay, from).pos;
    const std::string_view rest = hay.substr(from);
    const std::size_t at = icase_ ? ks::find_icase(rest, patterns_[0]) : ks::find(rest, patterns_[0]);
    return at == ks::npos ? ks::npos : from + at;
  }

 private:
  std::vector<std::string> patterns_;
  bool icase_;
  std::optional<ks::MultiFinder> multi_;
};

/// Buffered standard output.
class Out {
 public:
  ~Out() { flush(); }
  Out() = default;
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;
  void put(std::string_view s) {
    buf_.append(s);
    if (buf_.size() >= (std::size_t{1} << 20)) flush();
  }
  void flush() {
    if (!buf_.empty()) std::fwrite(buf_.data(), 1, buf_.size(), stdout);
    buf_.clear();
  }

 private:
  std::string buf_;
};

/// Greps one file: whole lines are handed to scan() a buffer at a time.
class FileGrep {
 public:
  FileGrep(const Searcher& s, const Options& o, Out& out, std::string prefix)
      : s_(s), o_(o), out_(out), prefix_(std::move(prefix)) {}

  /// Scans text made of whole lines (the last may lack its '\n' at the end
  /// of the input).
  void scan(std::string_view text) {
    std::size_t counted = 0;  // line numbers are known up to here
    for (std::size_t pos = 0; pos < text.size();) {
      const std::size_t at = s_.find(text, pos);
      if (at == ks::npos) break;
      const std::size_t nl = ks::rfind(text.substr(pos, at - pos), '\n');
      const std::size_t start = nl == ks::npos ? pos : pos + nl + 1;
      const std::size_t eol = ks::find(text.substr(at), '\n');
      const std::size_t end = eol == ks::npos ? text.size() : at + eol;
      ++matched_;
      if (!o_.count) {
        if (o_.number) {
          line_ += ks::count(text.substr(counted, start - counted), '\n');
          counted = start;
        }
        emit(text.substr(start, end - start));
      }
      pos = end + 1;
    }
    if (o_.number) line_ += ks::count(text.substr(counted), '\n');
  }
  [[nodiscard]] std::size_t matched() const noexcept { return matched_; }

 private:
  void emit(std::string_view line) {
    out_.put(prefix_);
    if (o_.number) {
      char num[24];
      const int len = std::snprintf(num, sizeof num, "%zu:", line_ + 1);
      out_.put(std::string_view(num, static_cast<std::size_t>(len)));
    }
    out_.put(line);
    out_.put("\n");
  }

  const Searcher& s_;
  const Options& o_;
  Out& out_;
  std::string prefix_;
  std::size_t matched_ = 0;
  std::size_t line_ = 0;  // lines before the current scan position
};

/// Reads fd to the end into one reused buffer, scanning whole lines; returns
/// errno on a read error, 0 otherwise.
int grep_stream(int fd, FileGrep& g) {
  std::vector<char> buf(std::size_t{1} << 20);
  std::size_t filled = 0;
  for (;;) {
    if (filled == buf.size()) buf.resize(buf.size() * 2);  // a line longer than the buffer
    const ssize_t got = ::read(fd, buf.data() + filled, buf.size() - filled);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (got == 0) break;
    filled += static_cast<std::size_t>(got);
    const std::string_view have(buf.data(), filled);
    const std::size_t last_nl = ks::rfind(have, '\n');
    if (last_nl == ks::npos) continue;
    g.scan(have.substr(0, last_nl + 1));
    const std::size_t rest = filled - (last_nl + 1);
    std::memmove(buf.data(), buf.data() + last_nl + 1, rest);
    filled = rest;
  }
  if (filled > 0) g.scan(std::string_view(buf.data(), filled));
  return 0;
}

/// Maps a regular file whole and scans it; other files go to grep_stream.
int grep_fd(int fd, FileGrep& g) {
  if (keel_examples::scan_mapped(fd, [&](std::string_view bytes) { g.scan(bytes); })) return 0;
  return grep_stream(fd, g);
}

std::vector<std::string> split_lines(const std::string& p) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t nl; (nl = p.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.push_back(p.substr(start, nl - start));
  }
  out.push_back(p.substr(start));
  return out;
}

int usage() {
  std::fputs("usage: keel-grep [-i] [-c] [-n] -F PATTERN... [FILE...]\n", stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool have_pattern = false;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (options_done || a.size() < 2 || a[0] != '-') {
      if (!have_pattern) {
        for (auto& p : split_lines(std::string(a))) o.patterns.push_back(std::move(p));
        have_pattern = true;
      } else {
        o.files.emplace_back(a);
      }
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    for (std::size_t j = 1; j < a.size(); ++j) {
      const char c = a[j];
      if (c == 'i') {
        o.icase = true;
      } else if (c == 'c') {
        o.count = true;
      } else if (c == 'n') {
        o.number = true;
      } else if (c == 'F' || c == 'e') {
        // The pattern is the rest of this argument or the next one.
        std::string p;
        if (j + 1 < a.size()) {
          p = std::string(a.substr(j + 1));
        } else if (i + 1 < argc) {
          p = argv[++i];
        } else {
          return usage();
        }
        for (auto& s : split_lines(p)) o.patterns.push_back(std::move(s));
        have_pattern = true;
        break;
      } else {
        return usage();
      }
    }
  }
  if (!have_pattern) return usage();
  if (o.files.empty()) o.files.emplace_back("-");
  std::setvbuf(stdout, nullptr, _IOFBF, std::size_t{1} << 16);

  const Searcher searcher(o.patterns, o.icase);
  Out out;
  const bool prefix = o.files.size() > 1;
  bool any = false;
  bool error = false;
  for (const std::string& path : o.files) {
    const std::string shown = path == "-" ? "(standard input)" : path;
    FileGrep g(searcher, o, out, prefix ? shown + ":" : std::string());
    int fd = STDIN_FILENO;
    if (path != "-") {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        out.flush();
        std::fprintf(stderr, "keel-grep: %s: %s\n", path.c_str(), std::strerror(errno));
        error = true;
        continue;
      }
      struct stat st {};
      if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        out.flush();
        std::fprintf(stderr, "keel-grep: %s: Is a directory\n", path.c_str());
        ::close(fd);
        error = true;
        continue;
      }
    }
    const int err = grep_fd(fd, g);
    if (fd != STDIN_FILENO) ::close(fd);
    if (err != 0) {
      out.flush();
      std::fprintf(stderr, "keel-grep: %s: %s\n", shown.c_str(), std::strerror(err));
      error = true;
    }
    if (o.count) {
      out.put(prefix ? shown + ":" : std::string());
      out.put(std::to_string(g.matched()));
      out.put("\n");
    }
    any = any || g.matched() > 0;
  }
  out.flush();
  return error ? 2 : any ? 0 : 1;
}
