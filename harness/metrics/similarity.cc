#include "harness/metrics/similarity.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qeval {

Similarity similarity(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0, dd = 0, mm = 0, sa = 0, sd = 0;
  for (size_t i = 0; i < n; ++i) {
    const double x = a[i], y = b[i], d = x - y, m = (x + y) / 2;
    ab += x * y;
    aa += x * x;
    bb += y * y;
    dd += d * d;
    mm += m * m;
    sa += x;
    sd += d;
  }
  Similarity s;
  s.cos = (aa == 0 && bb == 0) ? 1.0 : (aa == 0 || bb == 0) ? 0.0 : ab / (std::sqrt(aa) * std::sqrt(bb));
  s.euclid = 1.0 - std::sqrt(dd) / (std::sqrt(mm) + 1e-7);
  // Variances about the means: Σ(x − x̄)² = Σx² − (Σx)²/n.
  const double nn = n ? static_cast<double>(n) : 1.0;
  const double var_a = aa - sa * sa / nn, var_d = dd - sd * sd / nn;
  s.sqnr = var_d <= 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(std::max(var_a, 0.0) / var_d);
  return s;
}

}  // namespace qeval
