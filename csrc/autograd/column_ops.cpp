// Autograd of the column-statistics ops, for every device. The other op families register
// their autograd from Python (fastclust/ops/); this one is in C++ because its losses are
// overhead-bound at the sizes people train with: at n = 768, k = 70 on 2 CPU cores the two
// passes over n take ~0.3 ms, and torch.library's Python autograd wrapper plus the gradient
// scaling as Python tensor ops added ~55 us to a pica_loss fwd+bwd (bench/RESULTS.md).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "common/column_checks.h"

namespace fastclust {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Stats = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using LossOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The forward ops run, and the backward calls, the device kernels through the dispatcher (below
// autograd in forward); each op's handle is looked up once.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

Stats column_stats_op(const at::Tensor& a, const at::Tensor& b, bool full_gram) {
  static const auto op =
      find_op<Stats(const at::Tensor&, const at::Tensor&, bool)>("fastclust::column_stats");
  return op.call(a, b, full_gram);
}

std::optional<at::Tensor> defined_or_none(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// column_stats_backward for the gradients w.r.t. (gram, sq_norms, sums), undefined ones absent.
// Below autograd unless the backward is being recorded (create_graph=True): the op's autograd
// formula, which refuses a gradient of the gradient, is a Python one, too slow to cross on
// every step for nothing.
variable_list stats_backward(const variable_list& stats_grads, const at::Tensor& a, const at::Tensor& b,
                             bool full_gram) {
  using Optional = const std::optional<at::Tensor>&;
  static const auto op = find_op<std::tuple<at::Tensor, at::Tensor>(
      Optional, Optional, Optional, const at::Tensor&, const at::Tensor&, bool)>(
      "fastclust::column_stats_backward");
  std::optional<at::AutoDispatchBelowADInplaceOrView> below_autograd;
  if (!at::GradMode::is_enabled()) below_autograd.emplace();
  const auto [grad_a, grad_b] = op.call(defined_or_none(stats_grads[0]), defined_or_none(stats_grads[1]),
                                        defined_or_none(stats_grads[2]), a, b, full_gram);
  return {grad_a, grad_b};
}

LossOutputs column_loss_from_stats_op(const at::Tensor& gram, const at::Tensor& sq_norms,
                                      const at::Tensor& sums, c10::string_view kind, double tau,
                                      double weight) {
  static const auto op = find_op<LossOutputs(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                             c10::string_view, double, double)>("fastclust::column_loss_from_stats");
  return op.call(gram, sq_norms, sums, kind, tau, weight);
}

LossOutputs column_loss_op(const at::Tensor& a, const at::Tensor& b, c10::string_view kind, double tau,
                           double weight) {
  static const auto op = find_op<LossOutputs(const at::Tensor&, const at::Tensor&, c10::string_view,
                                             double, double)>("fastclust::column_loss");
  return op.call(a, b, kind, tau, weight);
}

at::Tensor sum_of_defined(const at::Tensor& x, const at::Tensor& y) {
  return !x.defined() ? y : !y.defined() ? x : x + y;
}

// Gradients w.r.t. (gram, sq_norms, sums), absent ones undefined, of the three loss outputs
// given their incoming gradients (undefined: unused). The loss ops return d cross_entropy /
// d (gram, sq_norms) and d entropy_term / d sums; loss = cross_entropy + weight *
// entropy_term, the cross-entropy depends on (gram, sq_norms) only and the entropy term on
// sums only.
variable_list statistics_grads(AutogradContext* ctx, const variable_list& grads,
                               const at::Tensor& ce_grad_gram, const at::Tensor& ce_grad_sq_norms,
                               const at::Tensor& entropy_grad_sums) {
  const at::Tensor& grad_loss = grads[0];
  const double weight = ctx->saved_data["weight"].toDouble();
  const at::Tensor through_ce = sum_of_defined(grad_loss, grads[1]);
  const at::Tensor through_entropy =
      sum_of_defined(grad_loss.defined() ? grad_loss * weight : at::Tensor(), grads[2]);
  const auto scaled = [](const at::Tensor& by, const at::Tensor& grad) {
    return by.defined() ? by * grad : at::Tensor();
  };
  return {scaled(through_ce, ce_grad_gram), scaled(through_ce, ce_grad_sq_norms),
          scaled(through_entropy, entropy_grad_sums)};
}

// Saves what statistics_grads needs from a loss op's outputs; its gradient outputs carry none.
LossOutputs keep_loss_outputs(AutogradContext* ctx, LossOutputs outputs, double weight) {
  ctx->saved_data["weight"] = weight;
  ctx->mark_non_differentiable({std::get<3>(outputs), std::get<4>(outputs), std::get<5>(outputs)});
  // Unused outputs arrive as undefined gradients rather than zero tensors to multiply.
  ctx->set_materialize_grads(false);
  return outputs;
}

variable_list as_list(const LossOutputs& o) {
  return {std::get<0>(o), std::get<1>(o), std::get<2>(o), std::get<3>(o), std::get<4>(o), std::get<5>(o)};
}

LossOutputs as_tuple(const variable_list& o) { return {o[0], o[1], o[2], o[3], o[4], o[5]}; }

class ColumnStats : public torch::autograd::Function<ColumnStats> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                               bool full_gram) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({a, b});
    ctx->saved_data["full_gram"] = full_gram;
    ctx->set_materialize_grads(false);
    const auto [gram, sq_norms, sums] = column_stats_op(a, b, full_gram);
    return {gram, sq_norms, sums};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto input_grads = stats_backward(grads, saved[0], saved[1], ctx->saved_data["full_gram"].toBool());
    input_grads.emplace_back();  // full_gram gets none
    return input_grads;
  }
};

