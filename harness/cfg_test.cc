// Model cfg (.cfg INI and YAML) and model-list parsing: values, path resolution,
// ${VAR} expansion, and errors that name file:line.
#include "harness/cfg.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <stdlib.h>

#include "datasets/temp_dir_test_util.h"

namespace qeval {
namespace {

// tpu-mlir's own example cfg (SOPHGO docs), verbatim.
const char* kSeedCfg =
    "dataset=${REGRESSION_PATH}/dataset/ILSVRC2012\n"
    "test_input=${REGRESSION_PATH}/image/cat.jpg\n"
    "input_shapes=[[1,3,224,224]] #Modified according to the actual shape\n"
    "#The following is the image preprocessing parameters, fill in according to the actual situation\n"
    "resize_dims=256,256\n"
    "mean=123.675,116.28,103.53\n"
    "scale=0.0171,0.0175,0.0174\n"
    "pixel_format=rgb\n"
    "int8_sym_tolerance=0.97,0.80\n"
    "int8_asym_tolerance=0.98,0.80\n"
    "debug_cmd=use_pil_resize\n";

const std::map<std::string, std::string> kSeedPreprocess = {{"input_shapes", "[[1,3,224,224]]"},
                                                            {"resize_dims", "256,256"},
                                                            {"mean", "123.675,116.28,103.53"},
                                                            {"scale", "0.0171,0.0175,0.0174"},
                                                            {"pixel_format", "rgb"}};

class CfgTest : public TempDirTest {
 protected:
  // The error message of loading `text` as file `name`, "" when it loads.
  std::string error_of(const std::string& name, const std::string& text) {
    auto c = load_model_cfg(write(name, text));
    return c.is_ok() ? "" : c.status().message();
  }
  std::string path(const std::string& name) { return (dir_ / name).string(); }
};

TEST_F(CfgTest, TpuMlirExampleParses) {
  ASSERT_EQ(setenv("REGRESSION_PATH", "/opt/regression", 1), 0);
  const std::string p = write("resnet18.cfg", kSeedCfg);
  auto c = load_model_cfg(p);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->path, p);
  EXPECT_EQ(c->name, "resnet18");
  EXPECT_EQ(c->model, "");
  EXPECT_EQ(c->model_path, "");
  EXPECT_EQ(c->dataset, "/opt/regression/dataset/ILSVRC2012");
  EXPECT_EQ(c->test_input, "/opt/regression/image/cat.jpg");
  EXPECT_EQ(c->preprocess, kSeedPreprocess);
  EXPECT_DOUBLE_EQ(c->int8_sym_tolerance.cos, 0.97);
  EXPECT_DOUBLE_EQ(c->int8_sym_tolerance.euclid, 0.80);
  EXPECT_EQ(c->int8_sym_tolerance.source, p + ":9");
  EXPECT_DOUBLE_EQ(c->int8_asym_tolerance.cos, 0.98);
  EXPECT_DOUBLE_EQ(c->int8_asym_tolerance.euclid, 0.80);
  EXPECT_EQ(c->debug_cmd, "use_pil_resize");
  EXPECT_EQ(c->fast_test_count, 30);
  EXPECT_FALSE(c->fast_test_count_set);
  EXPECT_TRUE(c->chips.empty());
  EXPECT_FALSE(c->has_qat_block);
  EXPECT_EQ(c->quant.weight_bits, 8);
  EXPECT_FALSE(c->metric_tolerance.top1_drop >= 0);
}

TEST_F(CfgTest, YamlGivesTheSameFields) {
  ASSERT_EQ(setenv("REGRESSION_PATH", "/opt/regression", 1), 0);
  auto ini = load_model_cfg(write("a.cfg", kSeedCfg));
  auto yml = load_model_cfg(write("a.yaml",
                                  "dataset: ${REGRESSION_PATH}/dataset/ILSVRC2012\n"
                                  "test_input: ${REGRESSION_PATH}/image/cat.jpg\n"
                                  "input_shapes: [[1, 3, 224, 224]]\n"
                                  "resize_dims: [256, 256]\n"
                                  "mean: [123.675, 116.28, 103.53]\n"
                                  "scale: 0.0171,0.0175,0.0174\n"
                                  "pixel_format: rgb\n"
                                  "int8_sym_tolerance: [0.97, 0.80]\n"
                                  "int8_asym_tolerance: '0.98,0.80'\n"
                                  "debug_cmd: use_pil_resize\n"));
  ASSERT_TRUE(ini.is_ok()) << ini.status().message();
  ASSERT_TRUE(yml.is_ok()) << yml.status().message();
  EXPECT_EQ(yml->name, "a");
  EXPECT_EQ(yml->dataset, ini->dataset);
  EXPECT_EQ(yml->test_input, ini->test_input);
  EXPECT_EQ(yml->preprocess, kSeedPreprocess);
  EXPECT_EQ(yml->int8_sym_tolerance.cos, ini->int8_sym_tolerance.cos);
  EXPECT_EQ(yml->int8_sym_tolerance.euclid, ini->int8_sym_tolerance.euclid);
  EXPECT_EQ(yml->int8_asym_tolerance.cos, ini->int8_asym_tolerance.cos);
  EXPECT_EQ(yml->int8_asym_tolerance.euclid, ini->int8_asym_tolerance.euclid);
  EXPECT_EQ(yml->debug_cmd, ini->debug_cmd);
  EXPECT_EQ(yml->int8_sym_tolerance.source, path("a.yaml") + ":8");
}

TEST_F(CfgTest, AllKeysAndBlocks) {
  const std::string text =
      "name = resnet8_fast\n"                     // 1
      "model = resnet8\n"                         // 2
      "chip = bm1690, onnx-qdq\n"                 // 3
      "task = classify\n"                         // 4
      "fast_test_count = 12\n"                    // 5
      "keep_aspect_ratio = true\n"                // 6
      "channel_format = nhwc\n"                   // 7
      "[quant]\n"                                 // 8
      "observer = percentile\n"                   // 9
      "weight_bits = 4\n"                         // 10
      "per_channel = false\n"                     // 11
      "float_layers = [fc, layer1.0]\n"           // 12
      "[qat]\n"                                   // 13
      "epochs = 2\n"                              // 14
      "lr = 0.01\n"                               // 15
      "[metric_tolerance]\n"                      // 16
      "top1_drop = 0.5\n"                         // 17
      "map_ratio = 0.98\n"                        // 18
      "[DEFAULT]\n"                               // 19
      "qat_model_path = ../qat/resnet8.qmodel\n"  // 20
      "model_path = /abs/resnet8.onnx\n";         // 21
  const std::string p = write("r8.cfg", text);
  auto c = load_model_cfg(p);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->name, "resnet8_fast");
  EXPECT_EQ(c->model, "resnet8");
  EXPECT_EQ(c->chips, (std::vector<std::string>{"bm1690", "onnx-qdq"}));
  EXPECT_EQ(c->task, "classify");
  EXPECT_EQ(c->fast_test_count, 12);
  EXPECT_TRUE(c->fast_test_count_set);
  EXPECT_EQ(c->preprocess.at("keep_aspect_ratio"), "true");
  EXPECT_EQ(c->preprocess.at("channel_format"), "nhwc");
  EXPECT_EQ(c->quant.observer.kind, "percentile");
  EXPECT_EQ(c->quant.weight_bits, 4);
  EXPECT_FALSE(c->quant.per_channel);
  EXPECT_EQ(c->quant.float_layers, (std::vector<std::string>{"fc", "layer1.0"}));
  EXPECT_TRUE(c->has_qat_block);
  EXPECT_EQ(c->qat.epochs, 2);
  EXPECT_DOUBLE_EQ(c->qat.lr, 0.01);
  EXPECT_DOUBLE_EQ(c->metric_tolerance.top1_drop, 0.5);
  EXPECT_EQ(c->metric_tolerance.top5_drop, -1);
  EXPECT_DOUBLE_EQ(c->metric_tolerance.map_ratio, 0.98);
  EXPECT_EQ(c->metric_tolerance.source, p + ":16");
  EXPECT_EQ(c->qat_model_path, (dir_.parent_path() / "qat/resnet8.qmodel").string());
  EXPECT_EQ(c->model_path, "/abs/resnet8.onnx");
}

