// Zoo graphs: the architectures of ZOO.md, checked by parameter counts and
// output shapes someone could get wrong (a missing shortcut BN, the t = 1 expansion).
#include <gtest/gtest.h>

#include "models/detect.h"
#include "models/zoo.h"

namespace qeval {
namespace {

int64_t count_params(const Graph& g, bool include_bn_stats) {
  int64_t n = 0;
  for (const auto& [name, t] : g.constants) {
    const bool stat = name.ends_with("running_mean") || name.ends_with("running_var");
    if (!stat || include_bn_stats) n += t.numel();
  }
  return n;
}

TEST(Zoo, Resnet8MatchesZooMd) {
  auto g = build_zoo_graph("resnet8");
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  // ZOO.md: "≈ 78k parameters"; sum(p.numel() for p in ResNet8().parameters()) of the
  // PyTorch mirror (models/peers/zoo_torch.py, python3-torch 1.13) is 77754.
  EXPECT_EQ(count_params(*g, false), 77754);
  EXPECT_EQ(g->value("logits").shape, (Shape{1, 10}));
  EXPECT_TRUE(g->find_constant("layer2.shortcut.0.weight"));
  EXPECT_FALSE(g->find_constant("layer1.shortcut.0.weight"));  // identity shortcut
}

TEST(Zoo, MobilenetKeepsExpansionForT1) {
  auto g = build_zoo_graph("mobilenetv2_tiny");
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  const Tensor* w = g->find_constant("blocks.0.expand.0.weight");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->shape(), (Shape{16, 16, 1, 1}));
  EXPECT_EQ(count_params(*g, false), 86922);  // the PyTorch mirror's parameter count
  const Tensor* dw = g->find_constant("blocks.1.dw.0.weight");
  ASSERT_TRUE(dw);
  EXPECT_EQ(dw->shape(), (Shape{64, 1, 3, 3}));  // depthwise: h = 16·4
  EXPECT_EQ(g->value("logits").shape, (Shape{1, 10}));
}

TEST(Zoo, Lenet5Shapes) {
  auto g = build_zoo_graph("lenet5");
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  // conv1 156, conv2 2416, fc1 48120, fc2 10164, fc3 850.
  EXPECT_EQ(count_params(*g, false), 61706);
}

TEST(Zoo, DetTinyHeadShape) {
  auto g = build_zoo_graph("det_tiny");
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  EXPECT_EQ(g->value(g->outputs[0]).shape, (Shape{1, kDetHeadChannels, kDetGrid, kDetGrid}));
}

TEST(Zoo, SeedsAreDeterministic) {
  auto a = build_zoo_graph("resnet8", 7), b = build_zoo_graph("resnet8", 7), c = build_zoo_graph("resnet8", 8);
  EXPECT_TRUE(a->constants.at("fc.weight").equals(b->constants.at("fc.weight")));
  EXPECT_FALSE(a->constants.at("fc.weight").equals(c->constants.at("fc.weight")));
}

TEST(Zoo, UnknownModelNamesTheKnownOnes) {
  auto g = build_zoo_graph("resnet9");
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().message().find("resnet8"), std::string::npos);
}

TEST(Detect, EncodeDecodeRoundTrip) {
  // A head whose heatmap logits peak at the encoded centres decodes to the boxes.
  std::vector<DetBox> boxes = {{3, 10.f, 20.f, 30.f, 24.f, 1.f}, {7, 50.f, 40.f, 28.f, 40.f, 1.f}};
  DetTargets t = encode_det_targets(boxes);
  std::vector<float> head(kDetHeadChannels * kDetGrid * kDetGrid, -10.f);
  for (size_t i = 0; i < t.heat.size(); ++i) head[i] = t.heat[i] == 1.f ? 5.f : -10.f;
  std::copy(t.reg.begin(), t.reg.end(), head.begin() + kDetClasses * kDetGrid * kDetGrid);
  auto dets = decode_det_head(head.data());
  ASSERT_EQ(dets.size(), 2u);
  for (const DetBox& d : dets) {
    const DetBox& ref = d.category == 3 ? boxes[0] : boxes[1];
    EXPECT_NEAR(d.x, ref.x, 1e-4);
    EXPECT_NEAR(d.y, ref.y, 1e-4);
    EXPECT_NEAR(d.w, ref.w, 1e-4);
    EXPECT_NEAR(d.h, ref.h, 1e-4);
  }
}

}  // namespace
}  // namespace qeval
