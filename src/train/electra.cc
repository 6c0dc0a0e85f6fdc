#include "train/electra.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dropout_hash.h"
#include "util/error.h"
#include "util/profiler.h"

namespace bertune::train {

model::BertConfig generator_config(const model::BertConfig& discriminator, int layers, int intermediate_size) {
  if (layers < 1) throw Error("--generator-layers: must be at least 1");
  if (intermediate_size < 1) throw Error("--generator-intermediate-size: must be at least 1");
  model::BertConfig g = discriminator;
  g.num_hidden_layers = layers;
  g.intermediate_size = intermediate_size;
  g.architectures = {"BertForMaskedLM"};
  return g;
}

namespace {

// A draw from softmax(logits[0..V)) by inverse CDF, u in [0, 1).
int32_t sample_softmax(const float* logits, int V, double u, std::vector<double>& weights) {
  const float mx = *std::max_element(logits, logits + V);
  double total = 0;
  weights.resize(V);
  for (int v = 0; v < V; ++v) total += weights[v] = std::exp(static_cast<double>(logits[v] - mx));
  double target = u * total;
  for (int v = 0; v < V; ++v) {
    target -= weights[v];
    if (target < 0) return v;
  }
  return V - 1;  // u * total rounded up to the sum
}

// The embedding tensors come first in every BERT's flat buffer, in the same layout whatever
// the encoder (bert_tensor_layout), so the shared part is one prefix of both buffers.
size_t shared_embedding_prefix(const model::BertModel& generator, const model::BertModel& discriminator) {
  static const char* kShared[] = {"bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                                  "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                                  "bert.embeddings.LayerNorm.bias"};
  size_t end = 0;
  for (const char* name : kShared) {
    const model::ParamInfo &g = generator.param(name), &d = discriminator.param(name);
    if (g.offset != d.offset || g.shape != d.shape)
      throw Error(std::string("ELECTRA: the generator's ") + name + " is not laid out as the discriminator's");
    end = std::max(end, g.offset + g.numel);
  }
  for (const model::ParamInfo& p : discriminator.param_info())
    if (p.offset < end && p.name.rfind("bert.embeddings.", 0) != 0)
      throw Error("ELECTRA: " + p.name + " lies among the embeddings of the flat buffer");
  return end;
}

}  // namespace

model::Batch replaced_token_batch(const model::Batch& masked, const model::BertModel& generator, uint64_t seed,
                                  uint64_t draw, int64_t* replaced) {
  ProfileScope profile("electra: sample replacements");
  if (generator.device() != kernels::Device::CPU) throw Error("ELECTRA pretraining runs on the CPU only");
  const int T = masked.num_rows(), V = generator.logits_cols();
  if (static_cast<int>(masked.labels.size()) != T)
    throw Error("replaced_token_batch: the masked batch needs one label per row (-100 where not selected)");
  model::Batch d = masked;
  d.labels.assign(T, -100);
  for (int b = 0; b < masked.num_sequences(); ++b)  // real rows: not replaced until a draw says so
    std::fill(d.labels.begin() + masked.offsets[b], d.labels.begin() + masked.offsets[b] + masked.lengths[b], 0);
  for (int t = 0; t < T; ++t)  // the originals back where the generator saw [MASK] or a random id
    if (masked.labels[t] != -100) d.input_ids[t] = masked.labels[t];
  const std::vector<int32_t>& rows = generator.logit_token_rows();
  const uint64_t stream = kernels::stream_hash(seed ^ 0x454C454354524Aull, draw);  // "ELECTRA"
  std::vector<double> weights;
  int64_t n_replaced = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int t = rows[r];
    const double u = static_cast<double>(kernels::stream_hash(stream, static_cast<uint64_t>(t)) >> 11) * 0x1.0p-53;
    const int32_t token = sample_softmax(generator.logits() + r * static_cast<size_t>(V), V, u, weights);
    const bool differs = token != masked.labels[t];
    d.input_ids[t] = token;
    d.labels[t] = differs ? 1 : 0;
    n_replaced += differs;
  }
  if (replaced) *replaced = n_replaced;
  return d;
}

