// keel/websocket/detail/resolve.hpp: name resolution that close() can
// abandon, and the connection race over the resolved addresses (Happy
// Eyeballs). Not part of the API.
#pragma once

#include <keel/websocket/detail/net.hpp>
#include <keel/websocket/url.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <netdb.h>
#include <netinet/in.h>

#include <cstdint>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace keel::ws::detail {

// Tests only: when set, the resolver thread calls this instead of
// getaddrinfo(3) (it may sleep, to play a slow name server, or hand out
// addresses of its choosing). Each lookup copies it when it starts.
using ResolveHook =
    std::function<ErrorCode(const std::string& host, std::uint16_t port, std::vector<tcp::endpoint>& out)>;
struct ResolveHookSlot {
  std::mutex mu;
  ResolveHook fn;  // guarded by mu
};
inline ResolveHookSlot& resolve_test_hook() {
  static ResolveHookSlot slot;
  return slot;
}

// getaddrinfo(3), blocking: every address of `host` (IPv4 and IPv6).
inline ErrorCode resolve_blocking(const std::string& host, std::uint16_t port,
                                  std::vector<tcp::endpoint>& eps) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc == EAI_NONAME) return net::error::host_not_found;
  if (rc == EAI_AGAIN) return net::error::host_not_found_try_again;
  if (rc != 0) return net::error::no_recovery;
  for (auto* p = res; p != nullptr; p = p->ai_next) {
    if (p->ai_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(p->ai_addr);
      eps.emplace_back(net::ip::address_v4(ntohl(a->sin_addr.s_addr)), port);
    } else if (p->ai_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(p->ai_addr);
      net::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), a->sin6_addr.s6_addr, b.size());
      eps.emplace_back(net::ip::address_v6(b, a->sin6_scope_id), port);
    }
  }
  ::freeaddrinfo(res);
  return eps.empty() ? ErrorCode(net::error::host_not_found) : ErrorCode{};
}

// Name resolution on a thread of its own, so that close() can abandon a
// getaddrinfo that hangs (asio's resolver would make the io_context's
// destruction wait for it). The result comes back through a post to the
// strand, unless the attempt abandoned it first. The thread holds no
// executor of its own: the strand it posts to lives in the Lookup and is
// dropped when the lookup is abandoned, so a thread that outlives the
// io_context neither posts into it nor releases a strand of it afterwards.
struct Lookup {
  std::mutex mu;
  bool abandoned = false;                // guarded by mu
  std::optional<Strand> strand;          // guarded by mu; empty once abandoned
  net::steady_timer* done = nullptr;     // guarded by mu; cancelled (on the strand) when the result is in
  ErrorCode ec;                          // guarded by mu
  std::vector<tcp::endpoint> endpoints;  // guarded by mu

  // However the resolving frame ends (even destroyed unrun by the
  // io_context's destruction): nothing is posted after this returns.
  void abandon() {
    std::optional<Strand> drop;
    {
      const std::lock_guard lock(mu);
      abandoned = true;
      done = nullptr;
      drop.swap(strand);
    }
  }
};

inline net::awaitable<ErrorCode> resolve(const Strand& strand_, const Url& url,
                                         std::vector<tcp::endpoint>& out, std::function<void()>& abort_io_) {
  ErrorCode ec;
  if (const auto addr = net::ip::make_address(url.host, ec); !ec) {
    out.emplace_back(addr, url.port);  // an IP literal needs no lookup
    co_return ErrorCode{};
  }
  ResolveHook hook;
  {
    auto& slot = resolve_test_hook();
    const std::lock_guard lock(slot.mu);
    hook = slot.fn;
  }
  auto lookup = std::make_shared<Lookup>();
  net::steady_timer done(strand_);
  done.expires_at(Clock::time_point::max());
  lookup->strand.emplace(strand_);
  lookup->done = &done;
  struct Abandon {
    std::shared_ptr<Lookup> l;
    ~Abandon() { l->abandon(); }
  } const abandon{lookup};
  abort_io_ = [&done] { done.cancel(); };
  try {
    std::thread([lookup, host = url.host, port = url.port, hook = std::move(hook)] {
      std::vector<tcp::endpoint> eps;
      const ErrorCode e = hook ? hook(host, port, eps) : resolve_blocking(host, port, eps);
      const std::lock_guard lock(lookup->mu);
      if (lookup->abandoned) return;
      lookup->ec = e;
      lookup->endpoints = std::move(eps);
      net::post(*lookup->strand, [lookup] {
        const std::lock_guard l(lookup->mu);
        if (!lookup->abandoned) lookup->done->cancel();
      });
    }).detach();
  } catch (const std::system_error&) {
    abort_io_ = nullptr;
    co_return ErrorCode(net::error::no_memory);
  }
  ErrorCode ignored;
  co_await done.async_wait(redirect(ignored));
  abort_io_ = nullptr;
  lookup->abandon();  // the thread posts nothing more: `done` may go
  const std::lock_guard lock(lookup->mu);
  if (lookup->endpoints.empty() && !lookup->ec) co_return ErrorCode(net::error::operation_aborted);
  out = std::move(lookup->endpoints);
  co_return lookup->ec;
}