TEST_F(CfgTest, MisspeltKeyNamesLineAndSuggestion) {
  const std::string ini = "dataset = d\ntest_input = t.jpg\n\nresize_dim = 256,256\n";
  EXPECT_EQ(error_of("resnet8.cfg", ini),
            path("resnet8.cfg") + ":4: unknown key 'resize_dim' (did you mean 'resize_dims'?)");
  EXPECT_EQ(error_of("resnet8.yaml", "dataset: d\n# x\nresize_dim: [256, 256]\n"),
            path("resnet8.yaml") + ":3: unknown key 'resize_dim' (did you mean 'resize_dims'?)");
  const std::string none = error_of("a.cfg", "zzzzzzzz = 1\n");
  EXPECT_NE(none.find(":1: unknown key 'zzzzzzzz' (allowed: model, model_path,"), std::string::npos) << none;
}

TEST_F(CfgTest, QuantSectionErrorsNameTheCfgLine) {
  const std::string text = "model = resnet8\nchip = bm1690\n\n[quant]\nobserver = minmax\nweight_bitz = 8\n";
  const std::string e = error_of("q.cfg", text);
  EXPECT_NE(e.find(path("q.cfg") + ":6: unknown key 'quant.weight_bitz'"), std::string::npos) << e;
  const std::string qat = error_of("q.cfg", "[qat]\n; c\n\noptimizer = rmsprop\n");
  EXPECT_NE(qat.find(":4: qat.optimizer: 'rmsprop'"), std::string::npos) << qat;
  const std::string metric = error_of("q.cfg", "[metric_tolerance]\ntop1_dorp = 1\n");
  EXPECT_EQ(metric,
            path("q.cfg") + ":2: unknown key 'metric_tolerance.top1_dorp' (did you mean 'top1_drop'?)");
}

