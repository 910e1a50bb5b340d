// Concat, Flatten, Reshape, Upsample (nearest): data movement. Integer inputs
// whose quantization differs from the output's pass through a rescale table.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "simulator/kernels/common.h"
#include "simulator/kernels/opt_kernels.h"

namespace qeval {

using namespace kern;

namespace {

// Copies element i of X to element o of Y, through the table if any.
struct Mover {
  bool integer = false;
  bool has_lut = false;
  Tensor lut;
  int32_t qmin = 0;
  void move(const Tensor& X, int64_t i, Tensor& Y, int64_t o) const {
    if (!integer) {
      store_f(Y, o, load_f(X, i));
    } else if (has_lut) {
      store_i(Y, o, load_i(lut, load_i(X, i) - qmin));
    } else {
      store_i(Y, o, load_i(X, i));
    }
  }
};

// Optimized moves (Concat, Upsample): n consecutive integer elements from X at
// i to Y at o, typed; a plain copy when there is no table. The reference's
// values (same table, same elements); nullopt-free: callers check eligible().
struct FastMover {
  const Mover* m;
  static bool eligible(const Mover& m, const Tensor& X, const Tensor& Y) {
    return m.integer && opt::small_int(X.dtype()) &&
           (m.has_lut ? opt::small_int(Y.dtype()) && m.lut.dtype() == Y.dtype() : Y.dtype() == X.dtype());
  }
  void run(const Tensor& X, int64_t i, Tensor& Y, int64_t o, int64_t n) const {
    if (!m->has_lut) {
      const size_t es = dtype_size(X.dtype());
      std::memcpy(static_cast<char*>(Y.raw()) + o * es, static_cast<const char*>(X.raw()) + i * es, n * es);
      return;
    }
    dispatch_dtype(X.dtype(), [&](auto tx) {
      using TX = decltype(tx);
      if constexpr (std::is_integral_v<TX> && sizeof(TX) <= 2) {
        dispatch_dtype(Y.dtype(), [&](auto ty) {
          using TY = decltype(ty);
          if constexpr (std::is_integral_v<TY> && sizeof(TY) <= 2) {
            const TX* x = X.data<TX>() + i;
            TY* y = Y.data<TY>() + o;
            const TY* lut = m->lut.data<TY>();
            for (int64_t k = 0; k < n; ++k) y[k] = lut[static_cast<int32_t>(x[k]) - m->qmin];
          }
        });
      }
    });
  }
};

Status lower_move(Node& n, const Graph& g, const ChipProfile& p, size_t input, const std::string& key) {
  if (!is_integer_node(n, g)) return Status::ok();
  const QView in = qview(g, n.inputs[input]), out = qview(g, n.outputs[0]);
  if (in.quantized != out.quantized) {
    return invalid_argument("{}: input '{}' and output disagree on being quantized", n.describe(),
                            n.inputs[input]);
  }
  if (in.quantized && !same_quant(in, out)) {
    QEVAL_ASSIGN_OR_RETURN(n.params[key], rescale_lut(n, in, out, p));
  }
  return Status::ok();
}

Mover make_mover(const KernelArgs& a, size_t input, const std::string& key) {
  Mover m;
  m.integer = is_integer_node(a.node, a.graph);
  auto it = a.node.params.find(key);
  if (it != a.node.params.end()) {
    m.has_lut = true;
    m.lut = it->second;
  }
  m.qmin = qview(a.graph, a.node.inputs[input]).qmin;
  return m;
}

Result<EvalFn> prepare_copy(const KernelArgs& a) {
  const Mover m = make_mover(a, 0, "lut");
  EvalFn ref([m](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    for (int64_t i = 0; i < in[0]->numel(); ++i) m.move(*in[0], i, *out[0], i);
    return Status::ok();
  });
  return optimized_or(a, ref, [&](const EvalFn& r) { return opt::tabulate_unary(a, r); });
}

}  // namespace

Status lower_Concat(Node& n, const Graph& g, const ChipProfile& p) {
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    QEVAL_RETURN_IF_ERROR(lower_move(n, g, p, i, "lut" + std::to_string(i)));
  }
  return Status::ok();
}

namespace {

// Concat along `axis`: Y is `outer` blocks of ylen elements; input k fills
// len(k) consecutive elements of each block.
struct ConcatGeometry {
  int64_t axis = 0, outer = 1, inner = 1, ylen = 0;
  ConcatGeometry(const Tensor& Y, int64_t axis_attr) : axis(axis_attr < 0 ? axis_attr + Y.rank() : axis_attr) {
    for (int64_t d = 0; d < axis; ++d) outer *= Y.dim(static_cast<int>(d));
    for (int64_t d = axis + 1; d < Y.rank(); ++d) inner *= Y.dim(static_cast<int>(d));
    ylen = Y.dim(static_cast<int>(axis)) * inner;
  }
  int64_t len(const Tensor& X) const { return X.dim(static_cast<int>(axis)) * inner; }
};

}  // namespace

