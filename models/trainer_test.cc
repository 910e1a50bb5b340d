// fp32 trainer, checkpoints and artifact cache on a small budget (lenet5, a
// thousand Fashion-MNIST images): determinism, exact resume, cache hit,
// corrupt entry rebuilt, and the one-cycle schedule's shape.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "models/cache.h"
#include "models/train_loop.h"
#include "models/trainer.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

ZooModel small_lenet() {
  ZooModel m = *zoo_model("lenet5");
  m.recipe.epochs = 2;
  m.recipe.train_limit = 1024;
  m.recipe.batch = 32;
  return m;
}

TrainOptions quiet() {
  TrainOptions o;
  o.progress = false;
  o.eval_limit = 200;
  o.threads = 1;
  return o;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("qeval_trainer_test_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

bool same_weights(const Graph& a, const Graph& b) {
  if (a.constants.size() != b.constants.size()) return false;
  for (const auto& [name, t] : a.constants) {
    auto it = b.constants.find(name);
    if (it == b.constants.end() || !t.equals(it->second)) return false;
  }
  return true;
}

TEST(Trainer, SameSeedSameWeightsDifferentSeedDifferent) {
  ZooModel m = small_lenet();
  auto a = train_zoo_model(m, quiet());
  auto b = train_zoo_model(m, quiet());
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  ASSERT_TRUE(b.is_ok()) << b.status().message();
  EXPECT_TRUE(same_weights(a->graph, b->graph));
  m.recipe.seed = 1;
  auto c = train_zoo_model(m, quiet());
  ASSERT_TRUE(c.is_ok());
  EXPECT_FALSE(same_weights(a->graph, c->graph));
  // Training helps: 1024 images, 2 epochs already beat chance (10%) by far (~59%).
  EXPECT_GT(a->eval.top1, 40.0);
  EXPECT_EQ(a->eval.samples, 200);
}

TEST(Trainer, ResumeFromCheckpointIsExact) {
  ZooModel m = small_lenet();
  const fs::path dir = temp_dir("resume");
  TrainOptions o = quiet();
  o.checkpoint_dir = dir.string();
  auto full = train_zoo_model(m, o);
  ASSERT_TRUE(full.is_ok()) << full.status().message();
  ASSERT_TRUE(fs::exists(dir / "lenet5.epoch001.qmodel"));
  ASSERT_TRUE(fs::exists(dir / "lenet5.epoch002.qmodel"));
  // Interrupted after epoch 1: drop epoch 2 and resume.
  fs::remove(dir / "lenet5.epoch002.qmodel");
  fs::remove(dir / "lenet5.epoch002.optim.pt");
  o.resume = true;
  auto resumed = train_zoo_model(m, o);
  ASSERT_TRUE(resumed.is_ok()) << resumed.status().message();
  EXPECT_EQ(resumed->first_epoch, 1);
  EXPECT_TRUE(same_weights(full->graph, resumed->graph));
  EXPECT_EQ(full->epoch_loss, resumed->epoch_loss);
  fs::remove_all(dir);
}

TEST(Cache, HitThenCorruptEntryIsRebuilt) {
  const fs::path dir = temp_dir("cache");
  ::setenv("QEVAL_CACHE", dir.c_str(), 1);
  ZooModel m = small_lenet();
  m.recipe.epochs = 1;
  auto first = fp32_baseline(m, quiet());
  ASSERT_TRUE(first.is_ok()) << first.status().message();
  EXPECT_FALSE(first->cache_hit);
  EXPECT_EQ(first->path.rfind(dir.string(), 0), 0u);
  auto second = fp32_baseline(m, quiet());
  ASSERT_TRUE(second.is_ok());
  EXPECT_TRUE(second->cache_hit);
  EXPECT_TRUE(same_weights(first->graph, second->graph));
  EXPECT_DOUBLE_EQ(second->eval.top1, first->eval.top1);
  // A different recipe is a different entry.
  ZooModel other = m;
  other.recipe.peak_lr = 0.01;
  EXPECT_NE(*baseline_key(other, quiet()), *baseline_key(m, quiet()));
  // Flip one byte in the middle of the entry: the checksum catches it.
  {
    std::fstream f(first->path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::streamoff>(f.tellg());
    f.seekp(size / 2);
    char c = 0;
    f.seekg(size / 2);
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(size / 2);
    f.write(&c, 1);
  }
  auto third = fp32_baseline(m, quiet());
  ASSERT_TRUE(third.is_ok()) << third.status().message();
  EXPECT_FALSE(third->cache_hit);
  EXPECT_TRUE(third->rebuilt_corrupt);
  EXPECT_TRUE(same_weights(first->graph, third->graph));  // deterministic retrain
  auto fourth = fp32_baseline(m, quiet());
  ASSERT_TRUE(fourth.is_ok());
  EXPECT_TRUE(fourth->cache_hit);
  ::unsetenv("QEVAL_CACHE");
  fs::remove_all(dir);
}

TEST(Schedule, OneCycleAsTorch) {
  TrainRecipe r;
  r.peak_lr = 0.1;
  r.warmup = 0.15;
  const int64_t total = 1000;
  EXPECT_DOUBLE_EQ(scheduled_lr(r, 0, total), 0.1 / 25);  // OneCycleLR div_factor 25
  EXPECT_NEAR(scheduled_lr(r, 150, total), 0.1, 1e-12);  // peak at the end of warm-up
  EXPECT_NEAR(scheduled_lr(r, 1000, total), 0.1 / 25 / 1e4, 1e-12);  // final_div_factor 1e4
  EXPECT_LT(scheduled_lr(r, 500, total), scheduled_lr(r, 300, total));
  // Momentum mirrors the LR: 0.95 -> 0.85 at the peak -> 0.95 (OneCycleLR defaults).
  EXPECT_DOUBLE_EQ(scheduled_momentum(r, 0, total), 0.95);
  EXPECT_NEAR(scheduled_momentum(r, 150, total), 0.85, 1e-12);
  EXPECT_NEAR(scheduled_momentum(r, 1000, total), 0.95, 1e-12);
  r.optimizer = "adam";
  EXPECT_DOUBLE_EQ(scheduled_momentum(r, 150, total), r.momentum);
}

}  // namespace
}  // namespace qeval
