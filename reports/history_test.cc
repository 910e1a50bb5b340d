// Across-run reads of the results store: schema migration, trends, compare,
// history, merge, and writers in separate processes.
#include "reports/history.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

namespace qeval {
namespace {

namespace fs = std::filesystem;

class HistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("qeval_history_test_{}_{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& f) const { return (dir_ / f).string(); }
  fs::path dir_;
};

MetricResult metric(const std::string& name, double value, double baseline, bool gated, bool pass,
                    double allowed = kNaN) {
  MetricResult m;
  m.name = name;
  m.value = value;
  m.baseline = baseline;
  m.delta = value - baseline;
  m.gated = gated;
  m.pass = pass;
  m.allowed_drop = allowed;
  m.tolerance = gated ? "rule" : "";
  return m;
}

JobResult job(const std::string& key, const std::string& status, std::vector<MetricResult> metrics) {
  JobResult j;
  j.id = key;
  j.model = key.substr(0, key.find('/'));
  j.chip = "bm1690";
  j.mode = "ptq";
  j.task = "classify";
  j.status = status;
  j.metrics = std::move(metrics);
  return j;
}

int64_t add_run(ResultStore& s, const std::vector<JobResult>& jobs) {
  RunInfo info;
  info.command = "run_eval test";
  auto id = s.begin_run(info);
  EXPECT_TRUE(id.is_ok()) << id.status().message();
  for (const JobResult& j : jobs) EXPECT_TRUE(s.add_job(*id, j).is_ok());
  EXPECT_TRUE(s.finish_run(*id, "done", 0, 1.0).is_ok());
  return *id;
}

// The v1 schema as the first release created it (reports/store.cc migration 1).
constexpr const char* kV1 = R"sql(
CREATE TABLE runs(id INTEGER PRIMARY KEY, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
  command TEXT, host TEXT, git_sha TEXT, fast_test INTEGER NOT NULL DEFAULT 0, seconds REAL, exit_code INTEGER);
CREATE TABLE jobs(id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  job_key TEXT NOT NULL, model TEXT, chip TEXT, mode TEXT, task TEXT, cfg_path TEXT, cfg_hash TEXT,
  status TEXT NOT NULL, message TEXT, signal INTEGER, seconds REAL, samples INTEGER,
  baseline_cache_hit INTEGER, quant_cache_hit INTEGER, log_tail TEXT, UNIQUE(run_id, job_key));
CREATE TABLE metrics(job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, name TEXT NOT NULL,
  value REAL, baseline REAL, delta REAL, tolerance TEXT, gated INTEGER, pass INTEGER);
CREATE TABLE layers(job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  name TEXT, op TEXT, cos REAL, euclid REAL, sqnr REAL, max_lsb INTEGER, pass INTEGER);
CREATE TABLE artifacts(job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, kind TEXT NOT NULL,
  path TEXT NOT NULL, hash TEXT);
INSERT INTO runs(id, started, status, command) VALUES(1, '2026-11-01T00:00:00Z', 'done', 'old run');
INSERT INTO jobs(id, run_id, job_key, model, status) VALUES(1, 1, 'lenet5/bm1690/ptq', 'lenet5', 'pass');
INSERT INTO metrics VALUES(1, 'top1', 88.5, 89.0, -0.5, 'drop <= 1.00', 1, 1);
PRAGMA user_version = 1;
)sql";

TEST_F(HistoryTest, OlderSchemaIsMigratedInPlaceWithItsData) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path("v1.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, kV1, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto s = ResultStore::open(path("v1.db"));
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  auto run = (*s)->run(1);
  ASSERT_TRUE(run.is_ok());
  EXPECT_EQ(run->command, "old run");
  EXPECT_EQ(run->uuid.size(), 32u);  // filled by the migration
  auto jobs = (*s)->jobs(1);
  ASSERT_TRUE(jobs.is_ok());
  ASSERT_EQ(jobs->size(), 1u);
  ASSERT_NE((*jobs)[0].metric("top1"), nullptr);
  EXPECT_DOUBLE_EQ((*jobs)[0].metric("top1")->value, 88.5);
  EXPECT_TRUE(std::isnan((*jobs)[0].metric("top1")->allowed_drop));
  // New rows carry the v2 fields.
  const int64_t id = add_run(**s, {job("a/bm1690/ptq", "pass", {metric("top1", 90, 91, true, true, 1.0)})});
  auto j2 = (*s)->jobs(id);
  ASSERT_TRUE(j2.is_ok());
  EXPECT_DOUBLE_EQ((*j2)[0].metric("top1")->allowed_drop, 1.0);
  sqlite3_open(path("v1.db").c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), kStoreSchemaVersion);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(HistoryTest, CompareFlagsDropsBeyondTheAllowanceAndStatusChanges) {
  auto s = ResultStore::open(path("c.db"));
  ASSERT_TRUE(s.is_ok());
  const int64_t a = add_run(**s, {job("r8/bm1690/qat", "pass", {metric("top1", 91.0, 92.0, true, true, 1.0),
                                                               metric("min_layer_cos", 0.99, kNaN, true, true)}),
                                 job("m/bm1690/ptq", "pass", {metric("top1", 80.0, 80.5, true, true, 1.0)}),
                                 job("d/bm1690/ptq", "pass", {metric("mAP", 0.30, 0.31, true, true, 0.0155)})});
  const int64_t b = add_run(**s, {job("r8/bm1690/qat", "pass", {metric("top1", 89.5, 92.0, true, true, 3.0),
                                                               metric("min_layer_cos", 0.95, kNaN, true, false)}),
                                 job("m/bm1690/ptq", "crashed", {}),
                                 job("d/bm1690/ptq", "pass", {metric("mAP", 0.295, 0.31, true, true, 0.0155)})});
  auto d = compare_runs(**s, a, b);
  ASSERT_TRUE(d.is_ok());
  ASSERT_EQ(d->size(), 4u);
  // top1 fell 1.5 points, more than the 3.0 allowed? no: 1.5 < 3.0 -> not a regression.
  EXPECT_EQ((*d)[0].metric, "top1");
  EXPECT_FALSE((*d)[0].regressed);
  EXPECT_DOUBLE_EQ((*d)[0].delta, -1.5);
  EXPECT_EQ((*d)[1].metric, "min_layer_cos");
  EXPECT_TRUE((*d)[1].regressed);
  EXPECT_EQ((*d)[1].rule, "PASS -> FAIL");
  EXPECT_EQ((*d)[2].metric, "job");
  EXPECT_TRUE((*d)[2].regressed);
  EXPECT_EQ((*d)[2].after_status, "crashed");
  EXPECT_EQ((*d)[3].metric, "mAP");
  EXPECT_FALSE((*d)[3].regressed);  // fell 0.005 < 0.0155
  // A larger fall than allowed regresses even while the metric still passes.
  const int64_t c = add_run(**s, {job("d/bm1690/ptq", "pass", {metric("mAP", 0.27, 0.31, true, true, 0.0155)})});
  auto d2 = compare_runs(**s, b, c);
  ASSERT_TRUE(d2.is_ok());
  ASSERT_EQ(d2->size(), 1u);
  EXPECT_TRUE((*d2)[0].regressed);
  EXPECT_NEAR((*d2)[0].delta, -0.025, 1e-12);
}

TEST_F(HistoryTest, TrendsAndHistoryFollowTheRuns) {
  auto s = ResultStore::open(path("t.db"));
  ASSERT_TRUE(s.is_ok());
  const double int8[] = {90.1, 90.4, 89.9};
  std::vector<int64_t> ids;
  for (double v : int8) ids.push_back(add_run(**s, {job("r8/bm1690/qat", "pass", {metric("top1", v, 91.0, true, true)})}));
  // A run without the job, and one where it crashed: no points.
  add_run(**s, {job("other/bm1690/ptq", "pass", {metric("top1", 50, 50, true, true)})});
  const int64_t last = add_run(**s, {job("r8/bm1690/qat", "crashed", {})});
  auto tr = trends_for_run(**s, ids[2], 10);
  ASSERT_TRUE(tr.is_ok());
  ASSERT_EQ(tr->size(), 1u);
  ASSERT_EQ((*tr)[0].points.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*tr)[0].points[i].run_id, ids[i]);
    EXPECT_DOUBLE_EQ((*tr)[0].points[i].int8, int8[i]);
    EXPECT_DOUBLE_EQ((*tr)[0].points[i].fp32, 91.0);
  }
  auto tr2 = trends_for_run(**s, ids[2], 2);  // the window keeps the last 2 runs
  ASSERT_TRUE(tr2.is_ok());
  EXPECT_EQ((*tr2)[0].points.size(), 2u);
  auto h = metric_history(**s, "r8", "top1");
  ASSERT_TRUE(h.is_ok());
  ASSERT_EQ(h->size(), 4u);
  EXPECT_DOUBLE_EQ((*h)[1].int8, 90.4);
  EXPECT_EQ((*h)[3].run_id, last);
  EXPECT_EQ((*h)[3].status, "crashed");
  EXPECT_TRUE(std::isnan((*h)[3].int8));
}

