#include "quant/observer.h"

#include <algorithm>
#include <cmath>

#include "core/numerics.h"

namespace qeval {

int64_t QuantSpec::qmin() const {
  if (!is_signed) return 0;
  return narrow_range ? -((int64_t{1} << (bits - 1)) - 1) : -(int64_t{1} << (bits - 1));
}
int64_t QuantSpec::qmax() const {
  return is_signed ? (int64_t{1} << (bits - 1)) - 1 : (int64_t{1} << bits) - 1;
}
Result<DType> QuantSpec::dtype() const {
  if (bits < 2 || bits > 16) return invalid_argument("bits = {}: allowed 2..16", bits);
  if (bits <= 8) return is_signed ? DType::kInt8 : DType::kUInt8;
  if (!is_signed) return unsupported("bits = {} unsigned: no uint16 dtype; use signed", bits);
  return DType::kInt16;
}

Result<std::pair<float, int32_t>> choose_qparams(Range r, const QuantSpec& spec) {
  QEVAL_RETURN_IF_ERROR(spec.dtype().status());
  if (spec.symmetric && !spec.is_signed) return invalid_argument("symmetric quantization needs a signed type");
  if (!std::isfinite(r.lo) || !std::isfinite(r.hi)) return invalid_argument("range [{}, {}] is not finite", r.lo, r.hi);
  const double lo = std::min(0.0, static_cast<double>(r.lo)), hi = std::max(0.0, static_cast<double>(r.hi));
  const double qmin = static_cast<double>(spec.qmin()), qmax = static_cast<double>(spec.qmax());
  double scale = spec.symmetric ? std::max(-lo, hi) / qmax : (hi - lo) / (qmax - qmin);
  if (scale <= 0 || !std::isfinite(scale)) scale = 1.0;
  if (spec.power_of_two) scale = std::exp2(std::ceil(std::log2(scale)));
  const float s = static_cast<float>(scale);
  int32_t zp = 0;
  if (!spec.symmetric) {
    zp = static_cast<int32_t>(std::clamp<double>(qmin - std::nearbyint(lo / s), qmin, qmax));
  }
  return std::make_pair(s, zp);
}

Result<QuantParams> make_quant_params(const std::vector<Range>& ranges, const QuantSpec& spec, int axis) {
  if (ranges.empty()) return invalid_argument("no range to quantize");
  QuantParams q;
  QEVAL_ASSIGN_OR_RETURN(q.dtype, spec.dtype());
  q.axis = ranges.size() > 1 ? axis : -1;
  for (const Range& r : ranges) {
    QEVAL_ASSIGN_OR_RETURN(auto sz, choose_qparams(r, spec));
    q.scale.push_back(sz.first);
    q.zero_point.push_back(sz.second);
  }
  return q;
}

std::vector<Range> per_channel_ranges(std::span<const float> data, const Shape& shape, int axis) {
  if (axis < 0) axis += static_cast<int>(shape.size());
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= shape[i];
  for (size_t i = axis + 1; i < shape.size(); ++i) inner *= shape[i];
  const int64_t ch = shape[axis];
  std::vector<Range> r(ch, Range{INFINITY, -INFINITY});
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < ch; ++c) {
      const float* p = data.data() + (o * ch + c) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        r[c].lo = std::min(r[c].lo, p[i]);
        r[c].hi = std::max(r[c].hi, p[i]);
      }
    }
  }
  return r;
}

namespace {

Status check_finite(std::span<const float> v, const std::string& kind, const std::string& layer) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      return invalid_argument("{}{} observer: value {} at index {} is not finite (lower the learning rate, "
                              "add warm-up or gradient clipping)",
                              layer.empty() ? "" : layer + ": ", kind, v[i], i);
    }
  }
  return Status::ok();
}

Range batch_range(std::span<const float> v) {
  Range r{INFINITY, -INFINITY};
  for (float x : v) {
    r.lo = std::min(r.lo, x);
    r.hi = std::max(r.hi, x);
  }
  return r;
}

// minmax: the union of all batch ranges. ema_minmax: r ← m·r + (1 − m)·batch
// (the first batch sets r), as torch.ao's MovingAverageMinMaxObserver.
class RunningRangeObserver : public Observer {
 public:
  RunningRangeObserver(ObserverOptions o, bool ema) : o_(std::move(o)), ema_(ema) {}
  Status observe(std::span<const float> v) override {
    QEVAL_RETURN_IF_ERROR(check_finite(v, kind(), o_.layer));
    if (v.empty()) return Status::ok();
    const Range b = batch_range(v);
    if (count_ == 0) {
      r_ = b;
    } else if (ema_) {
      const float m = static_cast<float>(o_.ema_momentum);
      r_ = {m * r_.lo + (1 - m) * b.lo, m * r_.hi + (1 - m) * b.hi};
    } else {
      r_ = {std::min(r_.lo, b.lo), std::max(r_.hi, b.hi)};
    }
    count_ += static_cast<int64_t>(v.size());
    return Status::ok();
  }
  Result<Range> range(const QuantSpec&) const override {
    if (count_ == 0) return invalid_argument("{}: {} observer saw no data", o_.layer, kind());
    return r_;
  }
  std::string kind() const override { return ema_ ? "ema_minmax" : "minmax"; }

