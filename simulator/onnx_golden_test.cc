// Golden: the quantized-op node tests of the ONNX backend test suite, as
// shipped by Debian's libonnx-testdata (onnx/backend/test/data/node/*). Each
// model runs through import -> lowering (onnx-qdq profile) -> reference
// kernels, and every output must equal the expected tensor bit for bit.
#include <gtest/gtest.h>

#include <filesystem>

#include "simulator/onnx_import.h"
#include "simulator/program.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;
const char* kNodeDir = "/usr/share/libonnx-testdata/data/node";

class OnnxNodeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OnnxNodeTest, MatchesExpectedBitForBit) {
  const fs::path dir = fs::path(kNodeDir) / GetParam();
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " missing: apt-get install libonnx-testdata";
  auto names = onnx_input_names((dir / "model.onnx").string());
  ASSERT_TRUE(names.is_ok()) << names.status().message();
  // Scales and zero points are folded as constants (as `qeval sim` does with
  // --input values an op needs as constants); data and weights stay inputs.
  OnnxImportOptions opts;
  for (size_t i = 0; i < names->size(); ++i) {
    auto t = read_tensor_pb((dir / "test_data_set_0" / fmt::format("input_{}.pb", i)).string());
    ASSERT_TRUE(t.is_ok()) << t.status().message();
    opts.bindings[(*names)[i]] = *t;
  }
  auto g = import_onnx_file((dir / "model.onnx").string(), opts);
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  ASSERT_FALSE(g->inputs.empty());
  std::map<std::string, Tensor> feeds;
  for (const auto& in : g->inputs) feeds[in] = opts.bindings.at(in);
  auto profile = load_profile("onnx-qdq");
  ASSERT_TRUE(profile.is_ok()) << profile.status().message();
  auto lowered = lower_graph(*g, *profile);
  ASSERT_TRUE(lowered.is_ok()) << lowered.status().message();
  auto ex = Executor::create(*lowered, *profile);
  ASSERT_TRUE(ex.is_ok()) << ex.status().message();
  auto out = ex->run(feeds);
  ASSERT_TRUE(out.is_ok()) << out.status().message();
  const auto& outputs = ex->graph().outputs;
  int64_t compared = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    auto want = read_tensor_pb((dir / "test_data_set_0" / fmt::format("output_{}.pb", i)).string());
    ASSERT_TRUE(want.is_ok());
    const Tensor& got = out->at(outputs[i]);
    ASSERT_EQ(got.dtype(), want->dtype()) << outputs[i];
    ASSERT_EQ(got.shape(), want->shape()) << outputs[i];
    for (int64_t k = 0; k < got.numel(); ++k) {
      EXPECT_EQ(std::memcmp(static_cast<const char*>(got.raw()) + k * dtype_size(got.dtype()),
                            static_cast<const char*>(want->raw()) + k * dtype_size(got.dtype()),
                            dtype_size(got.dtype())), 0)
          << outputs[i] << "[" << k << "]: got " << got.get_double(k) << ", want "
          << want->get_double(k);
    }
    compared += got.numel();
  }
  EXPECT_GT(compared, 0);
}

INSTANTIATE_TEST_SUITE_P(
    QuantizedOps, OnnxNodeTest,
    ::testing::Values("test_quantizelinear", "test_quantizelinear_axis", "test_dequantizelinear",
                      "test_dequantizelinear_axis", "test_qlinearconv", "test_qlinearmatmul_2D",
                      "test_qlinearmatmul_3D", "test_convinteger_with_padding",
                      "test_convinteger_without_padding", "test_basic_convinteger",
                      "test_matmulinteger", "test_dynamicquantizelinear",
                      "test_dynamicquantizelinear_max_adjusted",
                      "test_dynamicquantizelinear_min_adjusted"));

}  // namespace
}  // namespace qeval
