// qeval diagnose's torch-free logic: program and profile checks, the sensitivity
// ranking, the greedy fix search and the cfg patch it writes.
#include "harness/diagnose.h"

#include <gtest/gtest.h>

#include <numeric>

#include "harness/cfg.h"
#include "datasets/temp_dir_test_util.h"

namespace qeval {
namespace {

QuantParams qp(float scale, int32_t zp = 0, DType dt = DType::kInt8) {
  QuantParams q;
  q.dtype = dt;
  q.scale = {scale};
  q.zero_point = {zp};
  return q;
}

void add_value(Graph& g, const std::string& name, std::optional<QuantParams> q, DType dt = DType::kInt8) {
  ValueInfo& v = g.value(name);
  v.name = name;
  v.dtype = q ? dt : DType::kFloat32;
  v.quant = q;
}

size_t count_of(const std::vector<Finding>& f, const std::string& subject) {
  return static_cast<size_t>(std::count_if(f.begin(), f.end(), [&](const Finding& x) { return x.subject == subject; }));
}

const Finding* find(const std::vector<Finding>& f, const std::string& subject) {
  for (const Finding& x : f) {
    if (x.subject == subject) return &x;
  }
  return nullptr;
}

// A lowered-program-shaped graph: x -> conv -> relu (own quantizer) -> add(relu, y) ;
// a BatchNorm left over; one activation with a zero point on a symmetric profile.
Graph program_with_problems() {
  Graph g;
  g.inputs = {"x", "y"};
  add_value(g, "x", qp(0.05f));
  add_value(g, "y", qp(0.5f));
  add_value(g, "conv", qp(0.1f));
  add_value(g, "relu", qp(0.05f));  // different from conv's: not fused
  add_value(g, "sum", qp(0.5f, 3)); // zero point 3 on symmetric bm1690
  add_value(g, "bn", std::nullopt);
  g.constants["w"] = Tensor();
  add_value(g, "w", qp(0.01f));
  g.value("w").shape = {4, 1, 3, 3};
  g.nodes.push_back(Node{OpKind::kConv2d, "conv", {"x", "w"}, {"conv"}, {}, {}});
  g.nodes.push_back(Node{OpKind::kRelu, "relu", {"conv"}, {"relu"}, {}, {}});
  g.nodes.push_back(Node{OpKind::kAdd, "add", {"relu", "y"}, {"sum"}, {}, {}});
  g.nodes.push_back(Node{OpKind::kBatchNorm, "bn", {"sum"}, {"bn"}, {}, {}});
  g.outputs = {"bn"};
  return g;
}

TEST(DiagnoseChecks, ProgramChecksFindEachPlantedProblem) {
  Graph fp32;
  for (const char* n : {"conv", "relu", "add", "bn"}) fp32.nodes.push_back(Node{OpKind::kRelu, n, {}, {n}, {}, {}});
  const Graph p = program_with_problems();
  auto profile = load_profile("bm1690");
  ASSERT_TRUE(profile.is_ok()) << profile.status().message();
  QuantConfig cfg;
  const auto f = program_checks(fp32, p, cfg, *profile);
  EXPECT_EQ(count_of(f, "unfused_batchnorm"), 1u);
  EXPECT_EQ(count_of(f, "unfused_activation"), 1u);
  ASSERT_NE(find(f, "scale_mismatch"), nullptr);
  EXPECT_NEAR(find(f, "scale_mismatch")->value, 10.0, 1e-5);  // 0.5 / 0.05
  EXPECT_NE(find(f, "scale_mismatch")->detail.find("add"), std::string::npos);
  // conv's weights are per-tensor while bm1690 and the cfg want per-channel; sum has zp 3.
  EXPECT_EQ(count_of(f, "profile_rule"), 2u);
  // The same program on a cfg that asks for per-tensor weights loses that finding.
  cfg.per_channel = false;
  EXPECT_EQ(count_of(program_checks(fp32, p, cfg, *profile), "profile_rule"), 1u);
}

TEST(DiagnoseChecks, CleanProgramHasNoFindings) {
  Graph g;
  g.inputs = {"x"};
  add_value(g, "x", qp(0.05f));
  add_value(g, "conv", qp(0.1f));
  add_value(g, "relu", qp(0.1f));  // shares the conv's quantizer: fused
  g.nodes.push_back(Node{OpKind::kConv2d, "conv", {"x"}, {"conv"}, {}, {}});
  g.nodes.push_back(Node{OpKind::kRelu, "relu", {"conv"}, {"relu"}, {}, {}});
  g.outputs = {"relu"};
  auto profile = load_profile("bm1690");
  ASSERT_TRUE(profile.is_ok());
  EXPECT_TRUE(program_checks(g, g, QuantConfig{}, *profile).empty());
}

TEST(DiagnoseChecks, LayerProfileChecks) {
  LayerResult ok;
  ok.name = "ok";
  ok.bits = 8;
  ok.lo = -1;
  ok.hi = 1;
  ok.saturation = 0.001;
  ok.outlier = 1.5;
  LayerResult sat = ok, out = ok, nan = ok, flt = ok;
  sat.name = "sat";
  sat.saturation = 0.35;
  out.name = "out";
  out.outlier = 12;
  nan.name = "nan";
  nan.lo = kNaN;
  flt.name = "float";  // a float value is not judged
  flt.bits = 0;
  flt.saturation = 0.9;
  const auto f = layer_checks({ok, sat, out, nan, flt});
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].subject, "saturation");
  EXPECT_NE(f[0].detail.find("sat: 35.00%"), std::string::npos) << f[0].detail;
  EXPECT_DOUBLE_EQ(f[0].value, 0.35);
  EXPECT_EQ(f[1].subject, "outlier_range");
  EXPECT_EQ(f[2].subject, "non_finite");
}

