#include "core/graph.h"

#include <gtest/gtest.h>

namespace qeval {
namespace {

Graph small_graph() {
  Graph g;
  g.name = "small";
  g.inputs = {"x"};
  g.outputs = {"y"};
  g.value("x").shape = {1, 3, 8, 8};
  g.value("x").dtype = DType::kInt8;
  g.value("x").quant = QuantParams{DType::kInt8, {0.05f}, {-3}, -1};
  g.constants["w"] = Tensor::from_vector<int8_t>({4, 3, 3, 3}, std::vector<int8_t>(108, 2));
  g.constants["b"] = Tensor::from_vector<int32_t>({4}, {1, -2, 3, -4});
  Node conv;
  conv.op = OpKind::kConv2d;
  conv.name = "conv";
  conv.inputs = {"x", "w", "b"};
  conv.outputs = {"c"};
  conv.attrs["strides"] = std::vector<int64_t>{2, 2};
  conv.attrs["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  conv.params["multiplier"] = Tensor::from_vector<int32_t>({4}, {1 << 30, 3, 4, 5});
  Node relu;
  relu.op = OpKind::kRelu;
  relu.name = "relu";
  relu.inputs = {"c"};
  relu.outputs = {"y"};
  relu.attrs["alpha"] = 0.5;
  relu.attrs["mode"] = std::string("fast");
  g.nodes = {conv, relu};
  g.metadata["profile"] = "bm1690";
  return g;
}

TEST(Graph, OpTableFromOpsInc) {
  EXPECT_STREQ(op_name(OpKind::kConv2d), "Conv2d");
  EXPECT_EQ(*op_from_name("GlobalAvgPool"), OpKind::kGlobalAvgPool);
  EXPECT_FALSE(op_from_name("Conv3d").is_ok());
  EXPECT_GE(op_count(), 20);
}

TEST(Graph, ShapeInference) {
  Graph g = small_graph();
  ASSERT_TRUE(g.validate().is_ok());
  ASSERT_TRUE(g.infer_shapes().is_ok());
  EXPECT_EQ(g.value("y").shape, (Shape{1, 4, 4, 4}));
}

TEST(Graph, ShapeInferenceErrorsNameTheNode) {
  Graph g = small_graph();
  g.value("x").shape = {1, 5, 8, 8};
  Status s = g.infer_shapes();
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("node 'conv' (Conv2d)"), std::string::npos) << s.message();
}

TEST(Graph, ValidateCatchesUndefinedInput) {
  Graph g = small_graph();
  g.nodes[1].inputs = {"nope"};
  Status s = g.validate();
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("'nope'"), std::string::npos);
}

TEST(Graph, SerialisationRoundTrip) {
  Graph g = small_graph();
  ASSERT_TRUE(g.infer_shapes().is_ok());
  auto bytes = graph_to_bytes(g);
  ASSERT_TRUE(bytes.is_ok());
  auto back = graph_from_bytes(*bytes, "mem");
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->name, "small");
  EXPECT_EQ(back->metadata.at("profile"), "bm1690");
  ASSERT_EQ(back->nodes.size(), 2u);
  EXPECT_EQ(back->nodes[0].attr_ints("strides", {}), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(back->nodes[1].attr_float("alpha", 0), 0.5);
  EXPECT_EQ(back->nodes[1].attr_str("mode", ""), "fast");
  EXPECT_TRUE(back->nodes[0].params.at("multiplier").equals(g.nodes[0].params.at("multiplier")));
  EXPECT_TRUE(back->constants.at("w").equals(g.constants.at("w")));
  EXPECT_TRUE(back->constants.at("b").equals(g.constants.at("b")));
  EXPECT_EQ(back->value("x").quant, g.value("x").quant);
  EXPECT_EQ(back->value("y").shape, (Shape{1, 4, 4, 4}));
  // Same bytes again: deterministic serialisation.
  EXPECT_EQ(*graph_to_bytes(*back), *bytes);
}

TEST(Graph, CorruptionIsDetected) {
  auto bytes = graph_to_bytes(small_graph());
  ASSERT_TRUE(bytes.is_ok());
  std::string flipped = *bytes;
  flipped[flipped.size() - 5] ^= 0x40;
  auto r = graph_from_bytes(flipped, "m.qmodel");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("m.qmodel"), std::string::npos);
  auto t = graph_from_bytes(bytes->substr(0, bytes->size() - 10), "m.qmodel");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("truncated"), std::string::npos);
  EXPECT_FALSE(graph_from_bytes("hello world, not a model at all....", "x").is_ok());
}

TEST(Graph, ConvOutSize) {
  EXPECT_EQ(conv_out_size(32, 3, 1, 1, 1, 1), 32);
  EXPECT_EQ(conv_out_size(32, 3, 2, 1, 1, 1), 16);
  EXPECT_EQ(conv_out_size(7, 2, 2, 0, 0, 1, false), 3);
  EXPECT_EQ(conv_out_size(7, 2, 2, 0, 0, 1, true), 4);
  EXPECT_EQ(conv_out_size(10, 3, 1, 0, 0, 2), 6);
}

}  // namespace
}  // namespace qeval