TEST_F(CfgTest, VariablesExpand) {
  ASSERT_EQ(unsetenv("QEVAL_CFG_TEST_UNSET"), 0);
  EXPECT_EQ(error_of("v.cfg", "model = m\ndataset = ${QEVAL_CFG_TEST_UNSET}/x\n"),
            path("v.cfg") + ":2: dataset: ${QEVAL_CFG_TEST_UNSET} is not set");
  EXPECT_EQ(error_of("v.yaml", "quant:\n  observer: ${QEVAL_CFG_TEST_UNSET}\n"),
            path("v.yaml") + ":2: quant.observer: ${QEVAL_CFG_TEST_UNSET} is not set");
  ASSERT_EQ(setenv("QEVAL_CFG_TEST_BITS", "4", 1), 0);
  auto c = load_model_cfg(write("v.cfg", "test_input = ${CFG_DIR}/img/cat.jpg\n$X = 1\n"));
  EXPECT_FALSE(c.is_ok());  // `$X` is not expanded: an unknown key
  c = load_model_cfg(write("v.cfg",
                           "test_input = ${CFG_DIR}/img/cat.jpg\ndebug_cmd = $HOME\n"
                           "[quant]\nweight_bits = ${QEVAL_CFG_TEST_BITS}\n"));
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->test_input, (dir_ / "img/cat.jpg").string());
  EXPECT_EQ(c->debug_cmd, "$HOME");
  EXPECT_EQ(c->quant.weight_bits, 4);
}

