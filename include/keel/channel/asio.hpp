// keel/channel/asio.hpp: keel channels from Boost.Asio, without blocking a thread.
//
// Target keel::asio (Boost headers only, 1.74 or later).
// async_recv and async_send are ordinary Asio asynchronous operations: they
// take any completion token (a callback, boost::asio::use_awaitable, ...).
//
//     boost::asio::awaitable<void> writer(keel::Receiver<std::string> rx) {
//       for (;;) {
//         keel::Result<std::string> msg = co_await keel::asio::async_recv(rx, boost::asio::use_awaitable);
//         if (!msg) break;                   // Errc::closed: drained and closed
//         co_await write_frame(*msg);
//       }
//     }
//     // elsewhere, any thread:  tx.send("hello"), tx.try_send(...), tx.close()
//
// Completion signatures: async_recv: void(keel::Result<T>) (Errc::closed once
// the channel is closed and drained); async_send: void(keel::SendResult<T>)
// (Errc::closed hands the value back). With use_awaitable the co_await gives
// that Result directly and never throws.
//
// How it works: the operation tries the channel; when it would block it
// registers a one-shot waiter in the channel, and a sender (receiver) that
// makes progress, or close(), posts the retry to the handler's associated
// executor (or the executor passed first: async_recv(io.get_executor(), rx,
// callback)). The completion handler always runs through that executor (never
// inline in the initiating call). While pending, the operation keeps work
// on the executor (io_context::run() does not return), like a pending socket
// read.
//
// Pitfalls: there is no per-operation cancellation in Boost 1.74; to end a
// pending operation, close() the channel (it completes with Errc::closed).
// Close the channel, or let the operation complete, before destroying the
// io_context it runs on. A handler without an associated executor runs on
// boost::asio::system_executor.
#pragma once

#include <keel/channel.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/is_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace keel::asio {

namespace detail {

/// Shared by the receive and send operations: registration and re-arming.
/// Ex is the executor the handler runs on (its associated executor, or the
/// default one given to the initiating function).
template <class Derived, class Handler, class Ex>
class AsyncOp : public keel::detail::Waiter, public std::enable_shared_from_this<Derived> {
 public:
  AsyncOp(Handler&& h, const Ex& ex) : handler_(std::move(h)), work_(boost::asio::make_work_guard(ex)) {}

  /// Called with the channel's list mutex held; one-shot per registration.
  /// (If posting fails to allocate, noexcept turns that into terminate rather
  /// than an operation that silently never completes.)
  void wake() noexcept override {
    auto self = std::move(self_);
    boost::asio::post(work_.get_executor(), [self]() { self->attempt(); });
  }

 protected:
  /// Registers in `list`, then re-checks readiness with `poll`. Exactly one
  /// retry is scheduled in the end: by wake(), or by us when we take the
  /// registration back because the channel became ready meanwhile.
  template <class Poll>
  void arm(keel::detail::WaitList& list, Poll&& poll) {
    self_ = this->shared_from_this();
    // A degraded wake-up barrier (see DekkerBarrier) may miss the wake-up:
    // then retry through the executor instead of waiting for it.
    bool exact = false;
    try {
      exact = list.add(this);
    } catch (...) {
      self_.reset();  // not registered: nothing can wake us
      throw;
    }
    if (exact && !poll()) return;  // wake() will post the retry
    if (list.remove(this)) {
      auto self = std::move(self_);
      boost::asio::post(work_.get_executor(), [self]() { self->attempt(); });
    }
    // else: wake() ran already and posted the retry.
  }

  template <class R>
  void complete(R&& result) {
    // Post first, then release the work: dropping the count to zero first
    // would stop an io_context whose run() has nothing else to do.
    boost::asio::post(work_.get_executor(),
                      [h = std::move(handler_), r = std::forward<R>(result)]() mutable { h(std::move(r)); });
    work_.reset();
  }

 private:
  virtual void attempt() = 0;

  Handler handler_;
  boost::asio::executor_work_guard<Ex> work_;
  std::shared_ptr<Derived> self_;  // keeps us alive while registered
};

template <class T, class Handler, class Ex>
class RecvOp final : public AsyncOp<RecvOp<T, Handler, Ex>, Handler, Ex> {
 public:
  RecvOp(std::shared_ptr<keel::detail::Chan<T>> chan, Handler&& h, const Ex& ex)
      : AsyncOp<RecvOp<T, Handler, Ex>, Handler, Ex>(std::move(h), ex), chan_(std::move(chan)) {}

