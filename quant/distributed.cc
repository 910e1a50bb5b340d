#include "quant/distributed.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef QEVAL_WITH_NCCL
// CUDA LibTorch with NCCL (cmake -DQEVAL_CUDA=ON finds it; docs/cuda.md).
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>

namespace qeval {

namespace {

Result<int> env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end || x < lo || x > hi) return invalid_argument("environment {}={}: expected an integer in [{}, {}]", name, v, lo, hi);
  return static_cast<int>(x);
}

}  // namespace

Result<DistOptions> dist_options_from_env() {
  DistOptions o;
  QEVAL_ASSIGN_OR_RETURN(o.world_size, env_int("WORLD_SIZE", 1, 1, 4096));
  QEVAL_ASSIGN_OR_RETURN(o.rank, env_int("RANK", 0, 0, o.world_size - 1));
  QEVAL_ASSIGN_OR_RETURN(o.master_port, env_int("MASTER_PORT", 29500, 1, 65535));
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) o.master_addr = a;
  if (const char* b = std::getenv("QEVAL_DIST_BACKEND"); b && *b) o.backend = b;
  if (o.backend != "gloo" && o.backend != "nccl") {
    return invalid_argument("environment QEVAL_DIST_BACKEND={}: expected gloo or nccl", o.backend);
  }
  if (o.world_size > 1 && !std::getenv("RANK")) {
    return invalid_argument("environment WORLD_SIZE={} but RANK is unset (start each rank with RANK=0..{})",
                            o.world_size, o.world_size - 1);
  }
  return o;
}

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;  // CPU tensors, and CUDA ones without NCCL
#ifdef QEVAL_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;  // CUDA tensors (gradients, SyncBN sums)
#endif
};

Distributed::Distributed(DistOptions o) : opts_(std::move(o)), impl_(std::make_unique<Impl>()) {}
Distributed::~Distributed() = default;

Result<std::shared_ptr<Distributed>> Distributed::create(const DistOptions& opts) {
  std::shared_ptr<Distributed> d(new Distributed(opts));
  if (!d->active()) return d;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(opts.master_port);
    so.isServer = opts.rank == 0;
    so.numWorkers = opts.world_size;
    so.waitWorkers = true;
    so.timeout = std::chrono::seconds(opts.timeout_s);
    d->impl_->store = c10::make_intrusive<c10d::TCPStore>(opts.master_addr, so);
    auto go = c10d::ProcessGroupGloo::Options::create();
    go->timeout = std::chrono::seconds(opts.timeout_s);
    go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(opts.master_addr));
    d->impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(d->impl_->store, opts.rank, opts.world_size, go);
    if (opts.backend == "nccl") {
#ifdef QEVAL_WITH_NCCL
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = std::chrono::seconds(opts.timeout_s);
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl", d->impl_->store);
      d->impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, opts.rank, opts.world_size, no);
#else
      return unsupported("QEVAL_DIST_BACKEND=nccl: this build has no NCCL (configure with -DQEVAL_CUDA=ON against a "
                         "CUDA LibTorch; docs/cuda.md)");
#endif
    }
  } catch (const std::exception& e) {
    return io_error("rank {}/{}: c10d rendezvous at {}:{} failed: {}", opts.rank, opts.world_size,
                    opts.master_addr, opts.master_port, e.what());
  }
  return d;
}

void Distributed::all_reduce_sum(torch::Tensor& t) const {
  if (!active()) return;
  std::vector<at::Tensor> ts{t};
#ifdef QEVAL_WITH_NCCL
  if (impl_->nccl && t.is_cuda()) {
    impl_->nccl->allreduce(ts)->wait();
    return;
  }
#endif
  impl_->pg->allreduce(ts)->wait();
}

namespace {

// Forward: the sum over ranks; backward: the sum over ranks of the incoming
// gradients (every rank's copy of the sum feeds that rank's loss).
class AllReduceSum : public torch::autograd::Function<AllReduceSum> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const Distributed* d) {
    ctx->saved_data["d"] = reinterpret_cast<int64_t>(d);
    torch::Tensor y = x.clone();
    d->all_reduce_sum(y);
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list g) {
    const auto* d = reinterpret_cast<const Distributed*>(ctx->saved_data["d"].toInt());
    torch::Tensor gx = g[0].clone();
    d->all_reduce_sum(gx);
    return {gx, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor Distributed::all_reduce_sum_autograd(const torch::Tensor& t) const {
  if (!active()) return t;
  return AllReduceSum::apply(t, this);
}

void Distributed::all_reduce_gradients(const std::vector<torch::Tensor>& params) const {
  if (!active()) return;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return;
  std::vector<torch::Tensor> flat_parts;
  for (const auto& g : grads) flat_parts.push_back(g.reshape({-1}));
  torch::Tensor flat = torch::cat(flat_parts);
  all_reduce_sum(flat);
  int64_t off = 0;
  for (auto& g : grads) {
    const int64_t n = g.numel();
    g.copy_(flat.slice(0, off, off + n).view_as(g));
    off += n;
  }
}

Result<std::string> Distributed::broadcast_bytes(const std::string& bytes) const {
  if (!active()) return bytes;
  try {
    torch::Tensor n = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64);
    std::vector<at::Tensor> ns{n};
    impl_->pg->broadcast(ns)->wait();
    torch::Tensor buf = torch::empty({n.item<int64_t>()}, torch::kUInt8);
    if (rank() == 0) std::memcpy(buf.data_ptr<uint8_t>(), bytes.data(), bytes.size());
    std::vector<at::Tensor> bs{buf};
    impl_->pg->broadcast(bs)->wait();
    return std::string(reinterpret_cast<const char*>(buf.data_ptr<uint8_t>()), static_cast<size_t>(buf.numel()));
  } catch (const std::exception& e) {
    return io_error("rank {}: broadcast failed: {}", rank(), e.what());
  }
}

void Distributed::barrier() const {
  if (active()) impl_->pg->barrier()->wait();
}

torch::Tensor sync_batch_norm(const Distributed* dist, const torch::Tensor& x, const torch::Tensor& weight,
                              const torch::Tensor& bias, torch::Tensor& running_mean, torch::Tensor& running_var,
                              double momentum, double eps) {
  if (!dist || !dist->active()) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var, true, momentum, eps, false);
  }
  // Statistics over (N, H, W) of every rank: the count, then the mean, then the
  // centred sum of squares (two passes, as accurate as one process's).
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  torch::Tensor count = torch::tensor({static_cast<double>(x.numel() / x.size(1))}, torch::kFloat64);
  dist->all_reduce_sum(count);
  const double n = count.item<double>();
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = -1;
  const torch::Tensor mean = dist->all_reduce_sum_autograd(x.sum(dims)) / n;
  const torch::Tensor centred = x - mean.reshape(shape);
  const torch::Tensor var = dist->all_reduce_sum_autograd(centred.square().sum(dims)) / n;
  torch::Tensor y = centred * torch::rsqrt(var + eps).reshape(shape);
  if (weight.defined()) y = y * weight.reshape(shape);
  if (bias.defined()) y = y + bias.reshape(shape);
  {
    torch::NoGradGuard ng;
    running_mean.mul_(1 - momentum).add_(mean.detach(), momentum);
    running_var.mul_(1 - momentum).add_(var.detach() * (n / std::max(1.0, n - 1)), momentum);
  }
  return y;
}

}  // namespace qeval
