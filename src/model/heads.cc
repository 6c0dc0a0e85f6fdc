#include "model/heads.h"

#include <initializer_list>

#include "util/error.h"

namespace bertune::model {
namespace k = bertune::kernels;

namespace {

constexpr uint64_t kSiteClassifier = 1000000;  // dropout site of the pooled [CLS] rows
constexpr uint64_t kSiteClassifierInput = 1000001;  // ... and of the [CLS] rows before the dense

// n floats each, in order.
void take_each(ArenaPlan& plan, std::initializer_list<float**> views, size_t n) {
  for (float** view : views) plan.take(view, n);
}

// HF's classifier_dropout (DistilBERT's seq_classif_dropout), or hidden_dropout_prob when it is null,
// of (rows, hidden) activations whose first row is row `first_row` of the whole batch
// (HeadPass::first_sequence or first_row).
k::Dropout classifier_dropout(const HeadPass& pass, uint64_t first_row, uint64_t site = kSiteClassifier) {
  const BertConfig& c = *pass.config;
  return pass.dropout(site, c.classifier_dropout >= 0 ? c.classifier_dropout : c.hidden_dropout_prob)
      .shifted(first_row * static_cast<uint64_t>(c.hidden_size));
}

TensorSpec& add_head_tensor(std::vector<TensorSpec>& specs, std::string name, std::vector<int64_t> shape) {
  TensorSpec& spec = specs.emplace_back();
  spec.name = std::move(name);
  spec.shape = std::move(shape);
  spec.head = true;
  return spec;
}

}  // namespace

std::unique_ptr<Head> make_head(Task task, const BertConfig& config) {
  switch (task) {
    case Task::SequenceClassification: return std::make_unique<SequenceClassificationHead>(config);
    case Task::MaskedLM: return std::make_unique<MaskedLMHead>();
    case Task::ReplacedTokenDetection: return std::make_unique<ReplacedTokenHead>();
    case Task::TokenClassification: return std::make_unique<TokenClassificationHead>();
    case Task::PreTraining: return std::make_unique<PreTrainingHead>();
  }
  throw Error("make_head: unknown task " + std::to_string(static_cast<int>(task)));
}

// ---------------------------------------------------------------- sequence classification

SequenceClassificationHead::Spec SequenceClassificationHead::spec_of(const BertConfig& config) {
  using A = Activation;
  switch (config.family) {
    case Family::Roberta:
    case Family::XlmRoberta: return {"classifier.dense", "classifier.out_proj", A::Tanh, true};
    case Family::Electra: return {"classifier.dense", "classifier.out_proj", A::Gelu, true};
    case Family::DistilBert: return {"pre_classifier", "classifier", A::Relu, false};
    case Family::Bert: break;
  }
  return {"bert.pooler.dense", "classifier", A::Tanh, false};
}

void SequenceClassificationHead::append_tensors(const BertConfig& config,
                                                std::vector<TensorSpec>& specs) const {
  const int64_t H = config.hidden_size, C = config.num_labels();
  add_head_tensor(specs, spec_.dense + ".weight", {H, H});
  add_head_tensor(specs, spec_.dense + ".bias", {H});
  add_head_tensor(specs, spec_.out + ".weight", {C, H});
  add_head_tensor(specs, spec_.out + ".bias", {C});
}

void SequenceClassificationHead::bind(const FlatView& params, const FlatView& grads) {
  auto views = [this](const FlatView& at) {
    return Params{at[spec_.dense + ".weight"], at[spec_.dense + ".bias"], at[spec_.out + ".weight"],
                  at[spec_.out + ".bias"]};
  };
  p_ = views(params);
  g_ = views(grads);
}

void SequenceClassificationHead::plan_activations(ArenaPlan& plan, const HeadPass& pass) {
  const size_t BH = size_t(pass.B) * pass.config->hidden_size;
  take_each(plan, {&pooled_in_, &pooled_pre_, &pooled_, &pooled_drop_}, BH);
  if (spec_.dropout_before) plan.take(&dense_in_, BH);
}

void SequenceClassificationHead::plan_gradients(ArenaPlan& plan, const HeadPass& pass) {
  const size_t BH = size_t(pass.B) * pass.config->hidden_size;
  take_each(plan, {&d_pooled_, &d_pooled_in_}, BH);
}

// pooled_in (B, H) -> [dropout ->] dense -> activation -> dropout -> out -> logits (B, C).
void SequenceClassificationHead::forward(const HeadPass& pass, float* logits) {
  const BertConfig& config = *pass.config;
  const int B = pass.B, H = config.hidden_size, C = config.num_labels();
  const size_t BH = size_t(B) * H;
  // The [CLS] rows: rows offsets[0..B) of the last layer's output, or rows 0..B
  // when the last layer ran on the [CLS] rows only.
  if (pass.cls_rows_compact)
    k::copy_on_device(pass.device, pooled_in_, pass.last, BH * sizeof(float));
  else
    k::gather_rows(pass.device, pooled_in_, pass.last, pass.offsets, B, H);
  if (spec_.dropout_before)
    k::dropout_forward(pass.device, dense_in_, pooled_in_, BH,
                       classifier_dropout(pass, pass.first_sequence, kSiteClassifierInput));
  k::linear_forward(pass.device, pooled_pre_, dense_input(), p_.pool_w, p_.pool_b, B, H, H);
  switch (spec_.activation) {
    case Activation::Tanh: k::tanh_forward(pass.device, pooled_, pooled_pre_, BH); break;
    case Activation::Gelu: k::gelu_forward(pass.device, pooled_, pooled_pre_, BH); break;
    case Activation::Relu: k::relu_forward(pass.device, pooled_, pooled_pre_, BH); break;
  }
  k::dropout_forward(pass.device, pooled_drop_, pooled_, BH, classifier_dropout(pass, pass.first_sequence));
  k::linear_forward(pass.device, logits, pooled_drop_, p_.cls_w, p_.cls_b, B, H, C);
}

// d_last: its B [CLS] rows when the last layer ran on those only, else all T rows.
void SequenceClassificationHead::backward(const HeadPass& pass, const float* d_logits, float* d_last) {
  const BertConfig& config = *pass.config;
  const int B = pass.B, T = pass.T, H = config.hidden_size, C = config.num_labels();
  const size_t BH = size_t(B) * H;
  k::linear_backward(pass.device, d_pooled_, g_.cls_w, g_.cls_b, d_logits, pooled_drop_, p_.cls_w, B, H, C);
  k::dropout_backward(pass.device, d_pooled_, d_pooled_, BH, classifier_dropout(pass, pass.first_sequence));
  switch (spec_.activation) {  // tanh and ReLU from their output, GELU from its input
    case Activation::Tanh: k::tanh_backward(pass.device, d_pooled_, d_pooled_, pooled_, BH); break;
    case Activation::Gelu: k::gelu_backward(pass.device, d_pooled_, d_pooled_, pooled_pre_, BH); break;
    case Activation::Relu: k::relu_backward(pass.device, d_pooled_, d_pooled_, pooled_, BH); break;
  }
  k::linear_backward(pass.device, d_pooled_in_, g_.pool_w, g_.pool_b, d_pooled_, dense_input(), p_.pool_w, B, H,
                     H);
  if (spec_.dropout_before)
    k::dropout_backward(pass.device, d_pooled_in_, d_pooled_in_, BH,
                        classifier_dropout(pass, pass.first_sequence, kSiteClassifierInput));
  if (pass.cls_rows_compact)
    return k::copy_on_device(pass.device, d_last, d_pooled_in_, BH * sizeof(float));
  k::fill_zero(pass.device, d_last, size_t(T) * H * sizeof(float));
  k::scatter_add_rows(pass.device, d_last, d_pooled_in_, pass.offsets, B, H);
}

// ---------------------------------------------------------------- token heads

void TokenHead::plan_activations(ArenaPlan& plan, const HeadPass& pass) {
  const size_t RH = size_t(pass.R) * pass.config->hidden_size;
  take_each(plan, {&head_in_, &head_dense_, &head_gelu_}, RH);
}

void TokenHead::plan_gradients(ArenaPlan& plan, const HeadPass& pass) {
  const size_t RH = size_t(pass.R) * pass.config->hidden_size;
  take_each(plan, {&d_head_in_, &d_head_dense_}, RH);
}

const float* TokenHead::head_input(const HeadPass& pass) const {
  return pass.R == pass.T ? pass.last : head_in_;
}

void TokenHead::dense_gelu_forward(const HeadPass& pass, const float* w, const float* b) {
  const int R = pass.R, H = pass.config->hidden_size;
  if (R != pass.T) k::gather_rows(pass.device, head_in_, pass.last, pass.head_rows, R, H);
  k::linear_forward(pass.device, head_dense_, head_input(pass), w, b, R, H, H);
  k::gelu_forward(pass.device, head_gelu_, head_dense_, size_t(R) * H);
}

void TokenHead::dense_backward(const HeadPass& pass, const float* d_dense, float* d_w, float* d_b,
                               const float* w, float* d_last) {
  const int T = pass.T, R = pass.R, H = pass.config->hidden_size;
  if (R == T) return k::linear_backward(pass.device, d_last, d_w, d_b, d_dense, head_input(pass), w, T, H, H);
  k::linear_backward(pass.device, d_head_in_, d_w, d_b, d_dense, head_input(pass), w, R, H, H);
  k::fill_zero(pass.device, d_last, size_t(T) * H * sizeof(float));
  k::scatter_add_rows(pass.device, d_last, d_head_in_, pass.head_rows, R, H);
}

// ---------------------------------------------------------------- masked LM

void MaskedLMHead::append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const {
  const int64_t V = config.vocab_size, H = config.hidden_size;
  add_head_tensor(specs, "cls.predictions.transform.dense.weight", {H, H});
  add_head_tensor(specs, "cls.predictions.transform.dense.bias", {H});
  add_head_tensor(specs, "cls.predictions.transform.LayerNorm.weight", {H});
  add_head_tensor(specs, "cls.predictions.transform.LayerNorm.bias", {H});
  add_head_tensor(specs, "cls.predictions.bias", {V});
  TensorSpec& decoder = add_head_tensor(specs, "cls.predictions.decoder.weight", {V, H});
  decoder.head = false;
  decoder.tied_to = "bert.embeddings.word_embeddings.weight";
  TensorSpec& decoder_bias = add_head_tensor(specs, "cls.predictions.decoder.bias", {V});
  decoder_bias.head = false;
  decoder_bias.tied_to = "cls.predictions.bias";
}

void MaskedLMHead::bind(const FlatView& params, const FlatView& grads) {
  auto views = [](const FlatView& at) {
    return Params{at["cls.predictions.transform.dense.weight"],
                  at["cls.predictions.transform.dense.bias"],
                  at["cls.predictions.transform.LayerNorm.weight"],
                  at["cls.predictions.transform.LayerNorm.bias"],
                  at["cls.predictions.bias"],
                  at["bert.embeddings.word_embeddings.weight"]};
  };
  p_ = views(params);
  g_ = views(grads);
}

void MaskedLMHead::plan_activations(ArenaPlan& plan, const HeadPass& pass) {
  TokenHead::plan_activations(plan, pass);
  const size_t R = pass.R;
  plan.take(&ln_out_, R * pass.config->hidden_size);
  plan.take(&ln_mean_, R);
  plan.take(&ln_rstd_, R);
}

// head rows (R, H) -> GELU dense -> LayerNorm -> decoder -> logits (R, V).
void MaskedLMHead::forward(const HeadPass& pass, float* logits) {
  const BertConfig& config = *pass.config;
  const int R = pass.R, H = config.hidden_size, V = config.vocab_size;
  dense_gelu_forward(pass, p_.dense_w, p_.dense_b);
  k::layernorm_forward(pass.device, ln_out_, ln_mean_, ln_rstd_, head_gelu_, p_.ln_g, p_.ln_b, R, H,
                       config.layer_norm_eps);
  k::linear_forward(pass.device, logits, ln_out_, p_.decoder, p_.bias, R, H, V);
}

void MaskedLMHead::backward(const HeadPass& pass, const float* d_logits, float* d_last) {
  const int R = pass.R, H = pass.config->hidden_size, V = pass.config->vocab_size;
  float* d_ln_out = d_head_in_;  // (R, H)
  // The decoder is word_embeddings: its gradient lands in the embedding's.
  k::linear_backward(pass.device, d_ln_out, g_.decoder, g_.bias, d_logits, ln_out_, p_.decoder, R, H, V);
  k::layernorm_backward(pass.device, d_head_dense_, g_.ln_g, g_.ln_b, d_ln_out, head_gelu_, ln_mean_, ln_rstd_,
                        p_.ln_g, R, H);
  k::gelu_backward(pass.device, d_head_dense_, d_head_dense_, head_dense_, size_t(R) * H);
  dense_backward(pass, d_head_dense_, g_.dense_w, g_.dense_b, p_.dense_w, d_last);
}

// ---------------------------------------------------------------- pretraining (MLM + NSP)

// HF's BertForPreTraining order: bert.pooler, then cls.predictions.*, then cls.seq_relationship.
void PreTrainingHead::append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const {
  const int64_t H = config.hidden_size;
  add_head_tensor(specs, "bert.pooler.dense.weight", {H, H});
  add_head_tensor(specs, "bert.pooler.dense.bias", {H});
  MaskedLMHead::append_tensors(config, specs);
  add_head_tensor(specs, "cls.seq_relationship.weight", {2, H});
  add_head_tensor(specs, "cls.seq_relationship.bias", {2});
}

void PreTrainingHead::bind(const FlatView& params, const FlatView& grads) {
  MaskedLMHead::bind(params, grads);
  auto views = [](const FlatView& at) {
    return Params{at["bert.pooler.dense.weight"], at["bert.pooler.dense.bias"], at["cls.seq_relationship.weight"],
                  at["cls.seq_relationship.bias"]};
  };
  q_ = views(params);
  gq_ = views(grads);
}

void PreTrainingHead::plan_activations(ArenaPlan& plan, const HeadPass& pass) {
  MaskedLMHead::plan_activations(plan, pass);
  const size_t B = pass.B, BH = B * pass.config->hidden_size;
  take_each(plan, {&cls_rows_, &pooled_}, BH);
  take_each(plan, {&nsp_logits_, &nsp_probs_}, 2 * B);
}

void PreTrainingHead::plan_gradients(ArenaPlan& plan, const HeadPass& pass) {
  MaskedLMHead::plan_gradients(plan, pass);
  const size_t B = pass.B, BH = B * pass.config->hidden_size;
  plan.take(&d_nsp_, 2 * B);
  take_each(plan, {&d_pooled_, &d_cls_rows_}, BH);
}

// The masked LM on the head rows; [CLS] rows (offsets[b]) -> pooler -> tanh ->
// seq_relationship -> nsp_logits (B, 2), and their mean cross-entropy when labelled.
void PreTrainingHead::forward(const HeadPass& pass, float* logits) {
  MaskedLMHead::forward(pass, logits);  // CPU: BertModel refuses Task::PreTraining on another device
  const int B = pass.B, H = pass.config->hidden_size;
  k::gather_rows(pass.device, cls_rows_, pass.last, pass.offsets, B, H);
  k::linear_forward(pass.device, pooled_, cls_rows_, q_.pool_w, q_.pool_b, B, H, H);
  k::tanh_forward(pass.device, pooled_, pooled_, size_t(B) * H);
  k::linear_forward(pass.device, nsp_logits_, pooled_, q_.nsp_w, q_.nsp_b, B, H, 2);
  nsp_loss_ = 0.f;
  nsp_counted_ = 0;
  if (pass.next_sentence_labels)
    nsp_loss_ = k::cross_entropy_forward(pass.device, nsp_probs_, nsp_logits_, pass.next_sentence_labels, B, 2,
                                         &nsp_counted_);
}

// d_last (T, H): the masked LM's gradient on its rows, plus the next-sentence loss's on the
// [CLS] rows.
void PreTrainingHead::backward(const HeadPass& pass, const float* d_logits, float* d_last) {
  MaskedLMHead::backward(pass, d_logits, d_last);
  if (!pass.next_sentence_labels || nsp_counted_ == 0) return;
  const int B = pass.B, H = pass.config->hidden_size;
  k::cross_entropy_backward(pass.device, d_nsp_, nsp_probs_, pass.next_sentence_labels, B, 2, nsp_counted_);
  k::linear_backward(pass.device, d_pooled_, gq_.nsp_w, gq_.nsp_b, d_nsp_, pooled_, q_.nsp_w, B, H, 2);
  k::tanh_backward(pass.device, d_pooled_, d_pooled_, pooled_, size_t(B) * H);
  k::linear_backward(pass.device, d_cls_rows_, gq_.pool_w, gq_.pool_b, d_pooled_, cls_rows_, q_.pool_w, B, H, H);
  k::scatter_add_rows(pass.device, d_last, d_cls_rows_, pass.offsets, B, H);
}

// ---------------------------------------------------------------- replaced-token detection

void ReplacedTokenHead::append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const {
  const int64_t H = config.hidden_size;
  add_head_tensor(specs, "discriminator_predictions.dense.weight", {H, H});
  add_head_tensor(specs, "discriminator_predictions.dense.bias", {H});
  add_head_tensor(specs, "discriminator_predictions.classifier.weight", {2, H});
  add_head_tensor(specs, "discriminator_predictions.classifier.bias", {2});
}

void ReplacedTokenHead::bind(const FlatView& params, const FlatView& grads) {
  auto views = [](const FlatView& at) {
    return Params{at["discriminator_predictions.dense.weight"], at["discriminator_predictions.dense.bias"],
                  at["discriminator_predictions.classifier.weight"],
                  at["discriminator_predictions.classifier.bias"]};
  };
  p_ = views(params);
  g_ = views(grads);
}

// head rows (R, H) -> dense -> GELU -> classifier -> logits (R, 2).
void ReplacedTokenHead::forward(const HeadPass& pass, float* logits) {
  const int R = pass.R, H = pass.config->hidden_size;
  dense_gelu_forward(pass, p_.dense_w, p_.dense_b);
  k::linear_forward(pass.device, logits, head_gelu_, p_.out_w, p_.out_b, R, H, 2);
}

void ReplacedTokenHead::backward(const HeadPass& pass, const float* d_logits, float* d_last) {
  const int R = pass.R, H = pass.config->hidden_size;
  k::linear_backward(pass.device, d_head_dense_, g_.out_w, g_.out_b, d_logits, head_gelu_, p_.out_w, R, H, 2);
  k::gelu_backward(pass.device, d_head_dense_, d_head_dense_, head_dense_, size_t(R) * H);
  dense_backward(pass, d_head_dense_, g_.dense_w, g_.dense_b, p_.dense_w, d_last);
}

// ---------------------------------------------------------------- token classification

void TokenClassificationHead::append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const {
  const int64_t H = config.hidden_size, C = config.num_labels();
  add_head_tensor(specs, "classifier.weight", {C, H});
  add_head_tensor(specs, "classifier.bias", {C});
}

void TokenClassificationHead::bind(const FlatView& params, const FlatView& grads) {
  p_ = {params["classifier.weight"], params["classifier.bias"]};
  g_ = {grads["classifier.weight"], grads["classifier.bias"]};
}

void TokenClassificationHead::plan_activations(ArenaPlan& plan, const HeadPass& pass) {
  const size_t RH = size_t(pass.R) * pass.config->hidden_size;
  take_each(plan, {&rows_in_, &rows_drop_}, RH);
}

void TokenClassificationHead::plan_gradients(ArenaPlan& plan, const HeadPass& pass) {
  plan.take(&d_rows_, size_t(pass.R) * pass.config->hidden_size);
}

// head rows (R, H) of the last layer -> dropout -> classifier -> logits (R, C).
void TokenClassificationHead::forward(const HeadPass& pass, float* logits) {
  const int R = pass.R, H = pass.config->hidden_size, C = pass.config->num_labels();
  k::gather_rows(pass.device, rows_in_, pass.last, pass.head_rows, R, H);
  k::dropout_forward(pass.device, rows_drop_, rows_in_, size_t(R) * H, classifier_dropout(pass, pass.first_row));
  k::linear_forward(pass.device, logits, rows_drop_, p_.cls_w, p_.cls_b, R, H, C);
}

// d_last (T, H): the head rows' gradients, zero elsewhere.
void TokenClassificationHead::backward(const HeadPass& pass, const float* d_logits, float* d_last) {
  const int T = pass.T, R = pass.R, H = pass.config->hidden_size, C = pass.config->num_labels();
  k::linear_backward(pass.device, d_rows_, g_.cls_w, g_.cls_b, d_logits, rows_drop_, p_.cls_w, R, H, C);
  k::dropout_backward(pass.device, d_rows_, d_rows_, size_t(R) * H, classifier_dropout(pass, pass.first_row));
  k::fill_zero(pass.device, d_last, size_t(T) * H * sizeof(float));
  k::scatter_add_rows(pass.device, d_last, d_rows_, pass.head_rows, R, H);
}

}  // namespace bertune::model
