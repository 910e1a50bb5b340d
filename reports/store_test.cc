#include "reports/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace qeval {
namespace {

namespace fs = std::filesystem;

// Both NaN, or equal.
void expect_same(double a, double b, const std::string& what) {
  if (std::isnan(a) || std::isnan(b)) {
    EXPECT_TRUE(std::isnan(a) && std::isnan(b)) << what << ": " << a << " vs " << b;
  } else {
    EXPECT_EQ(a, b) << what;
  }
}

void expect_equal(const JobResult& a, const JobResult& b) {
  SCOPED_TRACE(a.id);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.chip, b.chip);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.cfg_path, b.cfg_path);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.signal, b.signal);
  EXPECT_EQ(a.log_tail, b.log_tail);
  expect_same(a.seconds, b.seconds, "seconds");
  EXPECT_EQ(a.samples, b.samples);
  EXPECT_EQ(a.baseline_cache_hit, b.baseline_cache_hit);
  EXPECT_EQ(a.quant_cache_hit, b.quant_cache_hit);
  EXPECT_EQ(a.artifacts, b.artifacts);
  ASSERT_EQ(a.metrics.size(), b.metrics.size());
  for (size_t i = 0; i < a.metrics.size(); ++i) {
    const MetricResult &x = a.metrics[i], &y = b.metrics[i];
    EXPECT_EQ(x.name, y.name);
    expect_same(x.value, y.value, x.name + ".value");
    expect_same(x.baseline, y.baseline, x.name + ".baseline");
    expect_same(x.delta, y.delta, x.name + ".delta");
    EXPECT_EQ(x.tolerance, y.tolerance);
    EXPECT_EQ(x.gated, y.gated);
    EXPECT_EQ(x.pass, y.pass);
  }
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerResult &x = a.layers[i], &y = b.layers[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.op, y.op);
    expect_same(x.cos, y.cos, x.name + ".cos");
    expect_same(x.euclid, y.euclid, x.name + ".euclid");
    expect_same(x.sqnr, y.sqnr, x.name + ".sqnr");
    EXPECT_EQ(x.max_lsb, y.max_lsb);
    EXPECT_EQ(x.pass, y.pass);
    expect_same(x.lo, y.lo, x.name + ".lo");
    expect_same(x.hi, y.hi, x.name + ".hi");
    expect_same(x.saturation, y.saturation, x.name + ".saturation");
    expect_same(x.outlier, y.outlier, x.name + ".outlier");
    expect_same(x.scale, y.scale, x.name + ".scale");
    EXPECT_EQ(x.zero_point, y.zero_point);
    EXPECT_EQ(x.bits, y.bits);
  }
}

JobResult passing_job() {
  JobResult j;
  j.id = "resnet8/bm1684x/int8_sym";
  j.model = "resnet8";
  j.chip = "bm1684x";
  j.mode = "int8_sym";
  j.task = "classify";
  j.cfg_path = "regression/cfg/resnet8.yaml";
  j.status = "pass";
  j.seconds = 12.5;
  j.samples = 1000;
  j.baseline_cache_hit = true;
  j.metrics = {{"top1", 85.3, 85.9, 85.3 - 85.9, "drop <= 1.00", true, true},
               {"top5", 99.1, kNaN, kNaN, "", false, true},
               {"output_cos", 0.99912, kNaN, kNaN, ">= 0.99", true, true}};
  j.layers = {{"conv1", "Conv", 0.99987, 0.9876, 38.25, 1, true},
              {"relu1", "Relu", 0.99951, kNaN, 35.5, 0, true},
              {"fc", "Gemm", kNaN, kNaN, kNaN, -1, false}};
  j.layers[0].lo = -1.25;
  j.layers[0].hi = 6.5;
  j.layers[0].saturation = 0.0125;
  j.layers[0].outlier = 3.75;
  j.layers[0].scale = 0.05;
  j.layers[0].zero_point = -3;
  j.layers[0].bits = 8;
  j.artifacts = {{"qmodel", "results/resnet8.qmodel"}, {"cali_table", "results/resnet8.cali"}};
  return j;
}

JobResult failing_job() {
  JobResult j;
  j.id = "det_tiny/cv183x/int8_asym";
  j.model = "det_tiny";
  j.chip = "cv183x";
  j.mode = "int8_asym";
  j.task = "detect";
  j.status = "fail";
  j.message = "mAP dropped by 0.0412 (tolerance ratio >= 0.95)";
  j.seconds = 40.25;
  j.samples = 200;
  j.quant_cache_hit = true;
  j.metrics = {{"mAP", 0.3012, 0.3424, 0.3012 - 0.3424, "ratio >= 0.95", true, false}};
  j.layers = {{"stem", "Conv", 0.9712, 0.81, 21.0, 7, false}};
  return j;
}