TEST_F(CfgTest, TolerancesAreChecked) {
  const std::string p = path("t.cfg");
  EXPECT_EQ(error_of("t.cfg", "model = m\nint8_sym_tolerance = 1.2,0.8\n"),
            p + ":2: int8_sym_tolerance: 1.2 is outside 0..1");
  EXPECT_EQ(error_of("t.cfg", "int8_asym_tolerance = 0.9,0.8,0.7\n"),
            p + ":1: int8_asym_tolerance: expected two numbers cos,euclid (e.g. 0.99,0.90)");
  EXPECT_EQ(error_of("t.cfg", "int8_sym_tolerance = nan,0.8\n"),
            p + ":1: int8_sym_tolerance: 'nan' is not a number");
  EXPECT_EQ(error_of("t.yaml", "int8_sym_tolerance: [0.9, -0.1]\n"),
            path("t.yaml") + ":1: int8_sym_tolerance: -0.1 is outside 0..1");
  EXPECT_EQ(error_of("t.cfg", "[metric_tolerance]\nmap_ratio = 1.5\n"),
            p + ":2: metric_tolerance.map_ratio: 1.5 is outside (0, 1]");
  EXPECT_EQ(error_of("t.cfg", "[metric_tolerance]\n\ntop1_drop = -1\n"),
            p + ":3: metric_tolerance.top1_drop: -1 is outside >= 0 (points)");
  EXPECT_EQ(error_of("t.yaml", "metric_tolerance:\n  map_drop: .nan\n"),
            path("t.yaml") + ":2: metric_tolerance.map_drop: '.nan' is not a number");
  EXPECT_EQ(error_of("t.yaml", "metric_tolerance: {top5_drop: lots}\n"),
            path("t.yaml") + ":1: metric_tolerance.top5_drop: 'lots' is not a number");
}

TEST_F(CfgTest, OtherValuesAreChecked) {
  const std::string p = path("o.cfg");
  EXPECT_EQ(error_of("o.cfg", "task = clasify\n"),
            p + ":1: task: 'clasify' (allowed: classify, detect, raw; did you mean 'classify'?)");
  EXPECT_EQ(error_of("o.cfg", "\nfast_test_count = 0\n"),
            p + ":2: fast_test_count: '0' is not an integer >= 1");
  EXPECT_EQ(error_of("o.cfg", "fast_test_count = 3.5\n"),
            p + ":1: fast_test_count: '3.5' is not an integer >= 1");
  EXPECT_EQ(error_of("o.cfg", "model = m\npixel_format = rgba\n"),
            p + ":2: pixel_format: unknown value 'rgba' (use rgb, bgr or gray)");
  EXPECT_EQ(error_of("o.cfg", "keep_aspect_ratio = maybe\n"),
            p + ":1: keep_aspect_ratio: 'maybe' is not a boolean (use 1/0, true/false)");
  // Cross-key: the channel count of input_shapes against pixel_format, at input_shapes' line.
  const std::string gray = error_of("o.cfg", "input_shapes = [[1,3,28,28]]\npixel_format = gray\n");
  EXPECT_EQ(gray.rfind(p + ":1: input_shapes:", 0), 0u) << gray;
  EXPECT_EQ(error_of("o.yaml", "chip: [bm1690, [x]]\n"),
            path("o.yaml") + ":1: chip: expected a chip name or a list of names");
  EXPECT_EQ(error_of("o.yaml", "- a\n"), path("o.yaml") + ":1: expected a mapping of cfg keys");
  EXPECT_EQ(error_of("o.txt", "model = m\n"), path("o.txt") + ": unknown cfg format (use .cfg or .yaml)");
  auto empty = load_model_cfg(write("empty.yaml", "# nothing\n"));
  ASSERT_TRUE(empty.is_ok()) << empty.status().message();
  EXPECT_EQ(empty->name, "empty");
}