TEST_F(HistoryTest, MergeAddsEachRunOnce) {
  {
    auto a = ResultStore::open(path("a.db"));
    auto b = ResultStore::open(path("b.db"));
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    add_run(**a, {job("x/bm1690/ptq", "pass", {metric("top1", 1, 2, true, true)}), job("y/bm1690/ptq", "fail", {})});
    add_run(**a, {job("x/bm1690/ptq", "pass", {metric("top1", 3, 4, true, true)})});
    add_run(**b, {job("z/onnx-qdq/ptq", "pass", {metric("top1", 5, 6, true, true)})});
  }
  auto c = ResultStore::open(path("c.db"));
  ASSERT_TRUE(c.is_ok());
  auto m1 = merge_into(**c, path("a.db"));
  ASSERT_TRUE(m1.is_ok()) << m1.status().message();
  EXPECT_EQ(m1->runs_added, 2);
  EXPECT_EQ(m1->jobs_added, 3);
  auto m2 = merge_into(**c, path("b.db"));
  ASSERT_TRUE(m2.is_ok());
  EXPECT_EQ(m2->runs_added, 1);
  auto again = merge_into(**c, path("a.db"));  // the same input twice adds nothing
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->runs_added, 0);
  EXPECT_EQ(again->runs_skipped, 2);
  auto runs = (*c)->runs();
  ASSERT_TRUE(runs.is_ok());
  ASSERT_EQ(runs->size(), 3u);
  auto jobs = (*c)->jobs((*runs)[2].id);
  ASSERT_TRUE(jobs.is_ok());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].id, "z/onnx-qdq/ptq");
  EXPECT_DOUBLE_EQ((*jobs)[0].metric("top1")->value, 5);
}

