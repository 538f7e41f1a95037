// tools/load/histogram.h: pf-load's latency histogram, one per thread, merged at the end.
// Log-linear buckets like HdrHistogram: exact below 256 us, then 128 linear buckets per
// power of two, so a reported value is within 1/128 (0.8%) of what was recorded.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace pf::load {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;  // linear buckets per octave
  static constexpr int kMaxBits = 40;                        // 2^40 us is about 12.7 days
  static constexpr uint64_t kMaxValue = (uint64_t{1} << kMaxBits) - 1;
  static constexpr size_t kBuckets = (kMaxBits - kSubBits + 1) * kSub;

  // Fixed storage: recording never allocates.
  void Record(uint64_t us) {
    us = std::min(us, kMaxValue);
    ++counts_[Index(us)];
    ++count_;
    sum_ += us;
    max_ = std::max(max_, us);
    min_ = std::min(min_, us);
  }

  void Merge(const LatencyHistogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
  }

  void Clear() { *this = LatencyHistogram{}; }

  uint64_t Count() const { return count_; }
  uint64_t Max() const { return max_; }
  uint64_t Min() const { return count_ ? min_ : 0; }
  double Mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }

  // The smallest bucket upper bound that covers the fraction q (0..1] of the values,
  // clamped to the largest value seen (as HdrHistogram's highestEquivalentValue).
  uint64_t Percentile(double q) const {
    if (count_ == 0) return 0;
    uint64_t target = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    target = std::clamp<uint64_t>(target, 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= target) return std::clamp(Upper(i), Min(), max_);
    }
    return max_;
  }

  static constexpr size_t Index(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);
    const int msb = 63 - std::countl_zero(v);
    const int shift = msb - kSubBits;  // bucket width in this octave is 2^shift
    return static_cast<size_t>(shift) * kSub + static_cast<size_t>(v >> shift);
  }

  static constexpr uint64_t Upper(size_t index) {
    if (index < 2 * kSub) return index;
    const uint64_t shift = index / kSub - 1;
    const uint64_t mantissa = index - shift * kSub;  // in [kSub, 2*kSub)
    return ((mantissa + 1) << shift) - 1;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

static_assert(LatencyHistogram::Index(255) == 255);
static_assert(LatencyHistogram::Index(256) == 256);
static_assert(LatencyHistogram::Index(512) == 384);
static_assert(LatencyHistogram::Upper(256) == 257);
static_assert(LatencyHistogram::Upper(LatencyHistogram::Index(1000)) >= 1000);
static_assert(LatencyHistogram::Index(LatencyHistogram::kMaxValue) ==
              LatencyHistogram::kBuckets - 1);

}  // namespace pf::load
