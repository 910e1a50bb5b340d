// The QAT core end to end on zoo graphs (quant/plan, quant/qat, quant/aligned,
// models/quantize): plan structure, deploy-aligned forward == simulator element
// for element (int8, hybrid float, int16 layers), exact QAT resume, NaN stop,
// config errors, calibration table format.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/file_io.h"
#include "models/quantize.h"
#include "models/train_loop.h"
#include "quant/aligned.h"
#include "quant/export.h"
#include "quant/qat.h"
#include "simulator/program.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

ChipProfile bm1690() { return *load_profile("bm1690"); }

Graph zoo(const std::string& name) {
  auto g = build_zoo_graph(name, 7);
  EXPECT_TRUE(g.is_ok());
  return *g;
}

// Deterministic "images": smooth patterns plus noise, normalised as the zoo's inputs.
torch::Tensor images(int64_t n, int64_t hw, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor base = torch::linspace(-1.5, 2.0, hw).reshape({1, 1, 1, hw}) * torch::linspace(0.5, 1.0, hw).reshape({1, 1, hw, 1});
  return (base + 0.8 * torch::randn({n, 1, hw, hw})).contiguous();
}

std::unique_ptr<QatModule> calibrated(const Graph& g, const QuantConfig& cfg, const torch::Tensor& x) {
  auto m = QatModule::create(g, cfg, bm1690(), QatOptions{});
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  (*m)->enable_calibration();
  EXPECT_TRUE((*m)->forward({x}).is_ok());
  EXPECT_TRUE((*m)->enable_quantization().is_ok());
  return std::move(*m);
}

TEST(Plan, Resnet8GroupsConvBnReluAndFoldsBn) {
  QuantConfig cfg;
  auto plan = plan_quantization(zoo("resnet8"), cfg, bm1690());
  ASSERT_TRUE(plan.is_ok()) << plan.status().message();
  EXPECT_EQ(plan->folded_bn.size(), 9u);   // every conv has its BN
  EXPECT_EQ(plan->weight.size(), 10u);     // 9 convs + fc
  // input, stem, 3 blocks x (bn1.relu, bn2, add.relu) + 2 shortcuts, gap, logits
  EXPECT_EQ(plan->act.size(), 15u);
  EXPECT_EQ(plan->owner("stem.0"), plan->owner("stem.1.relu"));  // conv, bn, relu: one quantizer
  EXPECT_EQ(plan->owner("stem.1"), "stem.1.relu");
  // Flatten passes the pooled value's quantization on.
  const Graph g = zoo("resnet8");
  for (const Node& n : g.nodes) {
    if (n.op == OpKind::kFlatten) {
      EXPECT_EQ(plan->owner(n.outputs[0]), plan->owner(n.inputs[0]));
    }
  }
}

TEST(Plan, UnknownLayerAndBadBitsNameTheKey) {
  QuantConfig cfg;
  cfg.source = "m.yaml:3";
  cfg.float_layers = {"fcx"};
  auto p = plan_quantization(zoo("resnet8"), cfg, bm1690());
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("quant.float_layers: 'fcx' is not a layer of resnet8"), std::string::npos)
      << p.status().message();
  EXPECT_NE(p.status().message().find("layer3.conv2"), std::string::npos);  // lists the layers
  cfg.float_layers.clear();
  cfg.weight_bits = 3;
  auto m = QatModule::create(zoo("resnet8"), cfg, bm1690(), QatOptions{});
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().message(), "m.yaml:3: quant.weight_bits: 3 (bm1690 allows 4, 8)");
  auto bad = parse_quantize_cfg("quant:\n  observer: kl\n", "c.yaml");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("c.yaml:2"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("minmax"), std::string::npos) << bad.status().message();
  auto fq = parse_quantize_cfg("qat:\n  fake_quant: pact\n", "c.yaml");
  ASSERT_FALSE(fq.is_ok());
  EXPECT_EQ(fq.status().message(), "c.yaml:2: qat.fake_quant: 'pact' (allowed: lsq, ste)");
}

