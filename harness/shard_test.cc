// run_eval --shard: parsing and the partition of a plan.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "harness/job_result.h"

namespace qeval {
namespace {

std::vector<JobSpec> make_plan(int cfgs, const std::vector<std::string>& chips) {
  std::vector<JobSpec> plan;
  for (int c = 0; c < cfgs; ++c) {
    for (const std::string& chip : chips) {
      JobSpec s;
      s.cfg_path = "cfg" + std::to_string(c) + ".yaml";
      s.chip = chip;
      s.id = "m" + std::to_string(c) + "/" + chip + "/ptq";
      plan.push_back(s);
    }
  }
  return plan;
}

TEST(Shard, Parse) {
  auto s = parse_shard("2/4");
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->index, 2);
  EXPECT_EQ(s->count, 4);
  for (const char* bad : {"0/2", "3/2", "2", "1/0", "a/b", "1/2x", "-1/2", ""}) {
    auto r = parse_shard(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find("i/N"), std::string::npos) << r.status().message();
  }
}

// Every job lands in exactly one shard, a cfg's jobs stay together, loads differ by at most one cfg.
TEST(Shard, PartitionCoversPlanOnceAndKeepsCfgsTogether) {
  for (int cfgs : {1, 2, 3, 4, 5, 9}) {
    for (int n : {1, 2, 3, 4}) {
      const auto plan = make_plan(cfgs, {"bm1690", "int16", "onnx-qdq"});
      std::map<std::string, int> seen;
      std::map<std::string, std::set<int>> cfg_shards;
      std::vector<size_t> sizes;
      for (int i = 1; i <= n; ++i) {
        const auto part = select_shard(plan, {i, n});
        sizes.push_back(part.size());
        for (const JobSpec& s : part) {
          ++seen[s.id];
          cfg_shards[s.cfg_path].insert(i);
        }
        EXPECT_EQ(part.size(), select_shard(plan, {i, n}).size()) << "deterministic";
      }
      ASSERT_EQ(seen.size(), plan.size()) << cfgs << " cfgs, " << n << " shards";
      for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
      const auto [lo, hi] = std::minmax_element(sizes.begin(), sizes.end());
      if (cfgs >= n) {
        for (const auto& [cfg, shards] : cfg_shards) EXPECT_EQ(shards.size(), 1u) << cfg;
        EXPECT_LE(*hi - *lo, 3u) << "one cfg's jobs at most";
      } else {
        EXPECT_LE(*hi - *lo, 1u) << "jobs dealt one by one";
      }
    }
  }
}

TEST(Shard, KeepsPlanOrder) {
  const auto plan = make_plan(4, {"bm1690", "int16"});
  const auto part = select_shard(plan, {2, 2});
  ASSERT_EQ(part.size(), 4u);
  EXPECT_EQ(part[0].id, "m1/bm1690/ptq");
  EXPECT_EQ(part[1].id, "m1/int16/ptq");
  EXPECT_EQ(part[2].id, "m3/bm1690/ptq");
  EXPECT_EQ(part[3].id, "m3/int16/ptq");
}

}  // namespace
}  // namespace qeval