  void attempt() override {
    if (!chan_) {
      this->complete(Result<T>(Errc::closed));
      return;
    }
    std::optional<T> out;
    const auto op = chan_->try_pop([&](T&& v) noexcept { out.emplace(std::move(v)); });
    switch (op) {
      case keel::detail::ChanOp::ok:
        this->complete(Result<T>(std::in_place, std::move(*out)));
        return;
      case keel::detail::ChanOp::closed:
        this->complete(Result<T>(Errc::closed));
        return;
      case keel::detail::ChanOp::would_block:
        break;
    }
    chan_->count_recv_wait();
    this->arm(chan_->recv_wait(), [this] { return chan_->poll_recv(); });
  }

 private:
  std::shared_ptr<keel::detail::Chan<T>> chan_;
};

template <class T, class Handler, class Ex>
class SendOp final : public AsyncOp<SendOp<T, Handler, Ex>, Handler, Ex> {
 public:
  SendOp(std::shared_ptr<keel::detail::Chan<T>> chan, T value, Handler&& h, const Ex& ex)
      : AsyncOp<SendOp<T, Handler, Ex>, Handler, Ex>(std::move(h), ex),
        chan_(std::move(chan)),
        value_(std::move(value)) {}

  void attempt() override {
    if (!chan_) {
      this->complete(SendResult<T>(Error(Errc::closed), std::move(value_)));
      return;
    }
    switch (chan_->try_push(value_)) {
      case keel::detail::ChanOp::ok:
        this->complete(SendResult<T>());
        return;
      case keel::detail::ChanOp::closed:
        this->complete(SendResult<T>(Error(Errc::closed), std::move(value_)));
        return;
      case keel::detail::ChanOp::would_block:
        break;
    }
    chan_->count_send_wait();
    this->arm(chan_->send_wait(), [this] { return chan_->poll_send(); });
  }

 private:
  std::shared_ptr<keel::detail::Chan<T>> chan_;
  T value_;
};

template <class T, class DefaultEx>
struct InitiateRecv {
  DefaultEx ex;
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<keel::detail::Chan<T>> chan) const {
    using H = std::decay_t<Handler>;
    auto work_ex = boost::asio::get_associated_executor(handler, ex);
    using Op = RecvOp<T, H, decltype(work_ex)>;
    std::make_shared<Op>(std::move(chan), H(std::forward<Handler>(handler)), work_ex)->attempt();
  }
};

template <class T, class DefaultEx>
struct InitiateSend {
  DefaultEx ex;
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<keel::detail::Chan<T>> chan, T value) const {
    using H = std::decay_t<Handler>;
    auto work_ex = boost::asio::get_associated_executor(handler, ex);
    using Op = SendOp<T, H, decltype(work_ex)>;
    std::make_shared<Op>(std::move(chan), std::move(value), H(std::forward<Handler>(handler)), work_ex)
        ->attempt();
  }
};

template <class E>
concept AsioExecutor = boost::asio::execution::is_executor<E>::value || boost::asio::is_executor<E>::value;

}  // namespace detail

/// Receives the next value without blocking a thread. Completion signature
/// void(keel::Result<T>): the value, or Errc::closed once the channel is
/// closed and drained. The handler runs on its associated executor (a
/// coroutine's, with use_awaitable), else on `ex`. The operation holds the
/// channel, not `rx` itself.
template <class T, detail::AsioExecutor Executor, class CompletionToken>
auto async_recv(const Executor& ex, const Receiver<T>& rx, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(Result<T>)>(detail::InitiateRecv<T, Executor>{ex},
                                                                       token, rx.native_handle());
}
/// async_recv on the handler's associated executor (boost::asio::system_executor
/// when it has none: pass an executor for plain callbacks).
template <class T, class CompletionToken>
auto async_recv(const Receiver<T>& rx, CompletionToken&& token) {
  return async_recv(boost::asio::system_executor(), rx, std::forward<CompletionToken>(token));
}

/// Sends a value, waiting without blocking a thread while the channel is
/// full. Completion signature void(keel::SendResult<T>): Errc::closed hands
/// the value back. Executors as for async_recv.
template <class T, detail::AsioExecutor Executor, class CompletionToken>
auto async_send(const Executor& ex, const Sender<T>& tx, std::type_identity_t<T> value,
                CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(SendResult<T>)>(
      detail::InitiateSend<T, Executor>{ex}, token, tx.native_handle(), std::move(value));
}
template <class T, class CompletionToken>
auto async_send(const Sender<T>& tx, std::type_identity_t<T> value, CompletionToken&& token) {
  return async_send(boost::asio::system_executor(), tx, std::move(value),
                    std::forward<CompletionToken>(token));
}

}  // namespace keel::asio
