// A small, fast, seedable random generator whose streams are identical on
// every platform and standard library (std::*_distribution are not), so a
// seed fixes initialisation and data order everywhere. Not thread-safe: one
// Rng per thread or per purpose.
#pragma once

#include <cstdint>
#include <span>

namespace pstrain {

class Rng {
 public:
  // Streams with different (seed, stream) pairs are independent.
  explicit Rng(uint64_t seed, uint64_t stream = 0);

  uint64_t NextU64();
  // Uniform in [0, bound) without modulo bias. bound > 0.
  uint64_t Below(uint64_t bound);
  // Uniform in [0, 1).
  double UniformDouble();
  float Uniform(float lo, float hi);
  // Standard normal (Box-Muller).
  double Normal();

  // Fisher-Yates shuffle.
  template <typename T>
  void Shuffle(std::span<T> v) {
    for (size_t i = v.size(); i > 1; --i) {
      size_t j = Below(i);
      T tmp = v[i - 1];
      v[i - 1] = v[j];
      v[j] = tmp;
    }
  }

  // The whole state, for checkpoints.
  struct State {
    uint64_t s[4];
  };
  State GetState() const { return state_; }
  void SetState(const State& s) { state_ = s; }

 private:
  State state_;  // xoshiro256** state
};

}  // namespace pstrain
