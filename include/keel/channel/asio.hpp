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
// the channel is closed and drained, Errc::cancelled); async_send:
// void(keel::SendResult<T>) (Errc::closed or Errc::cancelled hands the value
// back). With use_awaitable the co_await gives that Result directly and
// never throws.
//
// Cancellation: pass a keel::asio::Cancellation and call its cancel() (from
// any thread, e.g. a timer's handler) to end the pending operation with
// Errc::cancelled, Asio's operation_aborted:
//
//     keel::asio::Cancellation stop;
//     timer.expires_after(100ms);
//     timer.async_wait([stop](boost::system::error_code ec) { if (!ec) stop.cancel(); });
//     auto msg = co_await keel::asio::async_recv(rx, stop, boost::asio::use_awaitable);
//     timer.cancel();   // msg: a value, Errc::closed, or Errc::cancelled (the timeout)
//
// A cancelled receive never takes a value: a value that arrives as cancel()
// runs is either delivered (the operation had taken it: cancel() does
// nothing) or stays in the channel for the next receive. A cancelled send
// hands its value back. With Boost 1.77 or later a handler's cancellation
// slot (e.g. boost::asio::bind_cancellation_slot) cancels the same way.
//
// How it works (through the channel's public keel::PollReceiver /
// keel::PollSender, <keel/channel/poll.hpp>): the operation tries the
// channel; when it would block it registers a one-shot waiter in the
// channel, and a sender (receiver) that makes progress, or close(), posts
// the retry to the handler's associated executor (or the executor passed
// first: async_recv(io.get_executor(), rx, callback)). The completion handler always runs through that
// executor (never inline in the initiating call); a retry that completes
// calls it right there, since it runs on that executor already (one queue
// hop per wake-up, not two). While pending, the operation keeps work on the executor
// (io_context::run() does not return), like a pending socket read.
//
// Lifetime: pending operations are tracked by a service of the executor's
// execution context. Destroying the io_context (its shutdown) destroys them:
// each is unregistered from its channel, its handler is destroyed without
// being called (as Asio does with a pending socket read), and no sender or
// close() touches that context afterwards. A value a pending async_send
// held is destroyed with it. A handler without an associated executor runs
// on boost::asio::system_executor.
#pragma once

