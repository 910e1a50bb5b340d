// Optimized elementwise kernels (opt_kernels.h). A pointwise integer op of
// 8/16-bit inputs is a function of at most 2^16 input values, so it becomes a
// table built at prepare time by running the reference kernel on every input
// value (pair of values for Mul): bit-identical by construction, and a typed
// lookup per element at run time (a clamp or a copy where the table is one).
// Add computes its formula in vectors; GlobalAvgPool and Quantize are typed
// loops over core/numerics. All split their elements into TBB tasks.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "simulator/kernels/opt_kernels.h"

namespace qeval::kern::opt {

namespace {

bool is_byte(const std::optional<DType>& t) {
  return t && (*t == DType::kInt8 || *t == DType::kUInt8);
}

// The dtype of a value as both its tensor and its quantization have it, or
// nullopt when they disagree (the reference's tables assume they agree).
std::optional<DType> value_dtype(const Graph& g, const std::string& name) {
  const ValueInfo* vi = g.find_value(name);
  if (!vi || qview(g, name).dtype != vi->dtype) return std::nullopt;
  return vi->dtype;
}

// Every value of dtype t in increasing order, each repeated `repeat` times,
// the sequence tiled `tiles` times.
Tensor all_values(DType t, int64_t repeat, int64_t tiles) {
  const int64_t lo = dtype_min(t), n = dtype_max(t) - lo + 1;
  Tensor x(t, {n * repeat * tiles});
  for (int64_t i = 0; i < x.numel(); ++i) x.set_int(i, lo + i / repeat % n);
  return x;
}

// Calls f(p) with p the element pointer of X's 8/16-bit dtype.
template <typename F>
void with_small_int(const Tensor& X, F&& f) {
  switch (X.dtype()) {
    case DType::kInt8:
      f(X.data<int8_t>());
      break;
    case DType::kUInt8:
      f(X.data<uint8_t>());
      break;
    default:
      f(X.data<int16_t>());
      break;
  }
}

// The lookup loops take everything by value: stores through an 8-bit y may
// alias anything in memory, so nothing the loop reads may live there.
template <typename T, typename A>
void lookup1(const T* tab, int64_t lo, const A* a, T* y, int64_t b, int64_t e) {
  for (int64_t i = b; i < e; ++i) y[i] = tab[a[i] - lo];
}
template <typename T, typename A, typename B>
void lookup2(const T* tab, int64_t alo, int64_t blo, const A* a, const B* bv, T* y, int64_t b,
             int64_t e) {
  for (int64_t i = b; i < e; ++i) y[i] = tab[(a[i] - alo) * 256 + (bv[i] - blo)];
}

}  // namespace

std::optional<EvalFn> tabulate_unary(const KernelArgs& a, const EvalFn& reference) {
  if (!is_integer_node(a.node, a.graph)) return std::nullopt;
  const auto xd = value_dtype(a.graph, a.node.inputs[0]),
             yd = value_dtype(a.graph, a.node.outputs[0]);
  if (!xd || !yd || !small_int(*xd)) return std::nullopt;
  Tensor xs = all_values(*xd, 1, 1);
  Tensor table(*yd, xs.shape());
  std::vector<Tensor*> outs{&table};
  if (!reference({&xs}, outs).is_ok()) return std::nullopt;
  // Same quantization in and out (Relu/Relu6/Clip into the group's scale,
  // Flatten): the table is a clamp, or the identity.
  const int64_t lo = dtype_min(*xd), n = xs.numel();
  const int32_t cmin = static_cast<int32_t>(table.get_int(0)),
                cmax = static_cast<int32_t>(table.get_int(n - 1));
  bool clamp = *xd == *yd && cmin <= cmax;
  for (int64_t i = 0; clamp && i < n; ++i) {
    clamp = table.get_int(i) == std::clamp<int64_t>(lo + i, cmin, cmax);
  }
  const bool identity = clamp && cmin == lo && cmax == dtype_max(*xd);
  const IsaKernels& k = kernels(isa_of(a.mode));
  return EvalFn([=, &k](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    if (X.dtype() != xs.dtype() || Y.dtype() != table.dtype() || X.numel() != Y.numel()) {
      return reference(in, out);
    }
    if (identity) {
      std::memcpy(Y.raw(), X.raw(), X.nbytes());
      return Status::ok();
    }
    if (clamp) {
      const int64_t es = static_cast<int64_t>(dtype_size(X.dtype()));
      const char* x = static_cast<const char*>(X.raw());
      char* y = static_cast<char*>(Y.raw());
      parallel_chunks(X.numel(), [=, &k](int64_t b, int64_t e) {
        k.clamp(x + b * es, X.dtype(), cmin, cmax, y + b * es, e - b);
      });
      return Status::ok();
    }
    with_small_int(X, [&](auto* x) {
      dispatch_dtype(Y.dtype(), [&](auto t) {
        using T = decltype(t);
        const T* tab = table.data<T>();
        T* y = Y.data<T>();
        parallel_chunks(Y.numel(), [=](int64_t b, int64_t e) { lookup1(tab, lo, x, y, b, e); });
      });
    });
    return Status::ok();
  });
}

std::optional<std::pair<int32_t, int32_t>> unary_as_clamp(const KernelArgs& a,
                                                          const EvalFn& reference) {
  if (!is_integer_node(a.node, a.graph) || a.node.inputs.size() != 1) return std::nullopt;
  const auto xd = value_dtype(a.graph, a.node.inputs[0]),
             yd = value_dtype(a.graph, a.node.outputs[0]);
  if (!xd || !yd || *xd != *yd || !small_int(*xd)) return std::nullopt;
  Tensor xs = all_values(*xd, 1, 1);
  Tensor table(*yd, xs.shape());
  std::vector<Tensor*> outs{&table};
  if (!reference({&xs}, outs).is_ok()) return std::nullopt;
  const int64_t lo = dtype_min(*xd), n = xs.numel();
  const int32_t cmin = static_cast<int32_t>(table.get_int(0)),
                cmax = static_cast<int32_t>(table.get_int(n - 1));
  if (cmin > cmax) return std::nullopt;
  for (int64_t i = 0; i < n; ++i) {
    if (table.get_int(i) != std::clamp<int64_t>(lo + i, cmin, cmax)) return std::nullopt;
  }
  return std::make_pair(cmin, cmax);
}

std::optional<EvalFn> tabulate_binary(const KernelArgs& a, const EvalFn& reference) {
  if (!is_integer_node(a.node, a.graph)) return std::nullopt;
  const auto ad = value_dtype(a.graph, a.node.inputs[0]),
             bd = value_dtype(a.graph, a.node.inputs[1]),
             yd = value_dtype(a.graph, a.node.outputs[0]);
  // 8-bit inputs: a 64k-entry table.
  if (!is_byte(ad) || !is_byte(bd) || !yd) return std::nullopt;
  Tensor as = all_values(*ad, 256, 1), bs = all_values(*bd, 1, 256);
  Tensor table(*yd, as.shape());
  std::vector<Tensor*> outs{&table};
  if (!reference({&as, &bs}, outs).is_ok()) return std::nullopt;
  const int64_t alo = dtype_min(*ad), blo = dtype_min(*bd);
  return EvalFn([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor &A = *in[0], &B = *in[1];
    Tensor& Y = *out[0];
    // Broadcasting (and the scalar-operand forms it brings) stays with the reference.
    if (A.dtype() != as.dtype() || B.dtype() != bs.dtype() || Y.dtype() != table.dtype() ||
        A.shape() != Y.shape() || B.shape() != Y.shape()) {
      return reference(in, out);
    }
    with_small_int(A, [&](auto* x) {
      with_small_int(B, [&](auto* z) {
        dispatch_dtype(Y.dtype(), [&](auto t) {
          using T = decltype(t);
          const T* tab = table.data<T>();
          T* y = Y.data<T>();
          parallel_chunks(Y.numel(),
                          [=](int64_t b, int64_t e) { lookup2(tab, alo, blo, x, z, y, b, e); });
        });
      });
    });
    return Status::ok();
  });
}

std::optional<EvalFn> prepare_add(const KernelArgs& a, const AddRequant& add,
                                  const EvalFn& reference) {
  const Isa isa = isa_of(a.mode);
  const auto ad = value_dtype(a.graph, a.node.inputs[0]),
             bd = value_dtype(a.graph, a.node.inputs[1]),
             yd = value_dtype(a.graph, a.node.outputs[0]);
  // The integer schemes in vectors: a shift of 1..62 bits, a quotient within int32.
  const int64_t vmax = 255 * (std::abs(int64_t{add.ma}) + std::abs(int64_t{add.mb}));
  const bool shift_ok =
      add.float_scheme || (add.r >= 1 && add.r <= 62 && (vmax >> add.r) < (int64_t{1} << 30) &&
                           std::abs(add.zc) < (1 << 30));
  if (isa == Isa::kScalar || !is_byte(ad) || !is_byte(bd) || !is_byte(yd) || !shift_ok) {
    return tabulate_binary(a, reference);
  }
  const int64_t round =
      add.float_scheme ? 0
                       : (add.mode == RoundingMode::kHalfToEven ? (int64_t{1} << (add.r - 1)) - 1
                                                                : int64_t{1} << (add.r - 1)) +
                             (int64_t{1} << 62);
  const int32_t off =
      add.float_scheme ? 0
                       : static_cast<int32_t>(static_cast<uint32_t>(uint64_t{1} << (62 - add.r)));
  const IsaKernels& k = kernels(isa);
  const DType at = *ad, bt = *bd, yt = *yd;
  return EvalFn([=, &k](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor &A = *in[0], &B = *in[1];
    Tensor& Y = *out[0];
    // Broadcasting (and the scalar-operand forms it brings) stays with the reference.
    if (A.dtype() != at || B.dtype() != bt || Y.dtype() != yt || A.shape() != Y.shape() ||
        B.shape() != Y.shape()) {
      return reference(in, out);
    }
    const char *pa = static_cast<const char*>(A.raw()), *pb = static_cast<const char*>(B.raw());
    char* py = static_cast<char*>(Y.raw());
    parallel_chunks(Y.numel(), [=, &k, &add](int64_t b, int64_t e) {
      k.add8(add, round, off, pa + b, at, pb + b, bt, py + b, yt, e - b);
    });
    return Status::ok();
  });
}

std::optional<EvalFn> prepare_global_avg_pool(const KernelArgs& a, const Requant& rq,
                                              const EvalFn& reference) {
  if (!is_integer_node(a.node, a.graph)) return std::nullopt;
  const QView qi = qview(a.graph, a.node.inputs[0]), qo = qview(a.graph, a.node.outputs[0]);
  if (!small_int(qi.dtype)) return std::nullopt;
  return EvalFn([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    if (X.dtype() != qi.dtype || X.rank() < 3 || X.dim(0) * X.dim(1) != Y.numel()) {
      return reference(in, out);
    }
    const int64_t planes = X.dim(0) * X.dim(1), area = planes ? X.numel() / planes : 0;
    with_small_int(X, [&](auto* x) {
      dispatch_dtype(Y.dtype(), [&](auto t) {
        using T = decltype(t);
        T* y = Y.data<T>();
        tbb::parallel_for(
            tbb::blocked_range<int64_t>(0, planes), [&](const tbb::blocked_range<int64_t>& r) {
              for (int64_t p = r.begin(); p < r.end(); ++p) {
                // sum(q - z) = sum(q) - z * area, exact in int64.
                int64_t s = 0;
                const auto* xp = x + p * area;
                for (int64_t i = 0; i < area; ++i) s += xp[i];
                s -= int64_t{qi.z()} * area;
                y[p] = static_cast<T>(rq.apply(saturate_int32(s), 0, qo.z(), qo.qmin, qo.qmax));
              }
            });
      });
    });
    return Status::ok();
  });
}

std::optional<EvalFn> prepare_quantize(const KernelArgs& a, const EvalFn& reference) {
  const QView q = qview(a.graph, a.node.outputs[0]);
  if (q.scale.size() > 1) return std::nullopt;
  const RoundingMode mode = a.profile.quantize_rounding;
  const IsaKernels& k = kernels(isa_of(a.mode));
  return EvalFn([=, &k](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    if (X.dtype() != DType::kFloat32 || X.numel() != Y.numel()) return reference(in, out);
    const bool fast = mode == RoundingMode::kHalfToEven &&
                      (Y.dtype() == DType::kInt8 || Y.dtype() == DType::kUInt8);
    const float* x = X.data<float>();
    if (fast) {  // 8-bit output, half to even: the vector kernel
      void* y = Y.raw();
      const int64_t es = static_cast<int64_t>(dtype_size(Y.dtype()));
      parallel_chunks(X.numel(), [&](int64_t b, int64_t e) {
        k.quantize8(x + b, q.s(), q.z(), q.qmin, q.qmax, static_cast<char*>(y) + b * es,
                    Y.dtype(), e - b);
      });
      return Status::ok();
    }
    dispatch_dtype(Y.dtype(), [&](auto t) {
      using T = decltype(t);
      T* y = Y.data<T>();
      parallel_chunks(X.numel(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          y[i] = static_cast<T>(quantize_value(x[i], q.s(), q.z(), q.qmin, q.qmax, mode));
        }
      });
    });
    return Status::ok();
  });
}

}  // namespace qeval::kern::opt
