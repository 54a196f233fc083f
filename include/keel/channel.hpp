// keel/channel.hpp: channels with tokio's and crossbeam's semantics.
//
// - keel::channel<T>(capacity): bounded MPMC with backpressure; close drains,
//   then reports Errc::closed; a failed send hands the value back.
// - keel::oneshot<T>(): one value, request/response.
// - keel::broadcast<T>(capacity): every receiver sees every value; a slow
//   receiver gets Errc::lagged with the count it missed, then catches up.
// - keel::Selector / keel::select_for: wait on several receivers at once.
// - keel::PollReceiver / keel::PollSender (<keel/channel/poll.hpp>): try
//   now, else register a keel::ChannelWaiter that the channel wakes; for
//   executors and event loops.
// - <keel/channel/asio.hpp> (keel::asio target): co_await a send or a
//   receive from a Boost.Asio coroutine without blocking a thread.
//
//     auto [tx, rx] = keel::channel<int>(128);
//     std::thread t([tx = std::move(tx)]() mutable { for (int i = 0; i < 10; ++i) (void)tx.send(i); });
//     int sum = 0;
//     while (auto v = rx.recv()) sum += *v;   // ends with Errc::closed once t is done
//     t.join();
//
// Thread-safety: every handle may be copied (oneshot's are move-only) and the
// copies used from any threads. Waits spin briefly, then block on a
// condition variable: an idle waiter uses no CPU. See docs/channel.md.
#pragma once

#include <keel/channel/broadcast.hpp>
#include <keel/channel/mpmc.hpp>
#include <keel/channel/oneshot.hpp>
#include <keel/channel/poll.hpp>
#include <keel/channel/select.hpp>
#include <keel/channel/send_result.hpp>
