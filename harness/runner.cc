#include "harness/runner.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "core/file_io.h"
#include "core/text.h"

extern char** environ;

namespace qeval {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

struct Slot {
  std::atomic<int> state{0};  // 0 waiting, 1 running, 2 done
  Clock::time_point start;
  std::string last_stage;     // non-TTY: printed when it changes
};

class Pool {
 public:
  Pool(const std::vector<JobSpec>& specs, const RunnerOptions& o)
      : specs_(specs), opts_(o), slots_(specs.size()), results_(specs.size()), t0_(Clock::now()) {}

  std::vector<JobResult> run() {
    std::thread progress([this] { progress_loop(); });
    tbb::task_arena arena(std::max(1, opts_.pool_size));
    arena.execute([&] {
      tbb::parallel_for(
          tbb::blocked_range<size_t>(0, specs_.size(), 1),
          [&](const tbb::blocked_range<size_t>& r) {
            for (size_t i = r.begin(); i != r.end(); ++i) run_one(i);
          },
          tbb::simple_partitioner());
    });
    {
      std::lock_guard<std::mutex> l(mu_);
      finished_ = true;
    }
    cv_.notify_all();
    progress.join();
    if (opts_.tty) std::cerr << "\n";
    return results_;
  }

 private:
  bool stopping() const { return opts_.stop && opts_.stop->load(); }

  void run_one(size_t i) {
    const JobSpec& spec = specs_[i];
    Slot& slot = slots_[i];
    slot.start = Clock::now();
    if (stopping()) {
      results_[i] = failed(spec, "interrupted", "not started");
      slot.state = 2;
      return;
    }
    slot.state = 1;
    JobResult r = spawn_and_wait(spec);
    r.seconds = std::chrono::duration<double>(Clock::now() - slot.start).count();
    results_[i] = r;
    slot.state = 2;
    std::lock_guard<std::mutex> l(mu_);
    ++done_;
    durations_ += r.seconds;
    if (opts_.on_done && r.status != "interrupted") opts_.on_done(r);
    print_line(fmt::format("[run_eval] {}/{} {} {} ({})", done_, specs_.size(), spec.id, to_upper(r.status),
                           format_duration(r.seconds)) +
               (r.message.empty() ? "" : ": " + r.message.substr(0, 160)));
  }


  // Under mu_. On a TTY the progress line is redrawn after it.
  void print_line(const std::string& s) {
    if (opts_.tty) std::cerr << "\r\033[K";
    std::cerr << s << "\n";
  }

  JobResult failed(const JobSpec& spec, const std::string& status, const std::string& message) {
    JobResult r;
    r.id = spec.id;
    r.model = spec.id.substr(0, spec.id.find('/'));  // ids are NAME/CHIP/MODE
    r.cfg_path = spec.cfg_path;
    r.chip = spec.chip;
    r.mode = spec.mode;
    r.status = status;
    r.message = message;
    return r;
  }

  JobResult spawn_and_wait(const JobSpec& spec) {
    const fs::path dir(spec.work_dir);
    std::error_code ec;
    fs::create_directories(dir, ec);
    const std::string spec_path = (dir / "spec.json").string(), out = (dir / "result.json").string();
    const std::string log = (dir / "worker.log").string();
    fs::remove(out, ec);
    fs::remove(spec.stage_file, ec);
    if (Status s = write_file_atomic(spec_path, job_spec_to_json(spec)); !s.is_ok()) {
      return failed(spec, "error", s.message());
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);  // its own group: a timeout kills it and anything it started
    std::vector<std::string> args = {opts_.worker_exe, "--worker", spec_path, "--worker-out", out};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, opts_.worker_exe.c_str(), &fa, &at, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) return failed(spec, "error", fmt::format("cannot start worker {}: {}", opts_.worker_exe, strerror(rc)));