// Runs the lowered program in the simulator and the deploy-aligned forward on
// `x`; every integer value must be equal. Returns the number of elements compared.
int64_t expect_aligned_equals_simulator(const Graph& quantized, const torch::Tensor& x) {
  const ChipProfile p = bm1690();
  auto prog = lower_graph(quantized, p);
  EXPECT_TRUE(prog.is_ok()) << prog.status().message();
  Graph g = *prog;
  g.value("input").shape[0] = -1;
  auto ex = Executor::create(g, p);
  EXPECT_TRUE(ex.is_ok()) << ex.status().message();
  RunOptions ro;
  ro.keep_intermediates = true;
  auto sim = ex->run({{"input", *from_torch(x)}}, ro);
  EXPECT_TRUE(sim.is_ok()) << sim.status().message();
  auto al = run_deploy_aligned(*prog, p, {{"input", x}}, true);
  EXPECT_TRUE(al.is_ok()) << al.status().message();
  int64_t compared = 0;
  for (const auto& [name, vi] : prog->values) {
    if (prog->is_constant(name) || !sim->count(name)) continue;
    torch::Tensor s = to_torch(sim->at(name));
    torch::Tensor a = al->at(name);
    if (vi.quant) {
      EXPECT_TRUE(torch::equal(s.to(torch::kInt32), a.to(torch::kInt32))) << name;
      compared += s.numel();
    }
  }
  // The float logits are the same dequantized integers.
  EXPECT_TRUE(torch::equal(to_torch(sim->at("logits")), al->at("logits")));
  return compared;
}

TEST(DeployAligned, EqualsSimulatorOnResnet8AndMobilenet) {
  for (const std::string name : {"resnet8", "mobilenetv2_tiny"}) {
    const torch::Tensor x = images(24, 32, 1);
    auto m = calibrated(zoo(name), QuantConfig{}, x);
    auto q = m->convert_deploy();
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    EXPECT_GT(expect_aligned_equals_simulator(*q, images(16, 32, 2)), 100000) << name;
  }
}

TEST(DeployAligned, HybridFloatAndInt16Layers) {
  QuantConfig cfg;
  cfg.float_layers = {"fc"};
  cfg.int16_layers = {"layer2.conv1"};
  cfg.layer_bits = {{"layer3.conv2", 4}};
  const torch::Tensor x = images(16, 32, 3);
  auto m = calibrated(zoo("resnet8"), cfg, x);
  EXPECT_TRUE(m->plan().float_nodes.count("fc"));
  auto q = m->convert_deploy();
  ASSERT_TRUE(q.is_ok()) << q.status().message();
  EXPECT_EQ(q->find_value("layer2.bn1.relu")->quant->dtype, DType::kInt16);
  EXPECT_EQ(q->find_value("layer3.conv2.weight")->quant->dtype, DType::kInt8);
  auto table = calibration_table(*q, "bm1690");
  ASSERT_TRUE(table.is_ok());
  EXPECT_NE(table->find("# work_mode:QAT_mix_prec\n# weight_bits layer3.conv2 4\n"), std::string::npos) << *table;
  // 4-bit weights: every integer weight in [-8, 7].
  const Tensor* w4 = q->find_constant("layer3.conv2.weight");
  for (int64_t i = 0; i < w4->numel(); ++i) ASSERT_LE(std::abs(w4->get_int(i) + 0.5), 8) << i;
  // fc runs in float: a Dequantize feeds it, no quantization on its output.
  EXPECT_FALSE(q->find_value("logits")->quant.has_value());
  EXPECT_EQ(q->find_constant("fc.weight")->dtype(), DType::kFloat32);
  // Integer values agree; the float fc agrees to float32 rounding.
  const ChipProfile p = bm1690();
  auto prog = lower_graph(*q, p);
  ASSERT_TRUE(prog.is_ok()) << prog.status().message();
  Graph g = *prog;
  g.value("input").shape[0] = -1;
  auto ex = Executor::create(g, p);
  ASSERT_TRUE(ex.is_ok());
  RunOptions ro;
  ro.keep_intermediates = true;
  const torch::Tensor xt = images(8, 32, 4);
  auto sim = ex->run({{"input", *from_torch(xt)}}, ro);
  ASSERT_TRUE(sim.is_ok()) << sim.status().message();
  auto al = run_deploy_aligned(*prog, p, {{"input", xt}}, true);
  ASSERT_TRUE(al.is_ok()) << al.status().message();
  for (const auto& [name, vi] : prog->values) {
    if (vi.quant && !prog->is_constant(name) && sim->count(name)) {
      EXPECT_TRUE(torch::equal(to_torch(sim->at(name)).to(torch::kInt32), al->at(name))) << name;
    }
  }
  EXPECT_TRUE(torch::allclose(to_torch(sim->at("logits")), al->at("logits"), 1e-5, 1e-5));
}