 private:
  ObserverOptions o_;
  bool ema_;
  Range r_;
};

// Keeps a deterministic sample of at most sample_limit values: all of them
// until the limit, then every 2nd, 4th, ... (the stride doubles each time the
// sample fills), so the result does not depend on batch boundaries' timing.
class SampleObserver : public Observer {
 public:
  explicit SampleObserver(ObserverOptions o) : o_(std::move(o)) {}
  Status observe(std::span<const float> v) override {
    QEVAL_RETURN_IF_ERROR(check_finite(v, kind(), o_.layer));
    for (float x : v) {
      if (seen_++ % stride_ != 0) continue;
      sample_.push_back(x);
      if (static_cast<int64_t>(sample_.size()) >= std::max<int64_t>(2, o_.sample_limit)) {
        size_t k = 0;
        for (size_t i = 0; i < sample_.size(); i += 2) sample_[k++] = sample_[i];
        sample_.resize(k);
        stride_ *= 2;
      }
    }
    count_ += static_cast<int64_t>(v.size());
    return Status::ok();
  }

 protected:
  Status need_data() const {
    return sample_.empty() ? invalid_argument("{}: {} observer saw no data", o_.layer, kind()) : Status::ok();
  }
  ObserverOptions o_;
  std::vector<float> sample_;
  int64_t seen_ = 0, stride_ = 1;
};

// lo/hi at the (100 − p) and p percentiles of the sample, with numpy's default
// linear interpolation between order statistics.
class PercentileObserver : public SampleObserver {
 public:
  using SampleObserver::SampleObserver;
  Result<Range> range(const QuantSpec&) const override {
    QEVAL_RETURN_IF_ERROR(need_data());
    std::vector<float> s = sample_;
    std::sort(s.begin(), s.end());
    auto at = [&](double q) {
      const double pos = q / 100.0 * static_cast<double>(s.size() - 1);
      const size_t i = static_cast<size_t>(std::floor(pos));
      const size_t j = std::min(i + 1, s.size() - 1);
      return static_cast<float>(s[i] + (pos - i) * (s[j] - s[i]));
    };
    return Range{at(100.0 - o_.percentile), at(o_.percentile)};
  }
  std::string kind() const override { return "percentile"; }
};

// The clipping range, among 80 shrinkings of the full range (100% down to 21%),
// whose fake quantization of the sample has the least squared error.
class MseObserver : public SampleObserver {
 public:
  using SampleObserver::SampleObserver;
  Result<Range> range(const QuantSpec& spec) const override {
    QEVAL_RETURN_IF_ERROR(need_data());
    const Range full = batch_range(sample_);
    Range best = full;
    double best_err = INFINITY;
    for (int k = 100; k > 20; --k) {
      const Range r{full.lo * k / 100.0f, full.hi * k / 100.0f};
      QEVAL_ASSIGN_OR_RETURN(auto sz, choose_qparams(r, spec));
      const int32_t qmin = static_cast<int32_t>(spec.qmin()), qmax = static_cast<int32_t>(spec.qmax());
      double err = 0;
      for (float x : sample_) {
        const float y = dequantize_value(quantize_value(x, sz.first, sz.second, qmin, qmax), sz.first, sz.second);
        err += static_cast<double>(x - y) * (x - y);
      }
      if (err < best_err) {  // strict: ties keep the wider range
        best_err = err;
        best = r;
      }
    }
    return best;
  }
  std::string kind() const override { return "mse"; }
};

}  // namespace

const std::vector<std::string>& observer_kinds() {
  static const std::vector<std::string> k = {"minmax", "ema_minmax", "percentile", "mse"};
  return k;
}

Result<std::unique_ptr<Observer>> make_observer(const ObserverOptions& o) {
  if (o.kind == "minmax") return std::unique_ptr<Observer>(new RunningRangeObserver(o, false));
  if (o.kind == "ema_minmax") {
    if (!(o.ema_momentum >= 0 && o.ema_momentum < 1)) {
      return invalid_argument("ema_momentum = {}: allowed [0, 1)", o.ema_momentum);
    }
    return std::unique_ptr<Observer>(new RunningRangeObserver(o, true));
  }
  if (o.kind == "percentile") {
    if (!(o.percentile > 50 && o.percentile <= 100)) {
      return invalid_argument("percentile = {}: allowed (50, 100]", o.percentile);
    }
    return std::unique_ptr<Observer>(new PercentileObserver(o));
  }
  if (o.kind == "mse") return std::unique_ptr<Observer>(new MseObserver(o));
  std::string allowed;
  for (const auto& k : observer_kinds()) allowed += (allowed.empty() ? "" : ", ") + k;
  return invalid_argument("observer = '{}': allowed {}", o.kind, allowed);
}

}  // namespace qeval