JobResult crashed_job() {
  JobResult j;
  j.id = "lenet5/bm1684x/int8_sym";
  j.model = "lenet5";
  j.chip = "bm1684x";
  j.mode = "int8_sym";
  j.status = "crashed";
  j.message = "worker killed by signal 11 (SIGSEGV)";
  j.signal = 11;
  j.log_tail = {"loading model", "", "Segmentation fault | core dumped"};
  j.seconds = 1.5;
  return j;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("qeval_store_test_{}", getpid()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_.parent_path()); }
  std::string db_path() const { return (dir_ / "sub" / "qeval.db").string(); }

  fs::path dir_;
};

// Runs one SQL statement on the file with the plain C API (no ResultStore).
int64_t raw_query_int(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  int64_t v = -1;
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

TEST_F(StoreTest, RoundTripOfARun) {
  const std::vector<JobResult> written = {passing_job(), failing_job(), crashed_job()};
  int64_t run_id = 0;
  {
    auto store = ResultStore::open(db_path());  // creates dir_/sub
    ASSERT_TRUE(store.is_ok()) << store.status().message();
    EXPECT_EQ((*store)->latest_run_id().status().code(), StatusCode::kNotFound);
    RunInfo info;
    info.command = "run_eval --fast_test regression/basic.yaml";
    info.host = "ci-1";
    info.git_sha = "abc123";
    info.fast_test = true;
    auto id = (*store)->begin_run(info);
    ASSERT_TRUE(id.is_ok()) << id.status().message();
    run_id = *id;
    auto running = (*store)->run(run_id);
    ASSERT_TRUE(running.is_ok());
    EXPECT_EQ(running->status, "running");
    EXPECT_EQ(running->started.size(), 20u) << running->started;  // 2024-01-02T03:04:05Z
    EXPECT_EQ(running->exit_code, -1);
    for (const JobResult& j : written) {
      Status s = (*store)->add_job(run_id, j, "cfghash");
      ASSERT_TRUE(s.is_ok()) << s.message();
    }
    ASSERT_TRUE((*store)->finish_run(run_id, "done", 2, 54.25).is_ok());
    EXPECT_EQ((*store)->finish_run(run_id + 7, "done", 0, 1).code(), StatusCode::kNotFound);
  }
  // A fresh connection reads everything back.
  auto store = ResultStore::open(db_path());
  ASSERT_TRUE(store.is_ok()) << store.status().message();
  auto latest = (*store)->latest_run_id();
  ASSERT_TRUE(latest.is_ok());
  EXPECT_EQ(*latest, run_id);
  auto run = (*store)->run(run_id);
  ASSERT_TRUE(run.is_ok());
  EXPECT_EQ(run->id, run_id);
  EXPECT_EQ(run->status, "done");
  EXPECT_EQ(run->exit_code, 2);
  EXPECT_EQ(run->seconds, 54.25);
  EXPECT_EQ(run->command, "run_eval --fast_test regression/basic.yaml");
  EXPECT_EQ(run->host, "ci-1");
  EXPECT_EQ(run->git_sha, "abc123");
  EXPECT_TRUE(run->fast_test);
  EXPECT_FALSE(run->finished.empty());
  auto read = (*store)->jobs(run_id);
  ASSERT_TRUE(read.is_ok()) << read.status().message();
  ASSERT_EQ(read->size(), written.size());
  for (size_t i = 0; i < written.size(); ++i) expect_equal((*read)[i], written[i]);
  EXPECT_EQ((*store)->jobs(run_id + 1).status().code(), StatusCode::kNotFound);
  // NaN is NULL in the file, and the schema version is recorded.
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM metrics WHERE baseline IS NULL"), 2);
  EXPECT_EQ(raw_query_int(db_path(), "PRAGMA user_version"), kStoreSchemaVersion);
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM artifacts WHERE hash = ''"), 2);
}

TEST_F(StoreTest, SameJobTwiceReplaces) {
  auto store = ResultStore::open(db_path());
  ASSERT_TRUE(store.is_ok()) << store.status().message();
  auto run_id = (*store)->begin_run(RunInfo{});
  ASSERT_TRUE(run_id.is_ok());
  JobResult first = passing_job();
  ASSERT_TRUE((*store)->add_job(*run_id, first).is_ok());
  ASSERT_TRUE((*store)->add_job(*run_id, crashed_job()).is_ok());
  JobResult again = first;
  again.status = "fail";
  again.metrics.resize(1);
  again.metrics[0].pass = false;
  again.layers.resize(2);
  again.artifacts.erase("cali_table");
  ASSERT_TRUE((*store)->add_job(*run_id, again).is_ok());
  auto read = (*store)->jobs(*run_id);
  ASSERT_TRUE(read.is_ok()) << read.status().message();
  ASSERT_EQ(read->size(), 2u);
  expect_equal((*read)[0], crashed_job());
  expect_equal((*read)[1], again);  // the re-run is the newest row
  // No orphaned child rows of the replaced job.
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM jobs"), 2);
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM metrics"), 1);
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM layers"), 2);
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM artifacts"), 1);
  // A job of an unknown run is refused, and nothing is left behind.
  Status s = (*store)->add_job(*run_id + 5, first);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find(db_path()), std::string::npos) << s.message();
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM jobs"), 2);
}