TEST(DeployAligned, PowerOfTwoScales) {
  QuantConfig cfg;
  cfg.power_of_two = true;
  auto m = calibrated(zoo("resnet8"), cfg, images(8, 32, 6));
  auto q = m->convert_deploy();
  ASSERT_TRUE(q.is_ok()) << q.status().message();
  int checked = 0;
  for (const auto& [name, vi] : q->values) {
    if (!vi.quant) continue;
    for (float s : vi.quant->scale) {
      int e = 0;
      ASSERT_EQ(std::frexp(s, &e), 0.5f) << name << " scale " << s;  // exactly 2^(e-1)
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
  EXPECT_GT(expect_aligned_equals_simulator(*q, images(4, 32, 7)), 10000);
}

TEST(CaliTable, TpuMlirFormat) {
  auto m = calibrated(zoo("resnet8"), QuantConfig{}, images(8, 32, 5));
  auto q = m->convert_deploy();
  ASSERT_TRUE(q.is_ok());
  auto t = calibration_table(*q, "bm1690");
  ASSERT_TRUE(t.is_ok());
  EXPECT_NE(t->find("# work_mode:QAT_all_int8\n"), std::string::npos);
  // Symmetric int8: threshold = 127 s and the range is [-128 s, 127 s].
  const QuantParams ip = *q->find_value("input.q")->quant;
  const std::string line = fmt::format("input {:.9g} {:.9g} {:.9g}\n", ip.scale[0] * 127.0, -128.0 * ip.scale[0],
                                       127.0 * ip.scale[0]);
  EXPECT_NE(t->find(line), std::string::npos) << *t;
  const size_t ws = t->find("#weight_scale\n");
  ASSERT_NE(ws, std::string::npos);
  EXPECT_NE(t->find("\nfc_weight 10 ", ws), std::string::npos);
  EXPECT_NE(t->find("\nstem.0_weight 16 ", ws), std::string::npos);
}

QuantizeOptions small_run(const std::string& dir, int epochs) {
  QuantizeOptions o;
  o.cfg.qat.epochs = epochs;
  o.cfg.qat.batch = 64;
  o.cfg.qat.calib_images = 128;
  o.train_limit = 384;
  o.eval_limit = 40;
  o.progress = false;
  o.compare = false;
  o.out_dir = dir;
  return o;
}

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / fmt::format("qeval_quantize_test_{}_{}", tag, ::getpid());
  fs::remove_all(d);
  return d;
}

TEST(Qat, ResumeGivesBitIdenticalWeightsAndScales) {
  const ZooModel m = *zoo_model("lenet5");
  const Graph g = zoo("lenet5");
  const fs::path a = temp_dir("a"), b = temp_dir("b");
  auto full = quantize_zoo_model(m, g, small_run(a.string(), 2));
  ASSERT_TRUE(full.is_ok()) << full.status().message();
  // Run b: two epochs, then "crash" after the first: drop epoch 2 and resume.
  ASSERT_TRUE(quantize_zoo_model(m, g, small_run(b.string(), 2)).is_ok());
  fs::remove(b / "checkpoints/lenet5.qat.epoch002.qmodel");
  fs::remove(b / "checkpoints/lenet5.qat.epoch002.optim.pt");
  QuantizeOptions ro = small_run(b.string(), 2);
  ro.resume = true;
  auto resumed = quantize_zoo_model(m, g, ro);
  ASSERT_TRUE(resumed.is_ok()) << resumed.status().message();
  auto ga = load_graph((a / "checkpoints/lenet5.qat.epoch002.qmodel").string());
  auto gb = load_graph((b / "checkpoints/lenet5.qat.epoch002.qmodel").string());
  ASSERT_TRUE(ga.is_ok() && gb.is_ok());
  ASSERT_EQ(ga->constants.size(), gb->constants.size());
  int scales = 0;
  for (const auto& [name, t] : ga->constants) {
    EXPECT_TRUE(t.equals(gb->constants.at(name))) << name;
    scales += name.rfind("qat:", 0) == 0;
  }
  EXPECT_GT(scales, 0);  // LSQ scales are checkpointed and restored too
  EXPECT_EQ(full->qat_epoch_loss, resumed->qat_epoch_loss);
  // The deployed models are the same bytes.
  EXPECT_EQ(*read_file((a / "lenet5.qmodel").string()), *read_file((b / "lenet5.qmodel").string()));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(Qat, NonFiniteLossStopsWithLayerAndHint) {
  const ZooModel m = *zoo_model("lenet5");
  const fs::path d = temp_dir("nan");
  QuantizeOptions o = small_run(d.string(), 1);
  o.cfg.qat.lr = std::numeric_limits<double>::infinity();  // the first step makes weights NaN
  auto r = quantize_zoo_model(m, zoo("lenet5"), o);
  ASSERT_FALSE(r.is_ok());
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("non-finite values at QAT step"), std::string::npos) << msg;
  EXPECT_NE(msg.find("node '"), std::string::npos) << msg;  // names the first layer
  EXPECT_NE(msg.find("lower qat.lr"), std::string::npos) << msg;
  fs::remove_all(d);
}

}  // namespace
}  // namespace qeval