Result<EvalFn> prepare_Concat(const KernelArgs& a) {
  std::vector<Mover> movers;
  for (size_t i = 0; i < a.node.inputs.size(); ++i) {
    movers.push_back(make_mover(a, i, "lut" + std::to_string(i)));
  }
  const int64_t axis_attr = a.node.attr_int("axis", 1);
  EvalFn ref([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    Tensor& Y = *out[0];
    const ConcatGeometry cg(Y, axis_attr);
    int64_t offset = 0;
    for (size_t k = 0; k < in.size(); ++k) {
      const int64_t len = cg.len(*in[k]);
      for (int64_t o = 0; o < cg.outer; ++o)
        for (int64_t j = 0; j < len; ++j) movers[k].move(*in[k], o * len + j, Y, o * cg.ylen + offset + j);
      offset += len;
    }
    return Status::ok();
  });
  // Optimized: block moves (copies, or the table typed), in parallel over each
  // input's blocks; inputs or dtypes it does not take go to the reference.
  return optimized_or(a, ref, [&](const EvalFn& r) -> std::optional<EvalFn> {
    return EvalFn([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
      Tensor& Y = *out[0];
      for (size_t k = 0; k < in.size(); ++k) {
        if (!FastMover::eligible(movers[k], *in[k], Y)) return r(in, out);
      }
      const ConcatGeometry cg(Y, axis_attr);
      int64_t offset = 0;
      for (size_t k = 0; k < in.size(); ++k) {
        const int64_t len = cg.len(*in[k]);
        const FastMover fm{&movers[k]};
        opt::parallel_chunks(cg.outer * len, [&](int64_t b, int64_t e) {
          while (b < e) {  // split [b, e) at block boundaries
            const int64_t o = b / len, j = b % len, n = std::min(e - b, len - j);
            fm.run(*in[k], o * len + j, Y, o * cg.ylen + offset + j, n);
            b += n;
          }
        });
        offset += len;
      }
      return Status::ok();
    });
  });
}

Status lower_Flatten(Node& n, const Graph& g, const ChipProfile& p) { return lower_move(n, g, p, 0, "lut"); }
Result<EvalFn> prepare_Flatten(const KernelArgs& a) { return prepare_copy(a); }
Status lower_Reshape(Node& n, const Graph& g, const ChipProfile& p) { return lower_move(n, g, p, 0, "lut"); }
Result<EvalFn> prepare_Reshape(const KernelArgs& a) { return prepare_copy(a); }

Status lower_Upsample(Node& n, const Graph& g, const ChipProfile& p) { return lower_move(n, g, p, 0, "lut"); }
Result<EvalFn> prepare_Upsample(const KernelArgs& a) {
  const Mover m = make_mover(a, 0, "lut");
  EvalFn ref([m](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
    const Tensor& X = *in[0];
    Tensor& Y = *out[0];
    const int64_t NC = X.dim(0) * X.dim(1), H = X.dim(2), W = X.dim(3), OH = Y.dim(2), OW = Y.dim(3);
    const int64_t sh = OH / H, sw = OW / W;
    for (int64_t p = 0; p < NC; ++p)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow)
          m.move(X, (p * H + oh / sh) * W + ow / sw, Y, (p * OH + oh) * OW + ow);
    return Status::ok();
  });
  // Optimized: each input row moved once (typed, through the table if any) into
  // the first of its output rows with its columns repeated, then that row copied
  // to the other sh - 1; planes in parallel.
  return optimized_or(a, ref, [&](const EvalFn& r) -> std::optional<EvalFn> {
    return EvalFn([=](const std::vector<const Tensor*>& in, std::vector<Tensor*>& out) -> Status {
      const Tensor& X = *in[0];
      Tensor& Y = *out[0];
      if (X.rank() != 4 || Y.rank() != 4 || !FastMover::eligible(m, X, Y)) return r(in, out);
      const int64_t NC = X.dim(0) * X.dim(1), H = X.dim(2), W = X.dim(3), OH = Y.dim(2), OW = Y.dim(3);
      const int64_t sh = OH / H, sw = OW / W;
      const size_t es = dtype_size(Y.dtype());
      char* yb = static_cast<char*>(Y.raw());
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, NC), [&](const tbb::blocked_range<int64_t>& rg) {
        Tensor mapped(Y.dtype(), {W});
        const FastMover fm{&m};
        for (int64_t p = rg.begin(); p < rg.end(); ++p) {
          for (int64_t h = 0; h < H; ++h) {
            fm.run(X, (p * H + h) * W, mapped, 0, W);  // the row through the table (or copied)
            char* first = yb + ((p * OH + h * sh) * OW) * es;
            const char* src = static_cast<const char*>(mapped.raw());
            for (int64_t ow = 0; ow < OW; ++ow) std::memcpy(first + ow * es, src + (ow / sw) * es, es);
            for (int64_t k = 1; k < sh; ++k) std::memcpy(first + k * OW * es, first, OW * es);
          }
        }
      });
      return Status::ok();
    });
  });
}

}  // namespace qeval
