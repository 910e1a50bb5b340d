// Model import: resnet8's PyTorch mirror exported by python3-torch as
// TorchScript and ONNX (models/tests/export_zoo_models.py, run by ctest as a
// fixture into $QEVAL_IMPORT_DIR) must give the logits of the native zoo graph
// carrying the same weights, to 1e-4; and PyTorch's own logits too.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "core/npy.h"
#include "models/torchscript_import.h"
#include "models/zoo.h"
#include "quant/interpreter.h"
#include "simulator/onnx_import.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

std::string dir() {
  const char* d = std::getenv("QEVAL_IMPORT_DIR");
  return d ? d : "";
}

torch::Tensor run(const Graph& g, const torch::Tensor& x) {
  auto m = GraphModule::create(g);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  if (!m.is_ok()) return {};
  torch::NoGradGuard ng;
  auto out = (*m)->forward({x});
  EXPECT_TRUE(out.is_ok()) << out.status().message();
  return out.is_ok() ? (*out)[0] : torch::Tensor();
}

torch::Tensor npy(const std::string& name) {
  auto t = read_npy((fs::path(dir()) / name).string());
  EXPECT_TRUE(t.is_ok()) << t.status().message();
  return t.is_ok() ? to_torch(*t) : torch::Tensor();
}

class ImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir().empty()) << "QEVAL_IMPORT_DIR is not set (ctest sets it)";
    x_ = npy("input.npy");
    auto g = build_zoo_graph("resnet8", 123);
    ASSERT_TRUE(g.is_ok()) << g.status().message();
    // Weights by state_dict name: the zoo builder names them as PyTorch does.
    for (auto& [name, t] : g->constants) {
      auto w = read_npy((fs::path(dir()) / "weights" / (name + ".npy")).string());
      ASSERT_TRUE(w.is_ok()) << w.status().message();
      ASSERT_EQ(w->shape(), t.shape()) << name;
      t = *w;
    }
    g->value("input").shape = {x_.size(0), 1, 32, 32};
    native_ = run(*g, x_);
  }
  torch::Tensor x_, native_;
};

TEST_F(ImportTest, NativeGraphMatchesPyTorch) {
  const double diff = (native_ - npy("torch_logits.npy")).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4);
  std::printf("native vs torch: max |diff| = %.3g\n", diff);
}

TEST_F(ImportTest, TorchScriptMatchesNative) {
  auto g = import_torchscript_file((fs::path(dir()) / "resnet8.pt").string(), {x_.size(0), 1, 32, 32});
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  const double diff = (run(*g, x_) - native_).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4);
  std::printf("torchscript vs native: max |diff| = %.3g (%zu nodes)\n", diff, g->nodes.size());
}

TEST_F(ImportTest, OnnxMatchesNative) {
  auto g = import_onnx_file((fs::path(dir()) / "resnet8.onnx").string());
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  const double diff = (run(*g, x_) - native_).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4);
  std::printf("onnx vs native: max |diff| = %.3g (%zu nodes)\n", diff, g->nodes.size());
}

TEST_F(ImportTest, UnsupportedOpIsNamed) {
  auto ts = import_torchscript_file((fs::path(dir()) / "elu.pt").string(), {4, 1, 32, 32});
  ASSERT_FALSE(ts.is_ok());
  EXPECT_NE(ts.status().message().find("aten::elu"), std::string::npos) << ts.status().message();
  auto ox = import_onnx_file((fs::path(dir()) / "elu.onnx").string());
  ASSERT_FALSE(ox.is_ok());
  EXPECT_NE(ox.status().message().find("Elu"), std::string::npos) << ox.status().message();
}

}  // namespace
}  // namespace qeval