TEST_F(StoreTest, FindingsRoundTripAndReplace) {
  auto store = ResultStore::open(db_path());
  ASSERT_TRUE(store.is_ok()) << store.status().message();
  auto run = (*store)->begin_run(RunInfo{});
  ASSERT_TRUE(run.is_ok());
  const std::vector<Finding> f = {{"check", "calibration_ratio", "PTQ top-1 / fp32 top-1", 0, 0.62, kNaN},
                                  {"sensitivity", "conv2", "", 1, 80.5, 91.0},
                                  {"fix", "conv2", "float", 1, kNaN, kNaN}};
  ASSERT_TRUE((*store)->set_findings(*run, f).is_ok());
  auto back = (*store)->findings(*run);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  ASSERT_EQ(back->size(), f.size());
  for (size_t i = 0; i < f.size(); ++i) {
    EXPECT_EQ((*back)[i].kind, f[i].kind);
    EXPECT_EQ((*back)[i].subject, f[i].subject);
    EXPECT_EQ((*back)[i].detail, f[i].detail);
    EXPECT_EQ((*back)[i].rank, f[i].rank);
    expect_same((*back)[i].value, f[i].value, "value");
    expect_same((*back)[i].value2, f[i].value2, "value2");
  }
  ASSERT_TRUE((*store)->set_findings(*run, {f[2]}).is_ok());
  EXPECT_EQ((*store)->findings(*run)->size(), 1u);
}

TEST_F(StoreTest, NewerSchemaIsRefused) {
  fs::create_directories(fs::path(db_path()).parent_path());
  EXPECT_EQ(raw_query_int(db_path(), "PRAGMA user_version = 99"), -1);  // no rows; sets it
  ASSERT_EQ(raw_query_int(db_path(), "PRAGMA user_version"), 99);
  auto store = ResultStore::open(db_path());
  ASSERT_FALSE(store.is_ok());
  const std::string& msg = store.status().message();
  EXPECT_NE(msg.find("schema version 99"), std::string::npos) << msg;
  EXPECT_NE(msg.find(db_path()), std::string::npos) << msg;
  EXPECT_EQ(raw_query_int(db_path(), "PRAGMA user_version"), 99);  // untouched
}

TEST_F(StoreTest, NotAnSqliteFile) {
  fs::create_directories(fs::path(db_path()).parent_path());
  {
    std::ofstream f(db_path());
    for (int i = 0; i < 100; ++i) f << "model,chip,top1\nresnet8,bm1684x,85.3\n";
  }
  auto store = ResultStore::open(db_path());
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().message();
  EXPECT_NE(store.status().message().find(db_path()), std::string::npos) << store.status().message();
}

TEST_F(StoreTest, ConcurrentWritersEachWithOwnConnection) {
  int64_t run_id = 0;
  {
    auto store = ResultStore::open(db_path());
    ASSERT_TRUE(store.is_ok()) << store.status().message();
    auto id = (*store)->begin_run(RunInfo{});
    ASSERT_TRUE(id.is_ok());
    run_id = *id;
  }
  std::mutex mu;
  std::vector<std::string> errors;
  auto note = [&](const Status& s) {
    if (s.is_ok()) return;
    std::lock_guard<std::mutex> lock(mu);
    errors.push_back(s.message());
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto store = ResultStore::open(db_path());
      if (!store.is_ok()) return note(store.status());
      for (int i = 0; i < 100; ++i) {
        JobResult j = i % 2 ? passing_job() : failing_job();
        j.id = fmt::format("t{}/job{}", t, i);
        note((*store)->add_job(run_id, j));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(errors.empty()) << errors.size() << " errors, first: " << errors.front();
  auto store = ResultStore::open(db_path());
  ASSERT_TRUE(store.is_ok());
  auto read = (*store)->jobs(run_id);
  ASSERT_TRUE(read.is_ok()) << read.status().message();
  EXPECT_EQ(read->size(), 400u);
  EXPECT_EQ(raw_query_int(db_path(), "SELECT count(*) FROM metrics"), 200 * 3 + 200 * 1);
}

}  // namespace
}  // namespace qeval
