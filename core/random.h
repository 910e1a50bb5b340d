// SplitMix64 (Steele, Lea, Flood 2014; the generator that seeds xoshiro):
// state += 0x9e3779b97f4a7c15, then two xor-shift-multiply rounds. The one
// random source of qeval (weight init, shuffling, augmentation, synthetic
// scenes): portable and seedable, so a seed means the same numbers everywhere.
#pragma once

#include <cstdint>

namespace qeval {

// The SplitMix64 output function; also hashes a value (e.g. (seed, index)) into a state.
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return splitmix64_mix(state_);
  }
  // Uniform in [0, 1) from the top 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n) (n > 0), by rejection so that it is unbiased.
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the top partial block
    uint64_t r;
    do r = next();
    while (r >= limit);
    return r % n;
  }
  uint64_t state() const { return state_; }

 private:
  uint64_t state_;
};

}  // namespace qeval