TEST_F(CfgTest, IniSyntax) {
  const std::string p = path("s.cfg");
  auto c = load_model_cfg(write("s.cfg",
                                "# whole-line comment\n"
                                "; another\n"
                                "[DEFAULT]\n"
                                "pixel_format = rgb # trailing\n"
                                "debug_cmd=a#b ;c\n"
                                "name=it's\n"
                                "  model   =   lenet5   \n"));
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->preprocess.at("pixel_format"), "rgb");
  EXPECT_EQ(c->debug_cmd, "a#b");
  EXPECT_EQ(c->name, "it's");
  EXPECT_EQ(c->model, "lenet5");
  // Empty block sections mean the defaults; keys after [DEFAULT] are top-level again.
  auto blocks = load_model_cfg(write("s.cfg", "[quant]\n[qat]\n[metric_tolerance]\n[DEFAULT]\nmodel = m\n"));
  ASSERT_TRUE(blocks.is_ok()) << blocks.status().message();
  EXPECT_EQ(blocks->model, "m");
  EXPECT_EQ(blocks->quant.source, p + ":1");
  EXPECT_TRUE(blocks->has_qat_block);
  EXPECT_EQ(blocks->qat.epochs, 1);
  EXPECT_EQ(blocks->metric_tolerance.source, p + ":3");
  EXPECT_EQ(blocks->metric_tolerance.top1_drop, -1);
  EXPECT_EQ(error_of("s.cfg", "model = m\n\njust words\n"),
            p + ":3: expected 'key = value', got 'just words'");
  EXPECT_EQ(error_of("s.cfg", "model = m\n[quat]\n"),
            p + ":2: unknown section [quat] (did you mean [quant]?)");
  EXPECT_EQ(error_of("s.cfg", "[model]\n"),
            p + ":1: unknown section [model] (allowed: [DEFAULT], [quant], [qat], [metric_tolerance])");
  EXPECT_EQ(error_of("s.cfg", "[qat]\nepochs = 1\n[qat]\n"),
            p + ":3: section [qat] given twice (first at line 1)");
}

TEST_F(CfgTest, DuplicateKeysNameBothLines) {
  EXPECT_EQ(error_of("d.cfg", "model = m\nmean = 1,2,3\n\n# again\nmean = 4,5,6\n"),
            path("d.cfg") + ":5: key 'mean' given twice (first at line 2)");
  EXPECT_EQ(error_of("d.cfg", "[quant]\nweight_bits = 8\nweight_bits = 4\n"),
            path("d.cfg") + ":3: key 'weight_bits' given twice (first at line 2)");
  EXPECT_EQ(error_of("d.yaml", "task: detect\nname: a\ntask: classify\n"),
            path("d.yaml") + ":3: key 'task' given twice (first at line 1)");
}

TEST_F(CfgTest, ZooPrefixAndRelativePaths) {
  auto c =
      load_model_cfg(write("z.yaml", "model_path: zoo:resnet8\ndataset: data/test\nqat_model_path: ''\n"));
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->model, "resnet8");
  EXPECT_EQ(c->model_path, "");
  EXPECT_EQ(c->dataset, (dir_ / "data/test").string());
  EXPECT_EQ(c->qat_model_path, "");
  EXPECT_EQ(error_of("z.cfg", "model = lenet5\nmodel_path = zoo:resnet8\n"),
            path("z.cfg") + ":2: model_path: zoo:resnet8 contradicts model: lenet5");
  // A relative cfg path resolves against the current directory first.
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  auto rel = load_model_cfg("z.yaml");
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(rel.is_ok()) << rel.status().message();
  EXPECT_EQ(rel->dataset, (dir_ / "data/test").string());
}