int64_t add_shard_run(ResultStore& s, const std::string& sweep, const std::string& shard,
                      const std::vector<JobResult>& jobs, int exit_code) {
  RunInfo info;
  info.command = "run_eval --shard " + shard;
  info.sweep = sweep;
  info.shard = shard;
  auto id = s.begin_run(info);
  EXPECT_TRUE(id.is_ok()) << id.status().message();
  for (const JobResult& j : jobs) EXPECT_TRUE(s.add_job(*id, j).is_ok());
  EXPECT_TRUE(s.finish_run(*id, "done", exit_code, shard == "1/2" ? 10.0 : 20.0).is_ok());
  return *id;
}

// run_eval --shard i/N: merging the shard databases of a sweep gives one run
// holding every job; partial until all shards are in; merging again is a no-op.
TEST_F(HistoryTest, MergeFoldsTheShardsOfASweepIntoOneRun) {
  {
    auto a = ResultStore::open(path("s1.db"));
    auto b = ResultStore::open(path("s2.db"));
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    add_shard_run(**a, "nightly-7", "1/2", {job("x/bm1690/ptq", "pass", {metric("top1", 1, 2, true, true)})}, 0);
    add_shard_run(**b, "nightly-7", "2/2",
                  {job("y/bm1690/ptq", "fail", {metric("top1", 3, 4, true, false)}), job("z/bm1690/ptq", "pass", {})},
                  1);
    add_shard_run(**b, "nightly-8", "2/2", {job("y/bm1690/ptq", "pass", {})}, 0);  // another sweep
  }
  auto c = ResultStore::open(path("merged.db"));
  ASSERT_TRUE(c.is_ok());
  auto m1 = merge_into(**c, path("s1.db"));
  ASSERT_TRUE(m1.is_ok()) << m1.status().message();
  EXPECT_EQ(m1->runs_added, 1);
  EXPECT_EQ(m1->shards_merged, 1);
  auto sweep = (*c)->sweep_run("nightly-7");
  ASSERT_TRUE(sweep.is_ok());
  ASSERT_GT(*sweep, 0);
  EXPECT_EQ((*c)->run(*sweep)->status, "partial");
  auto m2 = merge_into(**c, path("s2.db"));
  ASSERT_TRUE(m2.is_ok()) << m2.status().message();
  EXPECT_EQ(m2->runs_added, 1);  // nightly-8's run; nightly-7's shard joins the existing run
  EXPECT_EQ(m2->shards_merged, 2);
  auto run = (*c)->run(*sweep);
  ASSERT_TRUE(run.is_ok());
  EXPECT_EQ(run->status, "done");
  EXPECT_EQ(run->exit_code, 1);  // the worst shard
  EXPECT_DOUBLE_EQ(run->seconds, 20.0);  // the slowest shard
  EXPECT_TRUE(run->shard.empty());
  EXPECT_EQ(run->sweep, "nightly-7");
  auto jobs = (*c)->jobs(*sweep);
  ASSERT_TRUE(jobs.is_ok());
  std::vector<std::string> keys;
  for (const JobResult& j : *jobs) keys.push_back(j.id);
  EXPECT_EQ(keys, (std::vector<std::string>{"x/bm1690/ptq", "y/bm1690/ptq", "z/bm1690/ptq"}));
  auto parts = (*c)->run_parts(*sweep);
  ASSERT_TRUE(parts.is_ok());
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].shard, "1/2");
  EXPECT_EQ((*parts)[1].shard, "2/2");
  for (const char* db : {"s1.db", "s2.db"}) {
    auto again = merge_into(**c, path(db));
    ASSERT_TRUE(again.is_ok());
    EXPECT_EQ(again->runs_added + again->shards_merged + again->jobs_added, 0) << db;
  }
  auto runs = (*c)->runs();
  ASSERT_TRUE(runs.is_ok());
  EXPECT_EQ(runs->size(), 2u);
  EXPECT_EQ((*c)->jobs(*sweep)->size(), 3u);
}

