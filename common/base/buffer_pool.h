// A pool of vectors lent to frames that are sent without copying
// (Frame::Share keeps a shared_ptr to the vector until the socket is done
// with it). A vector is lent again once nothing but the pool holds it, so a
// steady stream of replies reuses the same few buffers and allocates nothing
// after the first ones.
//
// Owned by one thread; the frames it lends may be released on ZeroMQ's I/O
// thread, which only reads them.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

namespace pstrain {

template <typename T>
class VectorPool {
 public:
  // A vector of `n` elements that nobody else holds, contents unspecified.
  // Prefers a free vector whose capacity already holds n; allocates only
  // when every pooled one is in flight (or none is large enough).
  std::shared_ptr<std::vector<T>> Get(size_t n) {
    std::shared_ptr<std::vector<T>>* fit = nullptr;
    std::shared_ptr<std::vector<T>>* any = nullptr;
    for (auto& v : pool_) {
      if (v.use_count() != 1) continue;  // a frame still holds it
      if (v->capacity() >= n) {
        fit = &v;
        break;
      }
      if (any == nullptr) any = &v;
    }
    std::shared_ptr<std::vector<T>>* pick = fit != nullptr ? fit : any;
    if (pick == nullptr) {
      pool_.push_back(std::make_shared<std::vector<T>>());
      pick = &pool_.back();
    }
    // The last holder released it on another thread (an acq_rel decrement):
    // its reads happen before our writes. (ThreadSanitizer does not model
    // fences and GCC refuses them under it; there the check stays as is.)
#if !defined(__SANITIZE_THREAD__)
    std::atomic_thread_fence(std::memory_order_acquire);
#endif
    (*pick)->resize(n);
    return *pick;
  }

  size_t size() const { return pool_.size(); }

 private:
  std::vector<std::shared_ptr<std::vector<T>>> pool_;
};

}  // namespace pstrain
