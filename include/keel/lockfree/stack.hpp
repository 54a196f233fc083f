// keel/lockfree/stack.hpp: lock-free LIFO stack (Treiber) with hazard-pointer reclamation.
//
// push allocates a node and links it with one CAS; pop unlinks the top node
// with one CAS under a hazard pointer, moves the value out and retires the
// node, which is freed once no thread can still be reading it. Nothing to
// register: a thread gets its hazard record on first use and returns it when
// it exits.
//
//     keel::Stack<Buffer> free_buffers;
//     free_buffers.push(Buffer(4096));                // any thread
//     if (auto b = free_buffers.pop()) use(*b);       // any thread
//
// Thread-safety: push, pop and empty may be called from any number of
// threads; the destructor needs exclusive access.
//
// Guarantees: lock-free (a CAS fails only because another thread's succeeded).
// Each pushed value is popped at most once, and exactly once if popped at all;
// a push happens-before the pop that returns its value. Popped nodes are freed
// (not pooled): retired-but-unfreed nodes stay below
// threads x (2 x threads + 64) process-wide (keel::reclamation_stats() shows
// them), and no node is touched after it is freed, so ASan/TSan stay quiet.
// ABA cannot happen: a node a popper has protected cannot be freed, hence its
// address cannot come back as a new node while the popper still compares it.
#pragma once

#include <keel/detail/lockfree_hazard.hpp>
#include <keel/lockfree/cache_padded.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace keel {

/// Lock-free LIFO stack whose nodes are reclaimed with hazard pointers. T may
/// be move-only; it must be nothrow-destructible and nothrow-movable.
template <class T>
class Stack {
  static_assert(std::is_nothrow_destructible_v<T>, "Stack<T> needs a nothrow destructor");
  static_assert(std::is_nothrow_move_constructible_v<T>, "Stack<T> needs a nothrow move constructor");

 public:
  using value_type = T;

  Stack() noexcept = default;
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  /// Destroys the values still in the stack. Needs exclusive access.
  ~Stack() {
    Node* n = head_->load(std::memory_order_relaxed);  // exclusive access: nothing to order
    while (n != nullptr) {
      Node* next = n->next;
      n->ptr()->~T();
      delete n;
      n = next;
    }
  }

  /// Pushes a value constructed from args (allocates one node; std::bad_alloc
  /// or an exception from T's constructor leaves the stack unchanged).
  template <class... Args>
  requires std::is_constructible_v<T, Args...>
  void emplace(Args&&... args) {
    auto holder = std::make_unique<Node>();  // freed if T's constructor throws
    ::new (static_cast<void*>(holder->storage)) T(std::forward<Args>(args)...);
    Node* n = holder.release();
    // relaxed: only a guess at the top; the CAS validates it.
    n->next = head_->load(std::memory_order_relaxed);
    // release on success: publishes the node's value and next to the popper
    // that acquires it. relaxed on failure: we only retry with the new top.
    while (!head_->compare_exchange_weak(n->next, n, std::memory_order_release, std::memory_order_relaxed)) {
    }
  }
  void push(const T& v) requires std::is_copy_constructible_v<T> { emplace(v); }
  void push(T&& v) { emplace(std::move(v)); }

  /// Pops the most recently pushed value, or std::nullopt when empty.
  [[nodiscard]] std::optional<T> pop() {
    detail::hazard::Guard guard;
    Node* top = nullptr;
    for (;;) {
      top = guard.protect(*head_);  // acquire: the node's fields are visible
      if (top == nullptr) return std::nullopt;
      // Safe: top is protected, so not freed; next is immutable once pushed.
      Node* next = top->next;
      // seq_cst on success: the unlink must precede our later scan in the
      // total order (see detail/lockfree_hazard.hpp); relaxed on failure: we
      // re-protect the new top, which re-reads it with acquire.
      if (head_->compare_exchange_strong(top, next, std::memory_order_seq_cst, std::memory_order_relaxed))
        break;
    }
    guard.clear();
    // We unlinked top: its value is ours alone (others only read top->next).
    T* v = top->ptr();
    std::optional<T> out(std::move(*v));
    v->~T();
    guard.retire(top, &free_node);
    return out;
  }

  /// Whether the stack was empty at the instant of the load (a snapshot).
  [[nodiscard]] bool empty() const noexcept {
    return head_->load(std::memory_order_relaxed) == nullptr;  // no data is read through it
  }

 private:
  struct Node {
    Node* next = nullptr;
    alignas(T) unsigned char storage[sizeof(T)];
    T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  // The value was already destroyed by pop(); only the memory is left.
  static void free_node(void* p) noexcept { delete static_cast<Node*>(p); }

  CachePadded<std::atomic<Node*>> head_{};
};

/// Process-wide statistics of the hazard-pointer reclamation Stack uses.
struct ReclamationStats {
  std::size_t retired;  ///< nodes popped but not yet freed (bounded, see Stack)
  std::size_t records;  ///< hazard records (the most threads ever alive at once)
};

/// A snapshot of the reclamation statistics.
[[nodiscard]] inline ReclamationStats reclamation_stats() noexcept {
  const auto& d = detail::hazard::Domain::instance();
  return {d.retired(), d.records()};
}

/// Frees now what the calling thread has retired and nobody protects
/// (otherwise that happens every 2 x records + 64 pops, and at thread exit).
inline void reclaim_now() {
  detail::hazard::flush();
}

}  // namespace keel