TEST_F(CfgTest, PatchReplacesTheGivenKeysOfItsBase) {
  ASSERT_TRUE(std::filesystem::create_directories(dir_ / "base"));
  write("base/mnv2.cfg",
        "[DEFAULT]\nmodel = mobilenetv2_tiny\nchip = bm1690\ndataset = images\nfast_test_count = 50\n"
        "[quant]\nobserver = mse\nweight_bits = 4\nint16_layers = [a]\n"
        "[qat]\nepochs = 2\nlr = 0.01\n[metric_tolerance]\ntop1_drop = 0.5\ntop5_drop = 0.2\n");
  const std::string p = write("fix.yaml",
                              "base: base/mnv2.cfg\n"
                              "quant: {float_layers: [fc], layer_bits: {conv1: 8}, ranges: {conv2: [-1, 2.5]}}\n"
                              "qat: {lr: 0.001}\nmetric_tolerance: {top1_drop: 0.3}\nfast_test_count: 500\n");
  auto c = load_model_cfg(p);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->path, p);
  EXPECT_EQ(c->name, "fix");
  EXPECT_EQ(c->model, "mobilenetv2_tiny");
  EXPECT_EQ(c->chips, std::vector<std::string>{"bm1690"});
  EXPECT_EQ(c->dataset, path("base/images"));  // the base's paths resolve against the base's folder
  EXPECT_EQ(c->fast_test_count, 500);
  // quant: the patched keys change, the others stay the base's.
  EXPECT_EQ(c->quant.observer.kind, "mse");
  EXPECT_EQ(c->quant.weight_bits, 4);
  EXPECT_EQ(c->quant.int16_layers, std::vector<std::string>{"a"});
  EXPECT_EQ(c->quant.float_layers, std::vector<std::string>{"fc"});
  EXPECT_EQ(c->quant.layer_bits, (std::map<std::string, int>{{"conv1", 8}}));
  EXPECT_EQ(c->quant.ranges.at("conv2"), (std::vector<double>{-1, 2.5}));
  EXPECT_EQ(c->qat.epochs, 2);
  EXPECT_DOUBLE_EQ(c->qat.lr, 0.001);
  EXPECT_TRUE(c->has_qat_block);
  EXPECT_DOUBLE_EQ(c->metric_tolerance.top1_drop, 0.3);
  EXPECT_DOUBLE_EQ(c->metric_tolerance.top5_drop, 0.2);
  // A patch of a patch.
  auto c2 = load_model_cfg(write("fix2.yaml", "base: fix.yaml\nname: second\nquant: {float_layers: []}\n"));
  ASSERT_TRUE(c2.is_ok()) << c2.status().message();
  EXPECT_EQ(c2->name, "second");
  EXPECT_TRUE(c2->quant.float_layers.empty());
  EXPECT_EQ(c2->quant.layer_bits.at("conv1"), 8);
}

TEST_F(CfgTest, PatchErrorsNameThePatch) {
  EXPECT_NE(error_of("a.yaml", "base: missing.yaml\n").find("a.yaml:1: base: "), std::string::npos);
  EXPECT_NE(error_of("loop.yaml", "base: loop.yaml\n").find("nested bases"), std::string::npos);
  write("b.yaml", "model: lenet5\n");
  EXPECT_NE(error_of("c.yaml", "base: b.yaml\nquant: {float_layerz: [x]}\n").find("c.yaml:2"), std::string::npos);
  EXPECT_NE(error_of("d.yaml", "base: b.yaml\nquant: {ranges: {x: [2, 1]}}\n").find("quant.ranges.x"),
            std::string::npos);
  // An error in the base names the base.
  write("bad.yaml", "model: lenet5\nchipp: bm1690\n");
  EXPECT_NE(error_of("e.yaml", "base: bad.yaml\n").find("bad.yaml:2"), std::string::npos);
}

TEST_F(CfgTest, ModelList) {
  std::filesystem::create_directories(dir_ / "cfg");
  write("cfg/a.cfg", "model = lenet5\n");
  write("cfg/b.yaml", "model: resnet8\n");
  const std::string list = write("list.yaml",
                                 "description: smoke\n"
                                 "chips: [bm1690, onnx-qdq]\n"
                                 "fast_test_count: 10\n"
                                 "models:\n"
                                 "  - cfg/a.cfg\n"
                                 "  - {cfg: cfg/b.yaml, chip: cv183x, fast_test_count: 5}\n"
                                 "  - cfg: ${CFG_DIR}/cfg/a.cfg\n"
                                 "    chip: [bm1684x]\n");
  auto e = expand_cfg_argument(list);
  ASSERT_TRUE(e.is_ok()) << e.status().message();
  ASSERT_EQ(e->size(), 3u);
  EXPECT_EQ((*e)[0].cfg_path, (dir_ / "cfg/a.cfg").string());
  EXPECT_EQ((*e)[0].chips, (std::vector<std::string>{"bm1690", "onnx-qdq"}));
  EXPECT_EQ((*e)[0].fast_test_count, 10);
  EXPECT_EQ((*e)[1].cfg_path, (dir_ / "cfg/b.yaml").string());
  EXPECT_EQ((*e)[1].chips, std::vector<std::string>{"cv183x"});
  EXPECT_EQ((*e)[1].fast_test_count, 5);
  EXPECT_EQ((*e)[2].cfg_path, (dir_ / "cfg/a.cfg").string());
  EXPECT_EQ((*e)[2].chips, std::vector<std::string>{"bm1684x"});
  EXPECT_EQ((*e)[2].fast_test_count, 10);

  // A relative list path keeps its entries relative (to the same working directory).
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  auto rel = expand_cfg_argument("list.yaml");
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(rel.is_ok()) << rel.status().message();
  EXPECT_EQ((*rel)[0].cfg_path, "cfg/a.cfg");

  // Not a list: the argument itself, whatever its format.
  for (const char* cfg : {"cfg/a.cfg", "cfg/b.yaml"}) {
    auto one = expand_cfg_argument(path(cfg));
    ASSERT_TRUE(one.is_ok()) << one.status().message();
    ASSERT_EQ(one->size(), 1u);
    EXPECT_EQ((*one)[0].cfg_path, path(cfg));
    EXPECT_TRUE((*one)[0].chips.empty());
    EXPECT_EQ((*one)[0].fast_test_count, -1);
  }
  auto missing = expand_cfg_argument(path("nope.yaml"));
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), path("nope.yaml") + ": no such file");
}