// Issue 7 acceptance: 4 processes each writing 500 job results into one database at once.
TEST_F(HistoryTest, FourProcessesWriteTwoThousandJobs) {
  const std::string db = path("p.db");
  std::vector<pid_t> kids;
  for (int p = 0; p < 4; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      auto s = ResultStore::open(db);
      if (!s.is_ok()) {
        fprintf(stderr, "writer %d: %s\n", p, s.status().message().c_str());
        _exit(3);
      }
      RunInfo info;
      auto id = (*s)->begin_run(info);
      if (!id.is_ok()) _exit(4);
      for (int i = 0; i < 500 && rc == 0; ++i) {
        JobResult j = job(fmt::format("m{}/bm1690/ptq", i), "pass", {metric("top1", i, i, true, true)});
        if (!(*s)->add_job(*id, j).is_ok()) rc = 5;
      }
      _exit(rc);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(k, &status, 0), k);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer exit " << WEXITSTATUS(status);
  }
  auto s = ResultStore::open(db);
  ASSERT_TRUE(s.is_ok());
  auto runs = (*s)->runs();
  ASSERT_TRUE(runs.is_ok());
  ASSERT_EQ(runs->size(), 4u);
  size_t total = 0;
  for (const RunInfo& r : *runs) {
    auto jobs = (*s)->jobs(r.id);
    ASSERT_TRUE(jobs.is_ok());
    total += jobs->size();
  }
  EXPECT_EQ(total, 2000u);
}

}  // namespace
}  // namespace qeval
