// The QAT core: a GraphModule that follows a QuantPlan (quant/plan.h) and
// wraps the float ops in observers and fake quantizers, with the stages of
// sophgo-mq / tpu-mq:
//
//   auto m = QatModule::create(fp32_graph, quant_cfg, profile, opts);  // prepare
//   m->enable_calibration();   // observers on, fake quant off; run batches
//   m->enable_quantization();  // scales from the observers, fake quant on (PTQ model)
//   ... train (m->parameters(): weights, BN affine, LSQ scales) ...
//   m->freeze();               // scales and BN statistics fixed
//   Graph q = *m->convert_deploy();  // quantized graph for simulator lowering
//
// Conv2d + BatchNorm are trained folded (as torch.ao's ConvBn2d): the weight
// seen by the fake quantizer is w·γ/σ with σ the running std; before
// `freeze_bn_step` the BN still normalises with batch statistics (and updates
// its running statistics), afterwards the folded conv is exactly the deployed
// one. Activation fake quant: LSQ (learned scale) or STE (scales fixed after
// calibration); weight fake quant: per-channel max |w|/qmax recomputed every
// step (STE) or LSQ initialised from it.
//
// Includes LibTorch: include from quant/ and models/ sources only.
#pragma once

#include <memory>

#include "quant/fake_quant.h"
#include "quant/interpreter.h"
#include "quant/observer.h"
#include "quant/plan.h"

namespace qeval {

struct QatOptions {
  std::string act_fake_quant = "lsq";        // lsq | ste
  std::string weight_fake_quant = "minmax";  // minmax | lsq
  int64_t freeze_bn_step = 0;                // BN statistics frozen from this training step
  bool check_finite = false;                 // every node output checked (NaN/Inf -> error naming it)
};

class QatModule : public GraphModule {
 public:
  static Result<std::unique_ptr<QatModule>> create(const Graph& g, const QuantConfig& cfg,
                                                   const ChipProfile& profile, const QatOptions& opts,
                                                   bool channels_last = false);

  const QuantPlan& plan() const { return plan_; }
  const ChipProfile& profile() const { return profile_; }
  const QatOptions& options() const { return opts_; }

  // Stage 1: observers collect ranges of every quantized activation; fake quant off.
  void enable_calibration();
  // Stage 2: scales and zero points from the observers; fake quant on.
  Status enable_quantization();
  // Stage 4: observers off, scales fixed (LSQ scales stop learning), BN statistics frozen.
  void freeze();
  bool quantization_enabled() const { return fq_on_; }

  // Call once per training step (the BN freeze step counts these).
  void step() { ++steps_; }
  int64_t steps() const { return steps_; }
  void set_check_finite(bool on) { opts_.check_finite = on; }
  // While set, every fake-quantized activation is stored as its integer
  // q = round(x̂ / s) + z (int32), by owner value name.
  void set_capture(std::map<std::string, torch::Tensor>* c) { capture_ = c; }

  // Scales, zero points and folded weights of the current state.
  Result<DeployParams> deploy_params() const;
  // The quantized graph (unlowered) for the chip profile; lower it with lower_graph.
  Result<Graph> convert_deploy() const;

  // Checkpoints: the float graph plus "qat:<value>:scale|zero_point" constants
  // and the stage (metadata qat_stage, qat_steps).
  Result<Graph> to_graph() const override;
  Status load_weights(const Graph& g) override;
  // The activation QuantParams of owner value `v` (after enable_quantization).
  Result<QuantParams> act_params(const std::string& v) const;

 protected:
  QatModule(Graph g, QuantPlan plan, ChipProfile profile, QatOptions opts)
      : GraphModule(std::move(g)), plan_(std::move(plan)), profile_(std::move(profile)), opts_(std::move(opts)) {}
  torch::Tensor run_node(const Node& n, const std::vector<torch::Tensor>& in) override;
  torch::Tensor prepare_input(size_t i, const torch::Tensor& x) override;

 private:
  struct ActQuant {
    QuantSpec spec;
    FakeQuantSpec fq;
    std::unique_ptr<Observer> observer;
    torch::Tensor scale, zero_point;  // [1] float
    bool ready = false;
  };
  struct WeightQuant {
    QuantSpec spec;
    FakeQuantSpec fq;
    torch::Tensor lsq_scale;  // [C], weight_fake_quant = lsq
  };
  Status init_qat(bool channels_last, const QuantConfig& cfg);
  torch::Tensor quantize_act(const std::string& v, const torch::Tensor& x);
  // γ / √(running_var + ε) of a BatchNorm node.
  torch::Tensor bn_factor(const Node& bn) const;
  // Folded weight and bias of a Conv2d/Linear (BN applied with running statistics).
  std::pair<torch::Tensor, torch::Tensor> folded(const Node& n) const;
  torch::Tensor weight_scale(const std::string& node, const torch::Tensor& w) const;
  torch::Tensor run_layer(const Node& n, const std::vector<torch::Tensor>& in);

  QuantPlan plan_;
  ChipProfile profile_;
  QatOptions opts_;
  std::map<std::string, ActQuant> act_;
  std::map<std::string, WeightQuant> wq_;
  std::map<std::string, const Node*> bn_node_;  // conv name -> its folded BN
  bool observe_ = false, fq_on_ = false, frozen_ = false;
  int64_t steps_ = 0;
  std::map<std::string, torch::Tensor>* capture_ = nullptr;
};

}  // namespace qeval