#include <keel/channel.hpp>
#include <keel/channel/poll.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/is_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/version.hpp>
#if BOOST_VERSION >= 107700
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_type.hpp>
#endif

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace keel::asio {

namespace detail {

/// What the per-context registry and a Cancellation see of an operation.
class OpBase : public keel::ChannelWaiter {
 public:
  /// Ends the operation with Errc::cancelled unless it completed already
  /// (or is completing: a value it took is delivered, never dropped).
  virtual void cancel() noexcept = 0;
  /// The context is shutting down: unregister from the channel, destroy the
  /// handler and the work, never touch the executor again.
  virtual void abandon() noexcept = 0;

  std::list<std::shared_ptr<OpBase>>::iterator where_;  // under Registry::m_

 protected:
  OpBase() = default;
  OpBase(const OpBase&) = delete;
  OpBase& operator=(const OpBase&) = delete;
  ~OpBase() = default;
};

/// The pending operations of one execution context. Shared by the context's
/// OpService and by each operation, so it outlives both: after shutdown()
/// an operation that is woken finds `alive_` false and posts nothing.
class Registry {
 public:
  /// Throws std::bad_alloc (nothing registered then).
  void add(const std::shared_ptr<OpBase>& op) {
    std::lock_guard lk(m_);
    ops_.push_front(op);
    op->where_ = ops_.begin();
  }
  /// Runs `f` (a post to the context's executor) unless the context shut
  /// down; the lock keeps shutdown() from starting meanwhile.
  template <class F>
  bool if_alive(F&& f) {
    std::lock_guard lk(m_);
    if (!alive_) return false;
    f();
    return true;
  }
  /// The operation completed: `f` posts its handler (if the context is
  /// alive), and the registry forgets it.
  template <class F>
  void finish(OpBase* op, F&& f) {
    std::lock_guard lk(m_);
    if (!alive_) return;  // shutdown() took the list and abandons the operation
    f();
    ops_.erase(op->where_);
  }
  /// The operation ended without a completion (its start threw).
  void forget(OpBase* op) noexcept {
    std::lock_guard lk(m_);
    if (alive_) ops_.erase(op->where_);
  }
  /// Operations started and not yet completed (tests).
  [[nodiscard]] std::size_t pending() {
    std::lock_guard lk(m_);
    return ops_.size();
  }
  void shutdown() noexcept {
    std::list<std::shared_ptr<OpBase>> taken;
    {
      std::lock_guard lk(m_);
      alive_ = false;
      taken.swap(ops_);
    }
    // Outside the lock: destroying a handler (a coroutine frame) may drop
    // channel handles, whose wake-ups reach other operations' if_alive().
    for (const auto& op : taken) op->abandon();
  }

 private:
  std::mutex m_;
  bool alive_ = true;                       // under m_
  std::list<std::shared_ptr<OpBase>> ops_;  // under m_
};

/// The execution-context service that tracks the channel operations
/// pending on its context: the context's destructor (shutdown) abandons them.
class OpService final : public boost::asio::execution_context::service {
 public:
  inline static boost::asio::execution_context::id id;

  explicit OpService(boost::asio::execution_context& ctx)
      : boost::asio::execution_context::service(ctx), registry_(std::make_shared<Registry>()) {}

  [[nodiscard]] const std::shared_ptr<Registry>& registry() const noexcept { return registry_; }

 private:
  void shutdown() override { registry_->shutdown(); }
  std::shared_ptr<Registry> registry_;
};

/// Moves the content out of `o` (handlers need not be move-assignable).
template <class V>
std::optional<V> take(std::optional<V>& o) {
  std::optional<V> r;
  if (o) {
    r.emplace(std::move(*o));
    o.reset();
  }
  return r;
}

template <class Ex>
boost::asio::execution_context& context_of(const Ex& ex) {
  if constexpr (boost::asio::execution::is_executor<Ex>::value) {
    return boost::asio::query(ex, boost::asio::execution::context);
  } else {
    return ex.context();
  }
}

template <class Ex>
std::shared_ptr<Registry> registry_of(const Ex& ex) {
  return boost::asio::use_service<OpService>(context_of(ex)).registry();
}

/// Shared by the receive and send operations: registration, re-arming,
/// cancellation, completion. Ex is the executor the handler runs on (its
/// associated executor, or the default one given to the initiating function).
/// Derived holds the channel as a keel::PollReceiver or keel::PollSender
/// (`port_`) and waits through the channel's public waiter interface.
///
/// Locks, always in this order: the operation's m_, the channel's (inside
/// poll_recv/poll_send, cancel_wait, pass_wakeup), the registry's mutex.
/// wake() runs under the channel's lock and so takes only the registry's.
template <class Derived, class Handler, class Ex>
class AsyncOp : public OpBase, public std::enable_shared_from_this<Derived> {
 public:
  AsyncOp(Handler&& h, const Ex& ex, std::shared_ptr<Registry> reg)
      : handler_(std::move(h)), ex_(ex), work_(boost::asio::make_work_guard(ex)), reg_(std::move(reg)) {}

  /// Called with the channel's list mutex held; one-shot per registration.
  /// (If posting fails to allocate, noexcept turns that into terminate rather
  /// than an operation that silently never completes.)
  void wake() noexcept override { post_attempt(); }
  /// A wake-up is used (the retry takes the value or room, or finds that
  /// another consumer did) or passed on (cancelled, abandoned): see
  /// keel::ChannelWaiter.
  [[nodiscard]] bool exclusive() const noexcept override { return true; }

  void cancel() noexcept override {
    std::lock_guard lk(m_);
    if (done_ || cancelled_) return;
    cancelled_ = true;
    // Taken back from the channel: nobody else schedules a retry, so we
    // do (it completes with Errc::cancelled). Otherwise a retry is already
    // scheduled (wake() ran, or the first attempt is still to come) and
    // sees cancelled_ before it looks at the channel (and passes the
    // wake-up on).
    if (armed_ && port().cancel_wait(*this)) {
      armed_ = false;
      post_attempt();
    }
  }

  void abandon() noexcept override {
    std::unique_lock lk(m_);
    done_ = true;
    if (armed_) {
      // Woken already (its retry will never run): pass the wake-up on.
      if (!port().cancel_wait(*this)) port().pass_wakeup();
      armed_ = false;
    }
    [[maybe_unused]] auto h = take(handler_);
    [[maybe_unused]] auto w = take(work_);
    lk.unlock();
    // h and w are destroyed here, outside the lock, while the context's
    // scheduler still exists (it shuts down after its services).
  }

  /// Registers with the context, then makes the first attempt (inline; the
  /// handler itself always runs through the executor).
  void start() {
    reg_->add(this->shared_from_this());
    attempt();
  }

 protected:
  /// One try at the channel; re-arms when it would block. Runs inline in
  /// the initiating call, then only through the executor (`on_executor`:
  /// a retry posted to it, so a completion may call the handler at once).
  void attempt(bool on_executor = false) {
    std::unique_lock lk(m_);
    if (done_) return;
    on_executor_ = on_executor;
    const bool was_armed = armed_;
    armed_ = false;
    if (cancelled_) {
      // A wake-up may have brought us here: we take nothing, so pass it on
      // (a spare notify only costs another waiter a re-check). Before
      // completing: complete() unlocks m_.
      if (was_armed) port().pass_wakeup();
      static_cast<Derived*>(this)->complete_cancelled(lk);
      return;
    }
    try {
      // `was_armed`: a wake-up brought us here (the channel then passes one
      // on if it finds more ready than it takes).
      switch (static_cast<Derived*>(this)->poll(was_armed)) {
        case keel::PollStatus::ready:
          static_cast<Derived*>(this)->complete_ready(lk);
          return;
        case keel::PollStatus::closed:
          static_cast<Derived*>(this)->complete_closed(lk);
          return;
        case keel::PollStatus::pending:
          armed_ = true;  // wake() posts the retry (or has posted it)
          return;
        case keel::PollStatus::retry:
          // Ready again while registering, or a degraded wake-up barrier
          // (a wake-up could be missed): retry through the executor.
          post_attempt();
          return;
      }
    } catch (...) {
      // Registering failed to allocate: the operation ends here (the
      // exception reaches the initiating call, or io_context::run()).
      if (!lk.owns_lock()) lk.lock();
      if (called_) throw;  // the handler, called by complete(), threw: the operation is over
      done_ = true;
      [[maybe_unused]] auto h = take(handler_);
      [[maybe_unused]] auto w = take(work_);
      lk.unlock();
      reg_->forget(this);
      throw;
    }
  }

// g++ 12 at -O1 under ThreadSanitizer reports the SendResult<T> moved into
// the posted completion below as maybe-uninitialized (its
// std::optional<SendError<T>>, read by the move constructor while Asio moves
// the handler out of its operation). A false positive of that warning
// through std::optional: the result is always constructed. GCC only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  template <class R>
  void complete(std::unique_lock<std::mutex>& lk, R&& result) {
    done_ = true;
    [[maybe_unused]] auto h = take(handler_);
    [[maybe_unused]] auto w = take(work_);
    const bool on_executor = on_executor_;
    lk.unlock();
    if (on_executor) {
      // This is a retry running on the handler's executor already (as a
      // handler of its own): posting the completion would only add one more
      // queue hop, the cost of a wake-up. Call the handler here, as
      // dispatch() would, once the registry has forgotten the operation (and
      // outside its lock: the handler may start the next operation). The
      // context is alive, since it runs this retry; the work is released
      // after the handler.
      bool alive = false;
      reg_->finish(this, [&] { alive = true; });
      if (alive) {
        called_ = true;  // (m_ not needed: no other thread touches a completed operation)
        (*h)(std::forward<R>(result));
      }
      return;
    }
    // Post first, then release the work: dropping the count to zero first
    // would stop an io_context whose run() has nothing else to do.
    reg_->finish(this, [&] {
      boost::asio::post(
          ex_, [handler = std::move(*h), r = std::forward<R>(result)]() mutable { handler(std::move(r)); });
      w.reset();
    });
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

  void post_attempt() noexcept {
    (void)reg_->if_alive(
        [&] { boost::asio::post(ex_, [self = this->shared_from_this()]() { self->attempt(true); }); });
  }

  std::mutex m_;
  std::optional<Handler> handler_;  // under m_
  Ex ex_;
  std::optional<boost::asio::executor_work_guard<Ex>> work_;  // under m_
  std::shared_ptr<Registry> reg_;
  bool armed_ = false;        // under m_: registered in the channel (pending)
  bool cancelled_ = false;    // under m_
  bool done_ = false;         // under m_: completed or abandoned
  bool on_executor_ = false;  // under m_: the current attempt runs on ex_ (a posted retry)
  bool called_ = false;       // the handler was called in place (by the attempt running now)

  auto& port() noexcept {
    return static_cast<Derived*>(this)->port_;
  }
};

template <class T, class Handler, class Ex>
class RecvOp final : public AsyncOp<RecvOp<T, Handler, Ex>, Handler, Ex> {
  using Base = AsyncOp<RecvOp<T, Handler, Ex>, Handler, Ex>;
  friend Base;

 public:
  RecvOp(keel::PollReceiver<T> port, Handler&& h, const Ex& ex, std::shared_ptr<Registry> reg)
      : Base(std::move(h), ex, std::move(reg)), port_(std::move(port)) {}

 private:
  keel::PollStatus poll(bool woken) { return port_.poll_recv(*this, out_, woken); }
  void complete_ready(std::unique_lock<std::mutex>& lk) {
    this->complete(lk, Result<T>(std::in_place, std::move(*out_)));
  }
  void complete_closed(std::unique_lock<std::mutex>& lk) { this->complete(lk, Result<T>(Errc::closed)); }
  void complete_cancelled(std::unique_lock<std::mutex>& lk) {
    this->complete(lk, Result<T>(Errc::cancelled));
  }

  keel::PollReceiver<T> port_;
  std::optional<T> out_;  // under m_: the value poll_recv took
};

template <class T, class Handler, class Ex>
class SendOp final : public AsyncOp<SendOp<T, Handler, Ex>, Handler, Ex> {
  using Base = AsyncOp<SendOp<T, Handler, Ex>, Handler, Ex>;
  friend Base;

 public:
  SendOp(keel::PollSender<T> port, T value, Handler&& h, const Ex& ex, std::shared_ptr<Registry> reg)
      : Base(std::move(h), ex, std::move(reg)), port_(std::move(port)), value_(std::move(value)) {}

 private:
  keel::PollStatus poll(bool woken) { return port_.poll_send(*this, value_, woken); }
  void complete_ready(std::unique_lock<std::mutex>& lk) { this->complete(lk, SendResult<T>()); }
  void complete_closed(std::unique_lock<std::mutex>& lk) {
    this->complete(lk, SendResult<T>(Error(Errc::closed), std::move(value_)));
  }
  void complete_cancelled(std::unique_lock<std::mutex>& lk) {
    this->complete(lk, SendResult<T>(Error(Errc::cancelled), std::move(value_)));
  }

  keel::PollSender<T> port_;
  T value_;  // under m_
};

/// The state behind keel::asio::Cancellation: the operation bound last.
struct CancelState {
  std::mutex m;
  std::weak_ptr<OpBase> op;  // under m
};

#if BOOST_VERSION >= 107700
/// Installed in a handler's cancellation slot (Boost 1.77 and later).
struct SlotCancel {
  std::weak_ptr<OpBase> op;
  void operator()(boost::asio::cancellation_type type) const {
    if (type == boost::asio::cancellation_type::none) return;
    if (auto p = op.lock()) p->cancel();
  }
};
#endif

template <class Op, class Handler, class... Args>
void launch(const std::shared_ptr<CancelState>& cancel, Handler& handler, Args&&... args) {
#if BOOST_VERSION >= 107700
  auto slot = boost::asio::get_associated_cancellation_slot(handler);  // before the handler moves
#else
  (void)handler;
#endif
  auto op = std::make_shared<Op>(std::forward<Args>(args)...);
#if BOOST_VERSION >= 107700
  if (slot.is_connected()) slot.template emplace<SlotCancel>(SlotCancel{op});
#endif
  if (cancel) {
    std::lock_guard lk(cancel->m);
    cancel->op = op;
  }
  op->start();
}

template <class T, class DefaultEx>
struct InitiateRecv {
  DefaultEx ex;
  std::shared_ptr<CancelState> cancel;
  template <class Handler>
  void operator()(Handler&& handler, keel::PollReceiver<T> port) const {
    using H = std::decay_t<Handler>;
    auto work_ex = boost::asio::get_associated_executor(handler, ex);
    using Op = RecvOp<T, H, decltype(work_ex)>;
    auto reg = registry_of(work_ex);
    H h(std::forward<Handler>(handler));
    launch<Op>(cancel, h, std::move(port), std::move(h), work_ex, std::move(reg));
  }
};

template <class T, class DefaultEx>
struct InitiateSend {
  DefaultEx ex;
  std::shared_ptr<CancelState> cancel;
  template <class Handler>
  void operator()(Handler&& handler, keel::PollSender<T> port, T value) const {
    using H = std::decay_t<Handler>;
    auto work_ex = boost::asio::get_associated_executor(handler, ex);
    using Op = SendOp<T, H, decltype(work_ex)>;
    auto reg = registry_of(work_ex);
    H h(std::forward<Handler>(handler));
    launch<Op>(cancel, h, std::move(port), std::move(value), std::move(h), work_ex, std::move(reg));
  }
};

template <class E>
concept AsioExecutor = boost::asio::execution::is_executor<E>::value || boost::asio::is_executor<E>::value;

/// Operations pending on `ctx` (started, not completed, not abandoned). Tests.
inline std::size_t pending_operations(boost::asio::execution_context& ctx) {
  return boost::asio::use_service<OpService>(ctx).registry()->pending();
}

}  // namespace detail

/// Cancels a pending async_recv/async_send it was passed to (Boost 1.74 has
/// no cancellation slots). A copy shares the state, so a timer's handler can
/// hold one. cancel() ends the operation bound last with Errc::cancelled,
/// unless it has completed (or is completing) already: a receive that took
/// a value delivers it, and a cancelled receive never takes one. Cancelling
/// with no pending operation does nothing. Thread-safe.
class Cancellation {
 public:
  Cancellation() : state_(std::make_shared<detail::CancelState>()) {}

  void cancel() const noexcept {
    std::shared_ptr<detail::OpBase> op;
    {
      std::lock_guard lk(state_->m);
      op = state_->op.lock();
    }
    if (op) op->cancel();
  }

  [[nodiscard]] const std::shared_ptr<detail::CancelState>& native_handle() const noexcept { return state_; }

 private:
  std::shared_ptr<detail::CancelState> state_;
};

/// Receives the next value without blocking a thread. Completion signature
/// void(keel::Result<T>): the value, Errc::closed once the channel is
/// closed and drained, or Errc::cancelled. The handler runs on its associated
/// executor (a coroutine's, with use_awaitable), else on `ex`. The operation
/// holds the channel, not `rx` itself.
template <class T, detail::AsioExecutor Executor, class CompletionToken>
auto async_recv(const Executor& ex, const Receiver<T>& rx, const Cancellation& cancel,
                CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(Result<T>)>(
      detail::InitiateRecv<T, Executor>{ex, cancel.native_handle()}, token, keel::PollReceiver<T>(rx));
}
template <class T, detail::AsioExecutor Executor, class CompletionToken>
auto async_recv(const Executor& ex, const Receiver<T>& rx, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(Result<T>)>(
      detail::InitiateRecv<T, Executor>{ex, {}}, token, keel::PollReceiver<T>(rx));
}
/// async_recv on the handler's associated executor (boost::asio::system_executor
/// when it has none: pass an executor for plain callbacks).
template <class T, class CompletionToken>
auto async_recv(const Receiver<T>& rx, CompletionToken&& token) {
  return async_recv(boost::asio::system_executor(), rx, std::forward<CompletionToken>(token));
}
template <class T, class CompletionToken>
auto async_recv(const Receiver<T>& rx, const Cancellation& cancel, CompletionToken&& token) {
  return async_recv(boost::asio::system_executor(), rx, cancel, std::forward<CompletionToken>(token));
}

/// Sends a value, waiting without blocking a thread while the channel is
/// full. Completion signature void(keel::SendResult<T>): Errc::closed or
/// Errc::cancelled hands the value back. T comes from the sender, so
/// `async_send(tx, "hi", token)` sends a std::string. Executors as for
/// async_recv.
template <class T, detail::AsioExecutor Executor, class CompletionToken>
auto async_send(const Executor& ex, const Sender<T>& tx, const Cancellation& cancel,
                std::type_identity_t<T> value, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(SendResult<T>)>(
      detail::InitiateSend<T, Executor>{ex, cancel.native_handle()}, token, keel::PollSender<T>(tx),
      std::move(value));
}
template <class T, detail::AsioExecutor Executor, class CompletionToken>
auto async_send(const Executor& ex, const Sender<T>& tx, std::type_identity_t<T> value,
                CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(SendResult<T>)>(
      detail::InitiateSend<T, Executor>{ex, {}}, token, keel::PollSender<T>(tx), std::move(value));
}
template <class T, class CompletionToken>
auto async_send(const Sender<T>& tx, std::type_identity_t<T> value, CompletionToken&& token) {
  return async_send(boost::asio::system_executor(), tx, std::move(value),
                    std::forward<CompletionToken>(token));
}
template <class T, class CompletionToken>
auto async_send(const Sender<T>& tx, const Cancellation& cancel, std::type_identity_t<T> value,
                CompletionToken&& token) {
  return async_send(boost::asio::system_executor(), tx, cancel, std::move(value),
                    std::forward<CompletionToken>(token));
}

}  // namespace keel::asio