ElectraStep::ElectraStep(model::BertModel& generator, AdamW& generator_optimizer, model::BertModel& discriminator,
                         AdamW& discriminator_optimizer, LrSchedule schedule, double max_grad_norm,
                         double discriminator_weight, uint64_t seed)
    : generator_(generator), generator_optimizer_(generator_optimizer), discriminator_(discriminator),
      discriminator_optimizer_(discriminator_optimizer), schedule_(schedule),
      max_grad_norm_(max_grad_norm > 0 ? max_grad_norm : INFINITY), discriminator_weight_(discriminator_weight),
      seed_(seed) {
  if (generator.task() != model::Task::MaskedLM || discriminator.task() != model::Task::ReplacedTokenDetection)
    throw Error("ElectraStep: needs a masked-LM generator and a replaced-token-detection discriminator");
  if (generator.device() != kernels::Device::CPU || discriminator.device() != kernels::Device::CPU)
    throw Error("ELECTRA pretraining runs on the CPU only");
  shared_floats_ = shared_embedding_prefix(generator, discriminator);  // also checks the layouts agree
}

void ElectraStep::share_embeddings() {
  kernels::copy_on_device(generator_.device(), generator_.params(), discriminator_.params(),
                          shared_floats_ * sizeof(float));
}

// The generator's embedding gradients join the discriminator's (one shared tensor's gradient);
// zeroed in the generator, whose copy is overwritten before the next step anyway.
void ElectraStep::add_generator_embedding_gradients() {
  kernels::add_scaled(discriminator_.device(), discriminator_.grads(), generator_.grads(), shared_floats_, 1.f);
  kernels::fill_zero(generator_.device(), generator_.grads(), shared_floats_ * sizeof(float));
}

StepOutcome ElectraStep::run(std::span<const model::Batch> masked_micro_batches, int64_t step) {
  StepOutcome r;
  r.lr = schedule_.at(step);
  r.step = step;
  const double k = static_cast<double>(masked_micro_batches.size());
  share_embeddings();
  double generator_sum = 0, discriminator_sum = 0;
  int64_t replaced = 0, labelled = 0;
  for (size_t i = 0; i < masked_micro_batches.size(); ++i) {
    const model::Batch& masked = masked_micro_batches[i];
    const float g = generator_.forward(masked, /*train=*/true);
    int64_t n_replaced = 0;
    const model::Batch fake = replaced_token_batch(masked, generator_, seed_,
                                                   static_cast<uint64_t>(step) * 1024 + i, &n_replaced);
    const float d = discriminator_.forward(fake, /*train=*/true);
    generator_sum += g;
    discriminator_sum += d;
    if (!std::isfinite(g) || !std::isfinite(d)) break;
    generator_.backward();
    discriminator_.backward();
    replaced += n_replaced;
    labelled += std::count_if(fake.labels.begin(), fake.labels.end(), [](int32_t l) { return l != -100; });
  }
  losses_ = {static_cast<float>(generator_sum / k), static_cast<float>(discriminator_sum / k),
             labelled ? static_cast<double>(replaced) / static_cast<double>(labelled) : 0.0};
  r.loss = static_cast<float>((generator_sum + discriminator_weight_ * discriminator_sum) / k);
  r.finite = std::isfinite(r.loss);
  if (r.finite) {
    ProfileScope p("optimizer (clip + adamw + zero_grad)");
    // The discriminator's loss enters with its weight; its gradient buffer is scaled once here.
    kernels::scale(discriminator_.device(), discriminator_.grads(), discriminator_.num_params(),
                   static_cast<float>(discriminator_weight_));
    add_generator_embedding_gradients();
    const double g_norm = grad_norm(generator_), d_norm = grad_norm(discriminator_);
    r.grad_norm = std::sqrt(g_norm * g_norm + d_norm * d_norm) / k;  // of the mean over micro-batches
    r.finite = std::isfinite(r.grad_norm);
    const float scale = static_cast<float>(clip_coefficient(r.grad_norm, max_grad_norm_) / k);
    if (r.finite) {
      generator_optimizer_.step(r.lr, scale);
      discriminator_optimizer_.step(r.lr, scale);
    }
  }
  if (!r.finite) {
    generator_.zero_grad();
    discriminator_.zero_grad();
  }
  return r;
}

}  // namespace bertune::train
