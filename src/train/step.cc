#include "train/step.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "train/run_state.h"
#include "util/error.h"
#include "util/profiler.h"

namespace bertune::train {

TrainStep::TrainStep(model::BertModel& model, AdamW& optimizer, LrSchedule schedule, double max_grad_norm)
    : model_(model), optimizer_(optimizer), schedule_(schedule),
      max_grad_norm_(max_grad_norm > 0 ? max_grad_norm : INFINITY) {}

StepOutcome TrainStep::run(std::span<const model::Batch> micro_batches, int64_t step) {
  if (on_device()) {  // the device step, then its one read
    if (!pending_.empty()) throw Error("TrainStep::run: collect() the launched steps first");
    launch_on_device(micro_batches, step);
    return collect().front();
  }
  StepOutcome r;
  r.lr = schedule_.at(step);
  r.step = step;
  double k = static_cast<double>(micro_batches.size());
  double loss_sum = micro_batch_losses(micro_batches, r);
  const bool single = micro_batches.size() == 1 && reduction_ == nullptr;
  if (reduction_ != nullptr) {
    if (word_embeddings_ != nullptr) reduction_->touched_rows(touched_rows(micro_batches));
    reduction_->sum_over_workers(model_.grads(), model_.num_params(), loss_sum, k);
  }
  r.finite = std::isfinite(loss_sum);
  if (r.finite) {
    r.loss = static_cast<float>(loss_sum / k);
    ProfileScope p("optimizer (clip + adamw + zero_grad)");
    // The buffer holds the sum of k mean-loss gradients; the step's gradient is 1/k of it.
    r.grad_norm = grad_norm(model_) / k;
    r.finite = std::isfinite(r.grad_norm);
    // clip_coefficient(norm, inf) is 1: the same pass with nothing to scale.
    const float scale = single ? clip_coefficient(r.grad_norm, max_grad_norm_)
                               : static_cast<float>(clip_coefficient(r.grad_norm, max_grad_norm_) / k);
    if (r.finite) optimizer_.step(r.lr, scale);
  } else if (std::isfinite(r.loss)) {
    r.loss = static_cast<float>(loss_sum);  // another worker's loss was not finite
  }
  if (!r.finite) model_.zero_grad();
  return r;
}

void TrainStep::set_gradient_reduction(GradientReduction* reduction) {
  reduction_ = reduction;
  word_embeddings_ = nullptr;
  if (reduction != nullptr && reduction->overlaps())
    reduction->gradient_layout(model_.gradient_ready_offsets(), model_.num_params());
  if (reduction == nullptr || model_.task() == model::Task::MaskedLM || model_.task() == model::Task::PreTraining)
    return;  // a tied decoder touches every row
  for (const model::ParamInfo& p : model_.param_info())
    if (p.name.ends_with("embeddings.word_embeddings.weight") && p.shape.size() == 2) word_embeddings_ = &p;
}

// The word-embedding rows the micro-batches' tokens touch.
TouchedRows TrainStep::touched_rows(std::span<const model::Batch> micro_batches) const {
  TouchedRows t;
  t.offset = word_embeddings_->offset;
  t.rows = static_cast<int>(word_embeddings_->shape[0]);
  t.cols = static_cast<int>(word_embeddings_->shape[1]);
  t.touched.assign(static_cast<size_t>(t.rows), 0);
  for (const model::Batch& b : micro_batches)
    for (int32_t id : b.input_ids)
      if (id >= 0 && id < t.rows) t.touched[static_cast<size_t>(id)] = 1;
  return t;
}

// Forward and backward of each micro-batch (gradients added up in the buffer); returns the
// sum of their losses, NaN (r.loss the non-finite value) when one was not finite. With a
// gradient reduction each loss is divided by the global micro-batch's count per worker
// (see GradientReduction); an empty micro-batch (a worker's share of a short batch) adds 0.
void TrainStep::sum_counts(std::span<const model::Batch> micro_batches) {
  counts_.clear();
  for (const model::Batch& batch : micro_batches) counts_.push_back(model::BertModel::loss_count(batch));
  reduction_->sum_counts(counts_);
}

bool TrainStep::set_denominator(const model::Batch& batch, size_t j) {
  if (batch.num_sequences() == 0) {  // nothing here; the dropout step advances as a forward's would
    model_.set_dropout_step(model_.dropout_step() + 1);
    return false;
  }
  model_.set_loss_denominator(counts_[j] / reduction_->workers());
  return true;
}

namespace {
struct ResetDenominator {
  model::BertModel& m;
  ~ResetDenominator() { m.set_loss_denominator(0); }
};
}  // namespace

void GradientReduction::sum_on_device(float*, size_t, double*) {
  throw Error("this gradient reduction sums host memory, not a device's");
}

double TrainStep::micro_batch_losses(std::span<const model::Batch> micro_batches, StepOutcome& r) {
  if (reduction_ != nullptr) sum_counts(micro_batches);
  ResetDenominator reset{model_};
  double loss_sum = 0;
  for (size_t j = 0; j < micro_batches.size(); ++j) {
    const model::Batch& batch = micro_batches[j];
    if (reduction_ != nullptr && !set_denominator(batch, j)) continue;
    const float loss = model_.forward(batch, /*train=*/true);
    if (!std::isfinite(loss)) {
      r.loss = loss;  // the non-finite value, for the caller's message
      return NAN;
    }
    // The step's last backward finishes the gradients: an overlapping reduction may start
    // summing each part as soon as it is final.
    if (reduction_ != nullptr && reduction_->overlaps() && j + 1 == micro_batches.size())
      model_.backward([this](size_t from) { reduction_->gradients_ready(model_.grads(), from); });
    else
      model_.backward();
    loss_sum += loss;
  }
  return loss_sum;
}

void TrainStep::launch(std::span<const model::Batch> micro_batches, int64_t step) {
  if (!on_device()) {
    pending_.push_back(run(micro_batches, step));
    return;
  }
  launch_on_device(micro_batches, step);
}

// forward (the loss added on the device) -> backward per micro-batch -> the gradients' sum of
// squares on the device -> AdamW decided on the device. Nothing here reads device memory.
void TrainStep::launch_on_device(std::span<const model::Batch> micro_batches, int64_t step) {
  const kernels::Device d = model_.device();
  if (reduction_ != nullptr && !reduction_->sums_on(d))
    throw Error("TrainStep: this gradient reduction sums host memory; it is not supported on " +
                std::string(kernels::device_name(d)));
  const size_t slot = pending_.size();
  if (device_stats_.size() < 2 * (slot + 1)) {  // grown by doubling (a copy on the device)
    kernels::DeviceBuffer<double> grown(d, std::max<size_t>(64, 2 * device_stats_.size()));
    kernels::copy_on_device(d, grown.data(), device_stats_.data(), device_stats_.size() * sizeof(double));
    device_stats_ = std::move(grown);
  }
  double* loss_sum = device_stats_.data() + 2 * slot;
  double* sum_squares = loss_sum + 1;
  kernels::fill_zero(d, loss_sum, 2 * sizeof(double));
  int k = static_cast<int>(micro_batches.size());
  {
    if (reduction_ != nullptr) sum_counts(micro_batches);
    ResetDenominator reset{model_};
    for (size_t j = 0; j < micro_batches.size(); ++j) {
      if (reduction_ != nullptr && !set_denominator(micro_batches[j], j)) continue;
      model_.forward(micro_batches[j], /*train=*/true, loss_sum);
      model_.backward();
    }
  }
  if (reduction_ != nullptr) {  // the sums over the workers, where the step reads them next
    reduction_->sum_on_device(model_.grads(), model_.num_params(), loss_sum);
    k *= reduction_->workers();
  }
  {
    ProfileScope p("optimizer (clip + adamw + zero_grad)");
    kernels::sum_squares_accumulate(d, sum_squares, model_.grads(), model_.num_params());
    const double max_norm = std::isinf(max_grad_norm_) ? 0.0 : max_grad_norm_;
    optimizer_.step_on_device(schedule_.at(step), k, loss_sum, sum_squares, max_norm);
  }
  StepOutcome r;
  r.lr = schedule_.at(step);
  r.step = step;
  pending_.push_back(r);
  pending_micro_.push_back(k);
}

const std::vector<StepOutcome>& TrainStep::collect() {
  collected_.clear();
  std::swap(collected_, pending_);  // both keep their capacity: no allocation per step
  std::vector<StepOutcome>& out = collected_;
  if (!on_device() || out.empty()) return out;
  host_stats_.resize(2 * out.size());
  const std::vector<double>& stats = host_stats_;
  kernels::copy_to_host(model_.device(), host_stats_.data(), device_stats_.data(), stats.size() * sizeof(double));
  for (size_t i = 0; i < out.size(); ++i) {  // run()'s reading of the same two sums
    const double k = pending_micro_[i], loss_sum = stats[2 * i], sum_squares = stats[2 * i + 1];
    StepOutcome& r = out[i];
    r.loss = static_cast<float>(loss_sum / k);
    r.finite = std::isfinite(loss_sum);
    if (r.finite) {
      r.grad_norm = std::sqrt(sum_squares) / k;
      r.finite = std::isfinite(r.grad_norm);
    }
  }
  pending_micro_.clear();
  return out;
}

void TokenCounts::add(const model::Batch& b) {
  real += b.real_tokens();
  processed += b.num_rows();
}

}  // namespace bertune::train