TEST(DiagnoseRanking, FloatGainFirstThenQuantizedLossThenSqnr) {
  // fp32 90, all quantized 80 (SQNR 20 dB).
  std::vector<Sensitivity> rows = {
      {"a", 89.0, 30.0, 81.0, 21.0},  // gain 1
      {"b", 85.0, 25.0, 88.0, 26.0},  // gain 8
      {"c", 89.5, 35.0, 81.0, 22.0},  // gain 1, loss 0.5 < a's 1.0
      {"d", 89.0, 30.0, 81.0, 23.0},  // gain 1, loss 1 (= a), SQNR gain 3 > a's 1
  };
  rank_sensitivity(rows, 90.0, 80.0, 20.0);
  std::vector<std::string> order;
  for (const auto& r : rows) order.push_back(r.layer);
  EXPECT_EQ(order, (std::vector<std::string>{"b", "d", "a", "c"}));
  EXPECT_EQ(rows[0].rank, 1);
  EXPECT_EQ(rows[3].rank, 4);
}

// A model where layer i, changed, adds gain[i] points; it passes at >= need.
FixEvaluator additive(const std::map<std::string, double>& gain, double base, double need, int* calls) {
  return [=](const std::vector<std::vector<std::string>>& sets) -> Result<std::vector<FixTrial>> {
    std::vector<FixTrial> out;
    for (const auto& s : sets) {
      ++*calls;
      double m = base;
      for (const auto& l : s) m += gain.at(l);
      out.push_back(FixTrial{{}, m >= need, m});
    }
    return out;
  };
}

TEST(DiagnoseFix, ShortestPassingPrefixThenUnneededLayersDropped) {
  // The ranking puts a useless layer "u" second (noise); the fix needs a and b.
  const std::map<std::string, double> gain = {{"a", 3}, {"u", 0}, {"b", 2}, {"c", 0.5}, {"d", 0.1}};
  int calls = 0;
  auto r = search_fix({"a", "u", "b", "c", "d"}, 0, 2, additive(gain, 85, 89.5, &calls));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_TRUE(r->found);
  EXPECT_EQ(r->layers, (std::vector<std::string>{"a", "b"}));
  EXPECT_DOUBLE_EQ(r->metric, 90);
  EXPECT_EQ(static_cast<int>(r->trials.size()), calls);
  // Prefixes {1,2} then {3,4} (3 passes), then removals of a, u, b (u goes), then of a, b (none passes).
  EXPECT_EQ(calls, 4 + 3 + 2);
}