    int status = 0;
    bool timed_out = false, interrupted = false;
    const auto start = Clock::now();
    while (true) {
      const pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      if (w < 0 && errno != EINTR) return failed(spec, "crashed", fmt::format("waitpid: {}", strerror(errno)));
      if (stopping() && !interrupted) {
        interrupted = true;
        ::kill(-pid, SIGKILL);
      }
      if (opts_.timeout_s > 0 && !timed_out &&
          std::chrono::duration<double>(Clock::now() - start).count() > opts_.timeout_s) {
        timed_out = true;
        ::kill(-pid, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const std::vector<std::string> tail = tail_lines(log, 20);
    if (interrupted) return failed(spec, "interrupted", "stopped by the user; run_eval --resume reruns it");
    if (timed_out) {
      JobResult r = failed(spec, "timeout",
                           fmt::format("killed after {} (--timeout {}); last stage: {}", format_duration(opts_.timeout_s),
                                       opts_.timeout_s, stage_of(spec)));
      r.log_tail = tail;
      r.artifacts["log"] = log;
      return r;
    }
    if (WIFSIGNALED(status)) {
      const int sig = WTERMSIG(status);
      JobResult r = failed(spec, "crashed",
                           fmt::format("worker killed by signal {} ({}) during: {}", sig, strsignal(sig),
                                       stage_of(spec)));
      r.signal = sig;
      r.log_tail = tail;
      r.artifacts["log"] = log;
      return r;
    }
    auto text = read_file(out);
    if (!text.is_ok()) {
      JobResult r = failed(spec, "crashed",
                           fmt::format("worker exited with code {} without a result during: {}",
                                       WIFEXITED(status) ? WEXITSTATUS(status) : -1, stage_of(spec)));
      r.log_tail = tail;
      r.artifacts["log"] = log;
      return r;
    }
    auto res = job_result_from_json(*text, out);
    if (!res.is_ok()) return failed(spec, "crashed", res.status().message());
    if (res->status != "pass" && res->status != "fail") res->log_tail = tail;
    res->artifacts["log"] = log;
    return *res;
  }

  // What the worker last wrote into its stage file ("start-up" before its first write).
  static std::string stage_of(const JobSpec& spec) {
    auto s = read_file(spec.stage_file);
    return s.is_ok() ? *s : "start-up";
  }

  void progress_loop() {
    std::unique_lock<std::mutex> l(mu_);
    while (!finished_) {
      cv_.wait_for(l, std::chrono::milliseconds(opts_.tty ? 500 : 2000));
      if (finished_) break;
      const double el = std::chrono::duration<double>(Clock::now() - t0_).count();
      std::string eta = "?";
      if (done_ > 0) {
        const double per = durations_ / done_;
        const size_t left = specs_.size() - done_;
        eta = format_duration(per * left / std::max(1, opts_.pool_size));
      }
      std::string running;
      for (size_t i = 0; i < specs_.size(); ++i) {
        if (slots_[i].state != 1) continue;
        const std::string st = stage_of(specs_[i]);
        if (opts_.tty) {
          running += fmt::format(" | {}: {}", specs_[i].id, st.substr(0, 40));
        } else if (st != slots_[i].last_stage) {
          slots_[i].last_stage = st;
          std::cerr << fmt::format("[run_eval] {} {}: {}\n", format_duration(el), specs_[i].id, st);
        }
      }
      if (opts_.tty) {
        std::cerr << fmt::format("\r\033[K[run_eval] {}/{} done, {} elapsed, ETA {}{}", done_, specs_.size(),
                                 format_duration(el), eta, running)
                  << std::flush;
      }
    }
  }

  const std::vector<JobSpec>& specs_;
  const RunnerOptions& opts_;
  std::vector<Slot> slots_;
  std::vector<JobResult> results_;
  Clock::time_point t0_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  size_t done_ = 0;
  double durations_ = 0;
};

}  // namespace

std::vector<std::string> tail_lines(const std::string& path, size_t n) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    // Progress lines end in \r-separated redraws: keep the last redraw.
    if (auto p = line.rfind('\r'); p != std::string::npos) line = line.substr(p + 1);
    if (line.empty()) continue;
    lines.push_back(line);
    if (lines.size() > n) lines.erase(lines.begin());
  }
  return lines;
}

std::vector<JobResult> run_jobs(const std::vector<JobSpec>& specs, const RunnerOptions& opts) {
  if (specs.empty()) return {};
  Pool pool(specs, opts);
  return pool.run();
}

}  // namespace qeval
