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
// a push happens-before the pop that returns its value. Popped nodes are freed,
// not pooled without limit: retired-but-unfreed nodes stay below
// threads x (2 x threads + 64) process-wide (keel::reclamation_stats() shows
// them), each thread keeps at most 64 free nodes per T for its next pushes
// (none under ASan), the rest go back to malloc; no node is touched after it
// is freed, so ASan/TSan stay quiet.
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
    Node* n = alloc_node();
    struct Undo {  // gives the node back if T's constructor throws
      Node* n;
      ~Undo() {
        if (n != nullptr) free_node(n);
      }
    } undo{n};
    ::new (static_cast<void*>(n->storage)) T(std::forward<Args>(args)...);
    undo.n = nullptr;
    // relaxed: only a guess at the top; the CAS validates it.
    n->next = head_->load(std::memory_order_relaxed);
    // release on success: publishes the node's value and next to the popper
    // that acquires it. relaxed on failure: we only retry with the new top.
    for (Backoff backoff;
         !head_->compare_exchange_weak(n->next, n, std::memory_order_release, std::memory_order_relaxed);)
      backoff();
  }
  void push(const T& v) requires std::is_copy_constructible_v<T> { emplace(v); }
  void push(T&& v) { emplace(std::move(v)); }

  /// Pops the most recently pushed value, or std::nullopt when empty.
  [[nodiscard]] std::optional<T> pop() {
    detail::hazard::Guard guard;
    Node* top = nullptr;
    for (Backoff backoff;; backoff()) {
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
    guard.retire(top, &free_node);  // noexcept, even without memory to record it
    return out;
  }

  /// Whether the stack was empty at the instant of the load (a snapshot).
  [[nodiscard]] bool empty() const noexcept {
    return head_->load(std::memory_order_relaxed) == nullptr;  // no data is read through it
  }

 private:
  // Bounded exponential backoff after a CAS on head lost to another thread:
  // 1, 2, 4 ... 256 pause hints. Retrying at once would only make the threads
  // collide again (each failed CAS still pulls the line away from the winner);
  // a short, growing pause lets the winner finish its next operations on a
  // warm line. Bounded, so it never waits long; no yield (the CAS fails only
  // because another thread made progress). The cap was picked by measurement
  // on 2 threads: 16 gave half the throughput of 64, 256 about 15% more.
  struct Backoff {
    unsigned pauses = 1;
    void operator()() noexcept {
      for (unsigned i = 0; i < pauses; ++i) detail::cpu_relax();
      if (pauses < 256) pauses *= 2;
    }
  };

  struct Node {
    Node* next = nullptr;
    alignas(T) unsigned char storage[sizeof(T)];
    T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  // A small per-thread cache of free nodes (at most kCachedNodes per thread
  // and per T): a freed node is kept for this thread's next push instead of
  // going back to malloc, and everything beyond the cache is really freed.
  // Nodes enter it only through free_node, i.e. once no hazard protects them,
  // exactly when they could have been freed. Disabled under ASan so that a
  // use after free would be reported rather than hidden by reuse.
#if defined(__SANITIZE_ADDRESS__)
  static constexpr std::size_t kCachedNodes = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  static constexpr std::size_t kCachedNodes = 0;
#else
  static constexpr std::size_t kCachedNodes = 64;
#endif
#else
  static constexpr std::size_t kCachedNodes = 64;
#endif

  struct NodeCache {
    Node* head = nullptr;
    std::size_t count = 0;
    NodeCache() noexcept = default;
    NodeCache(const NodeCache&) = delete;
    NodeCache& operator=(const NodeCache&) = delete;
    ~NodeCache() {
      cache_gone_ = true;  // later frees on this thread (thread_local teardown) go to malloc
      while (head != nullptr) {
        Node* n = head;
        head = n->next;
        delete n;
      }
    }
  };
  // Set once this thread's cache is destroyed; trivially destructible.
  static inline thread_local bool cache_gone_ = false;

  static NodeCache* cache() noexcept {
    if constexpr (kCachedNodes == 0) {
      return nullptr;
    } else {
      if (cache_gone_) return nullptr;
      thread_local NodeCache c;
      return &c;
    }
  }

  static Node* alloc_node() {
    if (NodeCache* c = cache(); c != nullptr && c->head != nullptr) {
      Node* n = c->head;
      c->head = n->next;
      --c->count;
      return n;
    }
    return new Node;
  }

  // The value was already destroyed by pop(); only the memory is left.
  static void free_node(void* p) noexcept {
    auto* n = static_cast<Node*>(p);
    if (NodeCache* c = cache(); c != nullptr && c->count < kCachedNodes) {
      n->next = c->head;
      c->head = n;
      ++c->count;
      return;
    }
    delete n;
  }

  CachePadded<std::atomic<Node*>> head_{};
};

/// Process-wide statistics of the hazard-pointer reclamation Stack uses.
struct ReclamationStats {
  std::size_t
      retired;  ///< nodes popped but not yet freed, as of each thread's last scan (bounded, see Stack)
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