TEST_F(CfgTest, ModelListErrors) {
  write("a.cfg", "model = lenet5\n");
  auto missing = expand_cfg_argument(write("l.yaml", "models:\n  - a.cfg\n  - cfg/missing.cfg\n"));
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            path("l.yaml") + ":3: models: " + (dir_ / "cfg/missing.cfg").string() + ": no such file");
  auto bad_key = expand_cfg_argument(write("l.yaml", "models:\n  - {cfg: a.cfg, chips: [x]}\n"));
  EXPECT_EQ(bad_key.status().message(),
            path("l.yaml") + ":2: unknown key 'models.chips' (did you mean 'chip'?)");
  auto top = expand_cfg_argument(write("l.yaml", "model: x\nmodels: [a.cfg]\n"));
  EXPECT_EQ(top.status().message(), path("l.yaml") + ":1: unknown key 'model' (did you mean 'models'?)");
  auto empty = expand_cfg_argument(write("l.yaml", "chips: bm1690\nmodels: []\n"));
  EXPECT_EQ(empty.status().message(), path("l.yaml") + ":2: models: expected a non-empty list of cfg files");
  auto no_cfg = expand_cfg_argument(write("l.yaml", "models:\n  - {chip: bm1690}\n"));
  EXPECT_EQ(no_cfg.status().message(), path("l.yaml") + ":2: models: entry without a 'cfg' key");
  auto count = expand_cfg_argument(write("l.yaml", "fast_test_count: -3\nmodels: [a.cfg]\n"));
  EXPECT_EQ(count.status().message(), path("l.yaml") + ":1: fast_test_count: '-3' is not an integer >= 1");
}

TEST(DidYouMean, ClosestWithinLimit) {
  const std::vector<std::string> keys = {"model", "model_path", "resize_dims", "mean", "scale"};
  EXPECT_EQ(did_you_mean("resize_dim", keys), "resize_dims");
  EXPECT_EQ(did_you_mean("modle_path", keys), "model_path");  // a swap is two edits
  EXPECT_EQ(did_you_mean("maen", keys), "mean");
  EXPECT_EQ(did_you_mean("scale", keys), "scale");
  EXPECT_EQ(did_you_mean("xyz", keys), "");
  EXPECT_EQ(did_you_mean("", keys), "");
  // The limit: 2 edits, or a third of the word's length for long words.
  EXPECT_EQ(did_you_mean("abcdefghi", {"abcdefxyz"}), "abcdefxyz");  // 3 edits, 9 / 3 = 3
  EXPECT_EQ(did_you_mean("abcdefgh", {"abcdexyz"}), "");             // 3 edits, limit 2
  // Ties go to the first in `known` order.
  EXPECT_EQ(did_you_mean("quat", {"quant", "qat"}), "quant");
  EXPECT_EQ(did_you_mean("quat", {"qat", "quant"}), "qat");
}

}  // namespace
}  // namespace qeval