class ColumnLossFromStats : public torch::autograd::Function<ColumnLossFromStats> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& gram, const at::Tensor& sq_norms,
                               const at::Tensor& sums, c10::string_view kind, double tau, double weight) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto outputs = keep_loss_outputs(
        ctx, column_loss_from_stats_op(gram, sq_norms, sums, kind, tau, weight), weight);
    ctx->save_for_backward({std::get<3>(outputs), std::get<4>(outputs), std::get<5>(outputs)});
    return as_list(outputs);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto stats_grads = statistics_grads(ctx, grads, saved[0], saved[1], saved[2]);
    stats_grads.resize(6);  // kind, tau and weight get none
    return stats_grads;
  }
};

// The local loss: its backward is one column_stats_backward on the scaled statistics gradients.
class ColumnLoss : public torch::autograd::Function<ColumnLoss> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                               c10::string_view kind, double tau, double weight) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto outputs = keep_loss_outputs(ctx, column_loss_op(a, b, kind, tau, weight), weight);
    ctx->saved_data["full_gram"] = column_loss_kind(kind) == kClusterContrastive;
    ctx->save_for_backward({a, b, std::get<3>(outputs), std::get<4>(outputs), std::get<5>(outputs)});
    return as_list(outputs);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto input_grads = stats_backward(statistics_grads(ctx, grads, saved[2], saved[3], saved[4]),
                                      saved[0], saved[1], ctx->saved_data["full_gram"].toBool());
    input_grads.resize(5);  // kind, tau and weight get none
    return input_grads;
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastclust, Autograd, m) {
  m.impl("column_stats", [](const at::Tensor& a, const at::Tensor& b, bool full_gram) {
    const auto out = ColumnStats::apply(a, b, full_gram);
    return Stats{out[0], out[1], out[2]};
  });
  m.impl("column_loss_from_stats", [](const at::Tensor& gram, const at::Tensor& sq_norms,
                                      const at::Tensor& sums, c10::string_view kind, double tau, double weight) {
    return as_tuple(ColumnLossFromStats::apply(gram, sq_norms, sums, kind, tau, weight));
  });
  m.impl("column_loss", [](const at::Tensor& a, const at::Tensor& b, c10::string_view kind, double tau,
                           double weight) { return as_tuple(ColumnLoss::apply(a, b, kind, tau, weight)); });
}

}  // namespace fastclust