TEST(DiagnoseFix, NotFoundWhenNoPrefixPasses) {
  const std::map<std::string, double> gain = {{"a", 1}, {"b", 1}};
  int calls = 0;
  auto r = search_fix({"a", "b"}, 0, 3, additive(gain, 80, 90, &calls));
  ASSERT_TRUE(r.is_ok());
  EXPECT_FALSE(r->found);
  EXPECT_EQ(calls, 2);
  // max_layers caps the prefixes.
  calls = 0;
  r = search_fix({"a", "b"}, 1, 3, additive(gain, 80, 81, &calls));
  ASSERT_TRUE(r->found);
  EXPECT_EQ(r->layers, std::vector<std::string>{"a"});
}

TEST(DiagnoseGate, TheJobsOtherGatesCountToo) {
  JobResult j;
  j.id = "m/bm1690/ptq";
  j.metrics = {{"top1", 89.4, 89.8, -0.4, "drop <= 0.50", true, true, 0.5},
               {"min_layer_cos", 0.9696, kNaN, kNaN, ">= 0.9700 (x)", true, false}};
  auto g = gate_metric(j, kNaN);
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  EXPECT_EQ(g->name, "top1");
  EXPECT_DOUBLE_EQ(g->allowed_drop, 0.5);
  EXPECT_TRUE(g->metric_passes());
  EXPECT_FALSE(g->passes());
  ASSERT_EQ(g->other_failures.size(), 1u);
  EXPECT_NE(g->other_failures[0].find("min_layer_cos"), std::string::npos);
  j.metrics[1].pass = true;
  EXPECT_TRUE(gate_metric(j, kNaN)->passes());
  EXPECT_FALSE(gate_metric(j, 0.3)->passes());  // --tolerance replaces the cfg's drop
  j.metrics.pop_back();
  j.metrics[0].allowed_drop = kNaN;
  EXPECT_FALSE(gate_metric(j, kNaN).is_ok());  // no tolerance anywhere
}

class DiagnosePatch : public TempDirTest {};

TEST_F(DiagnosePatch, PatchLoadsAsACfgThatRunEvalAccepts) {
  write("m.yaml", "model: mobilenetv2_tiny\nquant: {weight_bits: 4, float_layers: [fc], layer_bits: {x: 4}}\n");
  auto base = load_model_cfg((dir_ / "m.yaml").string());
  ASSERT_TRUE(base.is_ok()) << base.status().message();
  for (FixAction a : {FixAction::kBits8, FixAction::kInt16, FixAction::kFloat}) {
    const std::string text = fix_patch_yaml("m.yaml", "m_fix", base->quant, {"conv'1", "conv2"}, a, "line 1\nline 2");
    auto c = parse_model_cfg(text, (dir_ / "m_fix.yaml").string());
    ASSERT_TRUE(c.is_ok()) << c.status().message() << "\n" << text;
    EXPECT_EQ(c->name, "m_fix");
    EXPECT_EQ(c->quant.weight_bits, 4);
    if (a == FixAction::kBits8) {
      EXPECT_EQ(c->quant.layer_bits, (std::map<std::string, int>{{"conv'1", 8}, {"conv2", 8}, {"x", 4}}));
      EXPECT_EQ(c->quant.float_layers, std::vector<std::string>{"fc"});
    } else if (a == FixAction::kInt16) {
      EXPECT_EQ(c->quant.int16_layers, (std::vector<std::string>{"conv'1", "conv2"}));
    } else {
      EXPECT_EQ(c->quant.float_layers, (std::vector<std::string>{"fc", "conv'1", "conv2"}));
    }
  }
  auto f = parse_model_cfg(float_layers_patch_yaml("m.yaml", "only.conv2", {"a", "b"}),
                           (dir_ / "v.yaml").string());
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->quant.float_layers, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f->name, "only.conv2");
}

}  // namespace
}  // namespace qeval