// Happy Eyeballs (RFC 8305), simplified: addresses alternate between the
// families (the resolver's first first); the next one is tried when the
// previous has failed or after 250 ms, while the earlier ones keep
// trying; the first to connect wins and the others are closed.
inline net::awaitable<ErrorCode> connect_any(const Strand& strand_, tcp::socket& sock,
                                             std::vector<tcp::endpoint> eps,
                                             std::function<void()>& abort_io_) {
  if (eps.empty()) co_return ErrorCode(net::error::host_not_found);
  {
    std::vector<tcp::endpoint> v6;
    std::vector<tcp::endpoint> v4;
    for (auto& e : eps) (e.address().is_v6() ? v6 : v4).push_back(e);
    const bool six_first = eps.front().address().is_v6();
    auto& a = six_first ? v6 : v4;
    auto& b = six_first ? v4 : v6;
    eps.clear();
    for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
      if (i < a.size()) eps.push_back(a[i]);
      if (i < b.size()) eps.push_back(b[i]);
    }
  }
  struct Race {
    explicit Race(const Strand& s) : wake(s) {}
    std::vector<std::unique_ptr<tcp::socket>> socks;
    int running = 0;
    int winner = -1;
    bool over = false;
    ErrorCode last;
    net::steady_timer wake;
  };
  auto race = std::make_shared<Race>(strand_);
  auto close_all = [race] {
    race->over = true;
    for (auto& s : race->socks) {
      ErrorCode ignored;
      if (s) s->close(ignored);
    }
    race->wake.cancel();
  };
  abort_io_ = close_all;
  constexpr auto kStagger = std::chrono::milliseconds(250);
  for (std::size_t i = 0; i <= eps.size() && race->winner < 0 && !race->over; ++i) {
    if (i < eps.size()) {
      race->socks.push_back(std::make_unique<tcp::socket>(strand_));
      auto& s = *race->socks.back();
      ++race->running;
      const int me = static_cast<int>(i);
      s.async_connect(eps[i], [race, me](const ErrorCode& e) {
        --race->running;
        if (!e && race->winner < 0 && !race->over) {
          race->winner = me;
        } else if (e) {
          race->last = e;
        }
        race->wake.cancel();
      });
    }
    // Wait for a result, or (with addresses left) at most the stagger.
    const bool more = i + 1 < eps.size();
    for (;;) {
      if (race->winner >= 0 || race->over || race->running == 0) break;
      race->wake.expires_after(more ? kStagger : std::chrono::hours(24));
      ErrorCode timer_ec;
      co_await race->wake.async_wait(redirect(timer_ec));
      if (!timer_ec) break;  // the stagger passed: start the next one too
    }
  }
  abort_io_ = nullptr;
  ErrorCode result = race->last ? race->last : ErrorCode(net::error::operation_aborted);
  if (race->winner >= 0 && !race->over) {
    sock = std::move(*race->socks[static_cast<std::size_t>(race->winner)]);
    result = {};
  }
  race->over = true;
  for (auto& s : race->socks) {
    ErrorCode ignored;
    if (s && s->is_open()) s->close(ignored);  // the losers (their handlers still run, and see `over`)
  }
  co_return result;
}

}  // namespace keel::ws::detail
