// GraphBuilder: writes float IR graphs layer by layer, naming every weight as
// PyTorch's state_dict would (`layer1.conv1.weight`, `stem.1.running_var`), so
// a zoo graph and its PyTorch mirror (models/peers/zoo_torch.py) exchange
// weights by name.
#pragma once

#include <cstdint>
#include <string>

#include "core/graph.h"
#include "core/random.h"

namespace qeval {

class GraphBuilder {
 public:
  // `seed` drives weight initialisation (deterministic, platform independent).
  GraphBuilder(std::string graph_name, uint64_t seed);

  std::string input(const std::string& name, const Shape& shape);
  // Marks `value` as a graph output, renamed to `as` when given.
  void output(const std::string& value, const std::string& as = "");

  // conv(cin→cout, k, stride, pad, groups); weight `<prefix>.weight` [cout, cin/g, k, k]
  // and bias `<prefix>.bias` (when `bias`) initialised as PyTorch does: U(±1/√fan_in).
  std::string conv(const std::string& x, const std::string& prefix, int64_t cin, int64_t cout,
                   int64_t k, int64_t stride, int64_t pad, int64_t groups = 1, bool bias = false);
  // BatchNorm2d: weight=1, bias=0, running_mean=0, running_var=1, eps 1e-5.
  std::string bn(const std::string& x, const std::string& prefix, int64_t c);
  // Linear(in→out) as PyTorch initialises it: U(±1/√in) for weight and bias.
  std::string linear(const std::string& x, const std::string& prefix, int64_t in, int64_t out);
  std::string relu(const std::string& x);
  std::string relu6(const std::string& x);
  std::string silu(const std::string& x);
  std::string add(const std::string& a, const std::string& b);
  std::string concat(const std::vector<std::string>& xs, int64_t axis);
  std::string max_pool(const std::string& x, int64_t k, int64_t stride);
  std::string global_avg_pool(const std::string& x);
  std::string flatten(const std::string& x);
  std::string upsample_nearest(const std::string& x, int64_t factor);

  // Validates and infers shapes.
  Result<Graph> finish();

 private:
  std::string node(OpKind op, const std::string& name, std::vector<std::string> inputs,
                   std::map<std::string, AttrValue> attrs = {});
  Tensor uniform(Shape shape, double bound);
  std::string unique(const std::string& base);

  Graph g_;
  SplitMix64 rng_;
  std::map<std::string, int> used_;
};

}  // namespace qeval
