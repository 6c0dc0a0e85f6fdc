#include "model/bert.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "util/error.h"
#include "util/profiler.h"

namespace bertune::model {
namespace k = bertune::kernels;

namespace {

// Times the rest of the enclosing block under `phase` when profiling is on.
#define PHASE(phase) ProfileScope profile_scope_##__LINE__(phase)

// Dropout sites: one stream per place dropout happens.
constexpr uint64_t kSiteEmbeddings = 0;  // heads.cc has the classifier's
uint64_t site_attention_probs(int l) { return 1 + 3 * uint64_t(l); }
uint64_t site_attention_output(int l) { return 2 + 3 * uint64_t(l); }
uint64_t site_ffn_output(int l) { return 3 + 3 * uint64_t(l); }

}  // namespace

// ---------------------------------------------------------------- Batch

Batch Batch::packed(const std::vector<std::vector<int32_t>>& sequences,
                    std::vector<int32_t> labels) {
  Batch b;
  b.offsets.push_back(0);
  for (const auto& s : sequences) {
    b.input_ids.insert(b.input_ids.end(), s.begin(), s.end());
    b.lengths.push_back(static_cast<int32_t>(s.size()));
    b.offsets.push_back(static_cast<int32_t>(b.input_ids.size()));
  }
  b.labels = std::move(labels);
  return b;
}

Batch Batch::padded(const std::vector<std::vector<int32_t>>& sequences, int pad_to,
                    int32_t pad_id, std::vector<int32_t> labels) {
  int longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, static_cast<int>(s.size()));
  int span = pad_to > 0 ? pad_to : longest;
  if (longest > span)
    throw Error("Batch::padded: a sequence of " + std::to_string(longest) +
                " tokens does not fit pad length " + std::to_string(span));
  Batch b;
  b.offsets.push_back(0);
  for (const auto& s : sequences) {
    b.input_ids.insert(b.input_ids.end(), s.begin(), s.end());
    b.input_ids.insert(b.input_ids.end(), span - s.size(), pad_id);
    b.lengths.push_back(static_cast<int32_t>(s.size()));
    b.offsets.push_back(static_cast<int32_t>(b.input_ids.size()));
  }
  b.labels = std::move(labels);
  return b;
}

int64_t Batch::real_tokens() const {
  int64_t n = 0;
  for (int32_t l : lengths) n += l;
  return n;
}

// ---------------------------------------------------------------- parameters

BertModel::BertModel(BertConfig config, Task task, k::Device device, Init init)
    : config_(std::move(config)), task_(task), device_(device), head_(make_head(task, config_)) {
  if (task_ == Task::PreTraining && device_ != k::Device::CPU)
    throw Error("BertForPreTraining (masked LM + next-sentence prediction) runs on the CPU only");
  if (const char* full = std::getenv("BERTUNE_FULL_LAST_LAYER"); full && std::strcmp(full, "1") == 0)
    last_layer_cls_only_ = false;
  build_layout();  // zeroed buffers
  if (init == Init::Random) init_weights(0);
}

// The flat buffers of flat_param_layout, zeroed, and the encoder's and the head's views.
void BertModel::build_layout() {
  size_t total = 0;
  info_ = flat_param_layout(config_, task_, &total);
  params_ = k::DeviceBuffer<float>(device_, total);  // zeroed, alignment gaps included
  grads_ = k::DeviceBuffer<float>(device_, total);
  const FlatView params(params_.data(), info_), grads(grads_.data(), info_);
  p_ = encoder_views(config_, params);
  g_ = encoder_views(config_, grads);
  head_->bind(params, grads);
}

const ParamInfo& BertModel::param(const std::string& name) const { return find_param(info_, name); }

// On the CPU the values are written in place; elsewhere on the host, then uploaded.
void BertModel::init_param(const ParamInfo& p, uint64_t seed) {
  if (device_ == k::Device::CPU) return init_param_values(config_, p, seed, params_.data() + p.offset);
  std::vector<float> host(p.numel);
  init_param_values(config_, p, seed, host.data());
  k::copy_to_device(device_, params_.data() + p.offset, host.data(), p.numel * sizeof(float));
}

void BertModel::init_weights(uint64_t seed) {
  for (const auto& p : info_) init_param(p, seed);
}

LoadReport BertModel::load_state_dict(const TensorMap& tensors, uint64_t head_init_seed) {
  LoadReport report;
  for (const auto& p : info_) {
    auto it = tensors.find(p.name);
    if (it == tensors.end()) {
      if (!p.head) throw Error("checkpoint has no tensor " + p.name);
      init_param(p, head_init_seed);
      report.initialised.push_back(p.name);
      continue;
    }
    if (it->second.shape != p.shape)
      throw Error("tensor " + p.name + " has shape " + shape_text(it->second.shape) +
                  ", config says " + shape_text(p.shape));
    if (it->second.data.size() != p.numel)
      throw Error("tensor " + p.name + " holds " + std::to_string(it->second.data.size()) +
                  " values, its shape needs " + std::to_string(p.numel));
    k::copy_to_device(device_, params_.data() + p.offset, it->second.data.data(), p.numel * sizeof(float));
  }
  // Tied tensors (the MLM decoder) are known but not read: the model uses
  // what they are tied to.
  const TensorShapes known = bert_checkpoint_shapes(config_, task_);
  for (const auto& [name, t] : tensors)
    if (!known.count(name)) report.unused.push_back(name);
  return report;
}

std::vector<TensorRef> BertModel::state_dict() const {
  const float* host = k::host_view(device_, params_.data(), params_.size(), host_params_);
  std::vector<TensorRef> out;
  for (const auto& p : info_) out.push_back({p.name, p.shape, host + p.offset});
  return out;
}

std::vector<TensorRef> BertModel::grad_dict() const {
  const float* host = k::host_view(device_, grads_.data(), grads_.size(), host_grads_);
  std::vector<TensorRef> out;
  for (const auto& p : info_) out.push_back({p.name, p.shape, host + p.offset});
  return out;
}

void BertModel::zero_grad() { k::fill_zero(device_, grads_.data(), grads_.size() * sizeof(float)); }

// ---------------------------------------------------------------- batch setup

k::Dropout BertModel::dropout(uint64_t site, float p, uint64_t first) const {
  if (!train_) p = 0.f;
  return k::Dropout::make(dropout_seed_, forward_step_, site, p).shifted(first);
}

// Hidden dropout of (T, width) rows; attention-probability dropout of layer l. Both draw the
// masks their elements have in the batch this one is part of (Batch::dropout_place).
k::Dropout BertModel::row_dropout(uint64_t site, int width) const {
  return dropout(site, config_.hidden_dropout_prob, place_.rows * static_cast<uint64_t>(width));
}
k::Dropout BertModel::probs_dropout(int l) const {
  return dropout(site_attention_probs(l), config_.attention_probs_dropout_prob, place_.probs);
}

namespace {

// Float targets (regression, multi-label): a sequence classifier's, num_labels per sequence, finite.
void check_targets(const Batch& batch, bool per_token, int C) {
  if (per_token) throw Error("forward: float targets need a sequence classifier, not a per-token head");
  if (!batch.labels.empty()) throw Error("forward: a batch has integer labels or float targets, not both");
  const size_t want = size_t(batch.num_sequences()) * C;
  if (batch.targets.size() != want)
    throw Error("forward: " + std::to_string(batch.targets.size()) + " float targets for " +
                std::to_string(batch.num_sequences()) + " sequences of " + std::to_string(C) + " labels");
  for (size_t i = 0; i < want; ++i)
    if (!std::isfinite(batch.targets[i]))
      throw Error("forward: target " + std::to_string(i % C) + " of sequence " + std::to_string(i / C) +
                  " is not a finite number");
}

}  // namespace

// Throws unless the batch is consistent and fits the model.
void BertModel::check_batch(const Batch& batch) const {
  const int B = batch.num_sequences(), T = batch.num_rows();
  if (B == 0) throw Error("forward: empty batch");
  if (static_cast<int>(batch.offsets.size()) != B + 1 || batch.offsets[0] != 0 ||
      batch.offsets[B] != T)
    throw Error("forward: batch offsets must run from 0 to the number of tokens, one per sequence + 1");
  if (!batch.token_type_ids.empty() && static_cast<int>(batch.token_type_ids.size()) != T)
    throw Error("forward: token_type_ids has " + std::to_string(batch.token_type_ids.size()) +
                " entries for " + std::to_string(T) + " tokens");
  for (int b = 0; b < B; ++b) {
    int span = batch.offsets[b + 1] - batch.offsets[b];
    if (batch.lengths[b] <= 0 || batch.lengths[b] > span)
      throw Error("forward: sequence " + std::to_string(b) + " has length " +
                  std::to_string(batch.lengths[b]) + " in a span of " + std::to_string(span));
    if (span > config_.max_sequence_length())
      throw Error("forward: sequence " + std::to_string(b) + " spans " + std::to_string(span) +
                  " tokens, max_position_embeddings is " + std::to_string(config_.max_position_embeddings) +
                  (config_.position_offset() ? " (positions from " + std::to_string(config_.position_offset()) + ")"
                                             : ""));
  }
  for (int t = 0; t < T; ++t) {
    if (batch.input_ids[t] < 0 || batch.input_ids[t] >= config_.vocab_size)
      throw Error("forward: token id " + std::to_string(batch.input_ids[t]) + " at row " +
                  std::to_string(t) + " is outside the vocabulary (" +
                  std::to_string(config_.vocab_size) + ")");
    if (!batch.token_type_ids.empty() && config_.reads_token_types() &&
        (batch.token_type_ids[t] < 0 || batch.token_type_ids[t] >= config_.type_vocab_size))
      throw Error("forward: token_type_id " + std::to_string(batch.token_type_ids[t]) +
                  " at row " + std::to_string(t) + " is outside type_vocab_size");
  }
  if (!batch.targets.empty()) check_targets(batch, head_->per_token(), head_->num_classes(config_));
  if (!batch.next_sentence_labels.empty()) {
    if (task_ != Task::PreTraining)
      throw Error("forward: next-sentence labels need a BertForPreTraining model (Task::PreTraining)");
    if (batch.next_sentence_labels.size() != size_t(B))
      throw Error("forward: " + std::to_string(batch.next_sentence_labels.size()) + " next-sentence labels for " +
                  std::to_string(B) + " sequences");
    if (batch.labels.empty())
      throw Error("forward: next-sentence labels need the masked-LM labels beside them (-100 where none)");
    for (int b = 0; b < B; ++b)
      if (batch.next_sentence_labels[b] != 0 && batch.next_sentence_labels[b] != 1)
        throw Error("forward: next-sentence label " + std::to_string(batch.next_sentence_labels[b]) +
                    " of sequence " + std::to_string(b) + " is neither 0 (follows) nor 1 (random)");
  }
  if (!batch.labels.empty()) {
    const bool per_token = head_->per_token();
    const size_t want = per_token ? T : B;
    if (batch.labels.size() != want)
      throw Error("forward: " + std::to_string(batch.labels.size()) + " labels for " +
                  std::to_string(want) + (per_token ? " tokens" : " sequences"));
    const int C = head_->num_classes(config_);
    for (size_t i = 0; i < batch.labels.size(); ++i) {
      const int32_t label = batch.labels[i];
      if (label != -100 && (label < 0 || label >= C))
        throw Error("forward: label " + std::to_string(label) + " of row " + std::to_string(i) +
                    " is outside [0, " + std::to_string(C) + ")");
    }
  }
}

// Validates the batch on the host, completes it (positions, token types, prob
// offsets), places it where the kernels read it, lays out the activation arena.
void BertModel::prepare(const Batch& batch, bool train) {
  check_batch(batch);
  const int B = batch.num_sequences(), T = batch.num_rows();
  T_ = T;
  B_ = B;
  train_ = train;
  ids_ = batch.input_ids;
  // RoBERTa's one token type and DistilBERT's none: type 0 throughout (DistilBERT reads none).
  const bool types = !batch.token_type_ids.empty() && config_.reads_token_types();
  types_ = types ? batch.token_type_ids : std::vector<int32_t>(T, 0);
  offsets_ = batch.offsets;
  lengths_ = batch.lengths;
  place_ = batch.dropout_place;
  labels_ = batch.labels;
  next_sentence_labels_ = batch.next_sentence_labels;
  targets_ = batch.targets;
  has_labels_ = !batch.labels.empty() || !batch.targets.empty();
  has_targets_ = false;
  if (has_labels_ && !head_->per_token()) {
    const ProblemType problem = decide_problem_type(batch);
    has_targets_ = problem != ProblemType::SingleLabel;
    target_loss_ = problem == ProblemType::Regression ? k::TargetLoss::MSE : k::TargetLoss::BCEWithLogits;
  }
  positions_.resize(T);
  prob_offsets_.assign(B + 1, 0);
  const int nh = config_.num_attention_heads;
  int longest = 0;
  // RoBERTa: pad_token_id + 1 + i over the real tokens, pad_token_id on pad rows (HF's
  // create_position_ids_from_input_ids); else i.
  const int first = config_.position_offset();
  const bool roberta = config_.roberta_like();
  for (int b = 0; b < B; ++b) {
    int o = offsets_[b], span = offsets_[b + 1] - o;
    for (int i = 0; i < span; ++i) positions_[o + i] = !roberta || i < lengths_[b] ? first + i : config_.pad_token_id;
    prob_offsets_[b + 1] = prob_offsets_[b] + int64_t(nh) * span * span;
    longest = std::max(longest, span);
  }
  if (head_->per_token()) select_head_rows();  // compacts labels_: before the upload
  place_batch_metadata();
  // Host-side launch size, from the host vectors (batch_ may point at the device).
  shape_.max_length = longest;
  shape_.offsets = batch_.offsets;
  shape_.lengths = batch_.lengths;
  shape_.num_sequences = B;
  shape_.num_heads = nh;
  shape_.head_dim = config_.head_dim();
  shape_.prob_offsets = batch_.prob_offsets;
  layout_arena(train);
}

// Points batch_ at the host arrays (CPU: no copy), or packs them into one staging
// block and uploads it in one copy, each array on a 64-byte boundary.
void BertModel::place_batch_metadata() {
  if (device_ == k::Device::CPU) {
    batch_ = {ids_.data(),       types_.data(),     positions_.data(),    offsets_.data(), lengths_.data(),
              labels_.data(),    head_rows_.data(), prob_offsets_.data(), targets_.data()};
    return;
  }
  struct Part {
    const void* host;
    size_t bytes;
    size_t at = 0;
  };
  auto part = [](const auto& v) { return Part{v.data(), v.size() * sizeof(v[0])}; };
  Part parts[] = {part(ids_),     part(types_),  part(positions_), part(offsets_),     part(lengths_),
                  part(labels_), part(head_rows_), part(prob_offsets_), part(targets_)};
  size_t total = 0;
  for (Part& p : parts) {
    p.at = total;
    total += (p.bytes + 63) / 64 * 64;
  }
  std::vector<std::byte> staging(total);
  for (const Part& p : parts)
    if (p.bytes) std::memcpy(staging.data() + p.at, p.host, p.bytes);
  if (batch_device_.size() < total) {
    batch_device_ = {};
    batch_device_ = k::DeviceBuffer<std::byte>(device_, total);
  }
  k::copy_to_device(device_, batch_device_.data(), staging.data(), total);
  const std::byte* base = batch_device_.data();
  auto i32 = [&](int i) { return reinterpret_cast<const int32_t*>(base + parts[i].at); };
  batch_ = {i32(0), i32(1), i32(2), i32(3), i32(4), i32(5), i32(6),
            reinterpret_cast<const int64_t*>(base + parts[7].at), reinterpret_cast<const float*>(base + parts[8].at)};
}

// A per-token loss reads only the rows with a label (MLM: ~15% of tokens), and the
// head is row-wise, so it runs on those rows only: the 30K-wide MLM decoder was
// ~70% of a pretraining step when it ran on every row. Without labels
// (inference) every row is computed.
void BertModel::select_head_rows() {
  head_rows_.clear();
  if (!has_labels_) {
    head_rows_.resize(T_);
    for (int t = 0; t < T_; ++t) head_rows_[t] = t;
    return;
  }
  std::vector<int32_t> selected_labels;
  for (int t = 0; t < T_; ++t) {
    if (labels_[t] == -100) continue;
    head_rows_.push_back(t);
    selected_labels.push_back(labels_[t]);
  }
  labels_ = std::move(selected_labels);
}

// Points every activation at its place in arena_ for the batch of prepare()
// (grown when too small, never shrunk).
void BertModel::layout_arena(bool train) {
  const int B = B_, T = T_;
  const size_t H = config_.hidden_size, I = config_.intermediate_size;
  const size_t TH = size_t(T) * H, TI = size_t(T) * I, P = size_t(prob_offsets_[B]);
  const int L = config_.num_hidden_layers;
  const size_t C = head_->num_classes(config_);
  const size_t logit_rows = head_->per_token() ? head_rows_.size() : size_t(B);
  HeadPass sizes;  // what the head's plan reads: the batch's sizes
  sizes.config = &config_;
  sizes.B = B;
  sizes.T = T;
  sizes.R = static_cast<int>(logit_rows);
  // E: the embeddings' width (ELECTRA's embedding_size; else H). d_s_ and d_y_ hold rows of
  // either width.
  const size_t E = config_.embedding_width(), TE = size_t(T) * E, TW = size_t(T) * std::max(H, E);
  ArenaPlan plan;
  plan.take(&emb_sum_, TE);
  plan.take(&emb_mean_, T);
  plan.take(&emb_rstd_, T);
  if (p_.project_w) plan.take(&emb_ln_, TE);
  plan.take(&emb_out_, TH);
  // Eval keeps two layers of activations and alternates: layer l only reads
  // layer l-1's output.
  const int sets = train ? L : std::min(L, 2);
  std::vector<LayerActs> sets_acts(sets);
  for (int i = 0; i < sets; ++i) {
    LayerActs& a = sets_acts[i];
    // Training keeps the last layer's own set: past K and V it holds the B [CLS] rows
    // only when last_layer_cls_forward runs (probs: one score row per sequence and head).
    const bool cls = train && cls_rows_compact_ && i == L - 1;
    const size_t rows = cls ? size_t(B) : size_t(T);
    plan.take(&a.qkv, cls ? 2 * TH + rows * H : 3 * TH);
    plan.take(&a.probs, cls ? size_t(config_.num_attention_heads) * T : P);
    plan.take(&a.ctx, rows * H);
    plan.take(&a.ln1_in, rows * H);
    plan.take(&a.ln1_mean, rows);
    plan.take(&a.ln1_rstd, rows);
    plan.take(&a.ln1_out, rows * H);
    plan.take(&a.ffn_pre, rows * I);
    plan.take(&a.ln2_in, rows * H);
    plan.take(&a.ln2_mean, rows);
    plan.take(&a.ln2_rstd, rows);
    plan.take(&a.out, rows * H);
  }
  plan.take(&dense_out_, TH);
  plan.take(&ffn_act_, TI);
  if (head_->reads_cls_rows_only()) plan.take(&cls_in_, B * H);
  head_->plan_activations(plan, sizes);
  plan.take(&logits_, logit_rows * C);
  plan.take(&ce_probs_, logit_rows * C);
  if (train) {
    plan.take(&d_x_, TH);
    plan.take(&d_s_, TW);
    plan.take(&d_y_, TW);
    plan.take(&d_ctx_, TH);
    plan.take(&d_qkv_, 3 * TH);
    plan.take(&d_ffn_, TI);
    plan.take(&d_logits_, logit_rows * C);
    head_->plan_gradients(plan, sizes);
  }
  const size_t total = plan.total();
  if (arena_.size() < total) {
    // Grown by half again at least: batches sorted by length (eval, predict, serve) grow a
    // little every batch, and a fresh zeroed arena per batch was ~15% of a small model's
    // eval in page faults and memset.
    const size_t grown = std::max(total, arena_.size() + arena_.size() / 2);
    arena_ = {};  // the old arena goes before the new one comes
    arena_ = k::DeviceBuffer<float>(device_, grown);
  }
  plan.place(arena_.data());
  acts_.resize(L);
  for (int l = 0; l < L; ++l) acts_[l] = sets_acts[l % sets];
  logit_rows_ = static_cast<int>(logit_rows);
  logit_cols_ = static_cast<int>(C);
}

const float* BertModel::hidden_state(int i) const {
  if (!have_activations_) throw Error("hidden_state: needs a training forward first");
  if (i < 0 || i > config_.num_hidden_layers)
    throw Error("hidden_state: index " + std::to_string(i) + " out of range");
  if (cls_rows_compact_ && i == config_.num_hidden_layers)
    throw Error("hidden_state: the last layer ran on the [CLS] rows only; call "
                "set_last_layer_cls_only(false) before forward for all its rows");
  return k::host_view(device_, layer_input(i), size_t(T_) * config_.hidden_size, host_hidden_);
}

const float* BertModel::logits() const {
  if (device_ == k::Device::CPU || !logits_) return logits_;
  if (!host_logits_fresh_) {
    k::host_view(device_, static_cast<const float*>(logits_), size_t(logit_rows_) * logit_cols_, host_logits_);
    host_logits_fresh_ = true;
  }
  return host_logits_.data();
}

// ---------------------------------------------------------------- forward

float BertModel::forward(const Batch& batch, bool train, double* loss_sink) {
  have_activations_ = false;
  loss_sink_ = loss_sink;
  host_logits_fresh_ = false;
  const int L = config_.num_hidden_layers;
  // The [CLS]-only last layer where the device has its ops (training: their backward and
  // dropout_rows too); elsewhere the full layer. Before prepare(): the arena is laid out for it.
  const bool cls_ops = k::supports(device_, k::Op::attention_first_query_forward) &&
                       (!train || (k::supports(device_, k::Op::attention_first_query_backward) &&
                                   k::supports(device_, k::Op::dropout_rows)));
  cls_rows_compact_ = head_->reads_cls_rows_only() && last_layer_cls_only_ && L > 0 && cls_ops;
  prepare(batch, train);
  forward_step_ = dropout_step_;
  if (train) ++dropout_step_;

  embeddings_forward();
  for (int l = 0; l < L; ++l) {
    if (cls_rows_compact_ && l == L - 1)
      last_layer_cls_forward(l);
    else
      layer_forward(l);
  }
  float loss = head_forward();
  loss_sink_ = nullptr;
  have_activations_ = train;
  return loss;
}

// BertEmbeddings: LayerNorm(word + position [+ token_type]), dropout, of width E; ELECTRA's
// then projected to H (embeddings_project), elsewhere E = H and that is the output.
void BertModel::embeddings_forward() {
  PHASE("fwd embeddings+layernorm");
  const int T = T_, H = config_.hidden_size, E = config_.embedding_width();
  float* ln_out = p_.project_w ? emb_ln_ : emb_out_;  // (T, E)
  k::embeddings_forward(device_, emb_sum_, batch_.ids, batch_.positions, batch_.types, p_.word,  // (T, E)
                        p_.position, p_.token_type, T, E);
  k::layernorm_forward(device_, ln_out, emb_mean_, emb_rstd_, emb_sum_, p_.emb_ln_g, p_.emb_ln_b, T, E,
                       config_.layer_norm_eps);
  k::dropout_forward(device_, ln_out, ln_out, size_t(T) * E, row_dropout(kSiteEmbeddings, E));
  if (p_.project_w) k::linear_forward(device_, emb_out_, emb_ln_, p_.project_w, p_.project_b, T, E, H);  // (T, H)
}

// BertLayer, post-LN:
//   ln1_out = LayerNorm(x + dropout(Attention(x) W_o + b_o))
//   out     = LayerNorm(ln1_out + dropout(GELU(ln1_out W_1 + b_1) W_2 + b_2))
void BertModel::layer_forward(int l) {
  const int T = T_, H = config_.hidden_size, I = config_.intermediate_size;
  const float eps = config_.layer_norm_eps;
  const LayerParams& w = p_.layers[l];
  LayerActs& a = acts_[l];
  const float* x = layer_input(l);

  {
    PHASE("fwd qkv gemm");
    k::linear_forward(device_, a.qkv, x, w.qkv_w, w.qkv_b, T, H, 3 * H);  // (T, H) -> (T, 3H)
  }
  {
    PHASE("fwd attention");
    k::attention_forward(device_, a.ctx, a.probs, a.qkv, shape_,  // (T, 3H) -> (P), (T, H)
                         probs_dropout(l));
  }
  {
    PHASE("fwd attn-out gemm");
    k::linear_forward(device_, dense_out_, a.ctx, w.attn_out_w, w.attn_out_b, T, H, H);  // (T, H)
  }
  {
    PHASE("fwd dropout+residual+layernorm");
    k::dropout_residual_layernorm_forward(  // (T, H)
        device_, a.ln1_out, a.ln1_in, a.ln1_mean, a.ln1_rstd, dense_out_, x, w.ln1_g, w.ln1_b, T, H, eps,
        row_dropout(site_attention_output(l), H));
  }
  {
    PHASE("fwd ffn-in gemm");
    k::linear_forward(device_, a.ffn_pre, a.ln1_out, w.ffn_in_w, nullptr, T, H, I);  // (T, H) -> (T, I)
  }
  {
    PHASE("fwd bias+gelu");
    k::bias_gelu_forward(device_, a.ffn_pre, ffn_act_, w.ffn_in_b, T, I);  // (T, I)
  }
  {
    PHASE("fwd ffn-out gemm");
    k::linear_forward(device_, dense_out_, ffn_act_, w.ffn_out_w, w.ffn_out_b, T, I, H);  // (T, I) -> (T, H)
  }
  {
    PHASE("fwd dropout+residual+layernorm");
    k::dropout_residual_layernorm_forward(device_, a.out, a.ln2_in, a.ln2_mean, a.ln2_rstd, dense_out_,  // (T, H)
                                          a.ln1_out, w.ln2_g, w.ln2_b, T, H, eps,
                                          row_dropout(site_ffn_output(l), H));
  }
}

// layer_forward for the rows a classifier reads: the [CLS] row of each sequence.
// Keys and values still come from every row (the [CLS] query attends to them all);
// the query, attention, output projection, both LayerNorms and the feed-forward run
// on B rows instead of T. Output: a.out row b = sequence b's [CLS] row. Each
// dropout draws the masks of the rows' places in the full layer (dropout_rows, and
// the first query's row of the attention masks), so a training step computes the
// same loss and gradients as layer_forward would, up to float rounding.
void BertModel::last_layer_cls_forward(int l) {
  const int T = T_, B = B_, H = config_.hidden_size, I = config_.intermediate_size;
  const float eps = config_.layer_norm_eps;
  const LayerParams& w = p_.layers[l];
  LayerActs& a = acts_[l];
  const float* x = layer_input(l);
  k::gather_rows(device_, cls_in_, x, batch_.offsets, B, H);  // the [CLS] rows: offsets[0..B)
  float* kv = a.qkv;                     // (T, 2H): K | V of every row
  float* q = a.qkv + size_t(2) * T * H;  // (B, H): the [CLS] queries
  {
    PHASE("fwd qkv gemm");
    // Rows H..3H of the fused [3H, H] weight are K's then V's: one GEMM for both.
    k::linear_forward(device_, kv, x, w.qkv_w + size_t(H) * H, w.qkv_b + H, T, H, 2 * H);
    k::linear_forward(device_, q, cls_in_, w.qkv_w, w.qkv_b, B, H, H);
  }
  {
    PHASE("fwd attention");
    k::attention_first_query_forward(device_, a.ctx, train_ ? a.probs : nullptr, q, kv, shape_,
                                     probs_dropout(l));
  }
  {
    PHASE("fwd attn-out gemm");
    k::linear_forward(device_, dense_out_, a.ctx, w.attn_out_w, w.attn_out_b, B, H, H);
  }
  {
    PHASE("fwd dropout+residual+layernorm");
    cls_rows_dropout(dense_out_, site_attention_output(l));
    k::dropout_residual_layernorm_forward(device_, a.ln1_out, a.ln1_in, a.ln1_mean, a.ln1_rstd, dense_out_,
                                          cls_in_, w.ln1_g, w.ln1_b, B, H, eps, k::Dropout{});
  }
  {
    PHASE("fwd ffn-in gemm");
    k::linear_forward(device_, a.ffn_pre, a.ln1_out, w.ffn_in_w, nullptr, B, H, I);
  }
  {
    PHASE("fwd bias+gelu");
    k::bias_gelu_forward(device_, a.ffn_pre, ffn_act_, w.ffn_in_b, B, I);
  }
  {
    PHASE("fwd ffn-out gemm");
    k::linear_forward(device_, dense_out_, ffn_act_, w.ffn_out_w, w.ffn_out_b, B, I, H);
  }
  {
    PHASE("fwd dropout+residual+layernorm");
    cls_rows_dropout(dense_out_, site_ffn_output(l));
    k::dropout_residual_layernorm_forward(device_, a.out, a.ln2_in, a.ln2_mean, a.ln2_rstd, dense_out_,
                                          a.ln1_out, w.ln2_g, w.ln2_b, B, H, eps, k::Dropout{});
  }
}

// Hidden dropout (in place) of B compact [CLS] rows with the masks of rows offsets[b].
void BertModel::cls_rows_dropout(float* x, uint64_t site) const {
  auto drop = row_dropout(site, config_.hidden_size);
  if (drop.active()) k::dropout_rows(device_, x, x, batch_.offsets, B_, config_.hidden_size, drop);
}

// What the head reads of this forward: the batch, the last hidden state, the dropout.
HeadPass BertModel::head_pass() const {
  HeadPass pass;
  pass.device = device_;
  pass.config = &config_;
  pass.B = B_;
  pass.T = T_;
  pass.R = logit_rows_;
  pass.last = layer_input(config_.num_hidden_layers);
  pass.cls_rows_compact = cls_rows_compact_;
  pass.offsets = batch_.offsets;
  pass.head_rows = batch_.head_rows;
  // CPU only (the constructor refuses another device for Task::PreTraining): host memory.
  pass.next_sentence_labels = next_sentence_labels_.empty() ? nullptr : next_sentence_labels_.data();
  pass.dropout_seed = dropout_seed_;
  pass.first_sequence = place_.sequences;
  pass.first_row = place_.rows;
  pass.dropout_step = forward_step_;
  pass.train = train_;
  return pass;
}

// The head's logits (R, C), then their mean loss when the batch has labels.
float BertModel::head_forward() {
  PHASE("fwd+bwd head");
  head_->forward(head_pass(), logits_);
  if (!has_labels_) return std::numeric_limits<float>::quiet_NaN();
  if (has_targets_) return rescale_loss(target_mean_loss(logit_rows_ * logit_cols_), double(logit_rows_) * logit_cols_);
  const float loss = mean_loss(logit_rows_, logit_cols_);
  if (next_sentence_labels_.empty()) return rescale_loss(loss, counted_);
  // BertForPreTraining: masked LM + next-sentence prediction, each a mean (HF's total_loss).
  if (loss_denominator_ > 0 || loss_sink_)
    throw Error("forward: the next-sentence loss is computed on the host by one process (no loss denominator or sink)");
  return loss + head_->sequence_loss();
}

double BertModel::loss_count(const Batch& batch) {
  if (!batch.targets.empty()) return static_cast<double>(batch.targets.size());
  return static_cast<double>(std::count_if(batch.labels.begin(), batch.labels.end(), [](int32_t l) { return l != -100; }));
}

// The mean loss as a sum over loss_denominator_ (set_loss_denominator), when one is set; a
// target loss's gradient (in ce_probs_ already) scaled with it, a cross-entropy's in backward.
float BertModel::rescale_loss(float mean_loss, double count) {
  loss_factor_ = 1.f;
  if (loss_denominator_ <= 0) return mean_loss;
  loss_factor_ = static_cast<float>(count / loss_denominator_);
  if (has_targets_) k::scale(device_, ce_probs_, size_t(logit_rows_) * logit_cols_, loss_factor_);
  if (loss_sink_) {  // the mean is in share_scratch_ (loss_target): its share into the sink
    if (count > 0) k::add_loss_share(device_, loss_sink_, share_scratch_.data(), count, loss_denominator_);
    return mean_loss;
  }
  return count > 0 ? static_cast<float>(static_cast<double>(mean_loss) * count / loss_denominator_) : mean_loss;
}

// The loss ops' destination with a sink: the sink itself, or with a loss denominator a zeroed
// scratch double whose mean rescale_loss then adds to the sink as its share.
double* BertModel::loss_target() {
  if (loss_denominator_ <= 0) return loss_sink_;
  if (share_scratch_.size() == 0) share_scratch_ = k::DeviceBuffer<double>(device_, 1);
  k::fill_zero(device_, share_scratch_.data(), sizeof(double));
  return share_scratch_.data();
}

// The problem type of a sequence classifier's labelled batch: config_.problem_type, or when
// that is Unset, HF's decision at its first loss, kept in config_ (as HF sets it).
ProblemType BertModel::decide_problem_type(const Batch& batch) {
  ProblemType problem = config_.problem_type;
  if (problem == ProblemType::Unset)
    problem = config_.num_labels() == 1 ? ProblemType::Regression
              : batch.targets.empty()   ? ProblemType::SingleLabel
                                        : ProblemType::MultiLabel;
  const bool wants_targets = problem != ProblemType::SingleLabel;
  if (wants_targets != !batch.targets.empty())
    throw Error(std::string("forward: problem_type ") + problem_type_name(problem) + " needs " +
                (wants_targets ? "float targets" : "integer labels") + ", the batch has " +
                (wants_targets ? "integer labels" : "float targets"));
  config_.problem_type = problem;
  return problem;
}

// Mean MSE or BCE-with-logits of the n logits against targets_, its gradient into ce_probs_
// (backward reads it from there): returned (on CUDA the call waits for it), or added to the
// loss sink where it was computed.
float BertModel::target_mean_loss(int n) {
  if (loss_sink_) {
    k::target_loss(device_, target_loss_, loss_target(), ce_probs_, logits_, batch_.targets, n);
    return std::numeric_limits<float>::quiet_NaN();
  }
  double sum = 0.0;
  if (device_ == k::Device::CPU) {
    k::target_loss(device_, target_loss_, &sum, ce_probs_, logits_, batch_.targets, n);
    return static_cast<float>(sum);
  }
  if (loss_scratch_.size() == 0) loss_scratch_ = k::DeviceBuffer<double>(device_, 1);
  k::copy_to_device(device_, loss_scratch_.data(), &sum, sizeof sum);
  k::target_loss(device_, target_loss_, loss_scratch_.data(), ce_probs_, logits_, batch_.targets, n);
  k::copy_to_host(device_, &sum, loss_scratch_.data(), sizeof sum);
  return static_cast<float>(sum);
}

// Mean cross-entropy of the N logit rows against labels_: returned (on CUDA the call waits
// for it), or with a loss sink added to the sink where it was computed (nothing waits).
float BertModel::mean_loss(int N, int C) {
  if (!loss_sink_) return k::cross_entropy_forward(device_, ce_probs_, logits_, batch_.labels, N, C, &counted_);
  counted_ = static_cast<int>(std::count_if(labels_.begin(), labels_.end(), [](int32_t l) { return l != -100; }));
  k::cross_entropy_loss_accumulate(device_, loss_target(), ce_probs_, logits_, batch_.labels, N, C, counted_);
  return std::numeric_limits<float>::quiet_NaN();
}

// ---------------------------------------------------------------- backward

void BertModel::backward(const GradientsReady& ready) {
  if (!have_activations_) throw Error("backward: needs a training forward (train = true) first");
  if (!has_labels_) throw Error("backward: the batch had no labels, so there is no loss");
  const std::vector<size_t> done = ready ? gradient_ready_offsets() : std::vector<size_t>{};
  head_backward();
  if (ready) ready(done[0]);
  const int L = config_.num_hidden_layers;
  for (int l = L - 1; l >= 0; --l) {
    if (cls_rows_compact_ && l == L - 1)
      last_layer_cls_backward(l);
    else
      layer_backward(l);
    if (ready) ready(done[static_cast<size_t>(L - l)]);
  }
  embeddings_backward();
}

std::vector<size_t> BertModel::gradient_ready_offsets() const {
  const int L = config_.num_hidden_layers, H = config_.hidden_size;
  const float* base = grads_.data();
  std::vector<size_t> at;
  at.push_back(static_cast<size_t>(g_.layers[L - 1].ln2_b + H - base));  // the head's part
  for (int l = L - 1; l >= 0; --l) at.push_back(static_cast<size_t>(g_.layers[l].qkv_w - base));
  return at;
}

// Leaves d loss / d (last hidden state) in d_x_: its B [CLS] rows when the last
// layer ran on those only (cls_rows_compact_), else all T rows.
void BertModel::head_backward() {
  PHASE("fwd+bwd head");
  if (has_targets_) {  // target_mean_loss left the gradient in ce_probs_
    head_->backward(head_pass(), ce_probs_, d_x_);
    return;
  }
  k::cross_entropy_backward(device_, d_logits_, ce_probs_, batch_.labels, logit_rows_, logit_cols_, counted_);
  if (loss_factor_ != 1.f) k::scale(device_, d_logits_, size_t(logit_rows_) * logit_cols_, loss_factor_);
  head_->backward(head_pass(), d_logits_, d_x_);
}

const float* BertModel::residual_layernorm_backward(float* d_gamma, float* d_beta, const float* ln_in,
                                                      const float* mean, const float* rstd,
                                                      const float* gamma, uint64_t site, bool cls_rows) {
  PHASE("bwd layernorm+dropout");
  const int rows = cls_rows ? B_ : T_, H = config_.hidden_size;
  k::layernorm_backward(device_, d_s_, d_gamma, d_beta, d_x_, ln_in, mean, rstd, gamma, rows, H);
  auto drop = row_dropout(site, config_.hidden_size);
  if (!drop.active()) return d_s_;
  if (cls_rows)
    k::dropout_rows(device_, d_y_, d_s_, batch_.offsets, rows, H, drop);
  else
    k::dropout_backward(device_, d_y_, d_s_, size_t(rows) * H, drop);
  return d_y_;
}

// The FFN sublayer's backward over `rows` rows (all T, or the B compact [CLS] rows of
// last_layer_cls_forward). In: d_x_ = d loss / d (the layer's output). Out: d_x_ =
// d loss / d ln1_out, the residual path plus the path through the FFN.
void BertModel::ffn_sublayer_backward(int l, int rows, bool cls_rows) {
  const int H = config_.hidden_size, I = config_.intermediate_size;
  const LayerParams& w = p_.layers[l];
  LayerParams& gw = g_.layers[l];
  const LayerActs& a = acts_[l];
  const float* d_y = residual_layernorm_backward(gw.ln2_g, gw.ln2_b, a.ln2_in, a.ln2_mean, a.ln2_rstd,
                                                 w.ln2_g, site_ffn_output(l), cls_rows);
  {
    PHASE("bwd gelu");
    k::gelu_forward(device_, ffn_act_, a.ffn_pre, size_t(rows) * I);  // recomputed, not stored
  }
  {
    PHASE("bwd ffn-out gemm");
    k::linear_backward(device_, d_ffn_, gw.ffn_out_w, gw.ffn_out_b, d_y, ffn_act_, w.ffn_out_w,
                       rows, I, H);
  }
  {
    PHASE("bwd gelu");
    k::gelu_backward(device_, d_ffn_, d_ffn_, a.ffn_pre, size_t(rows) * I);
  }
  {
    PHASE("bwd ffn-in gemm");
    k::copy_on_device(device_, d_x_, d_s_, size_t(rows) * H * sizeof(float));
    k::linear_backward(device_, d_x_, gw.ffn_in_w, gw.ffn_in_b, d_ffn_, a.ln1_out, w.ffn_in_w, rows, H, I,
                       /*accumulate_dx=*/true);
  }
}

// In: d_x_ = d loss / d (output of layer l). Out: d_x_ = d loss / d (its input).
void BertModel::layer_backward(int l) {
  const int T = T_, H = config_.hidden_size;
  const size_t TH = size_t(T) * H;
  const LayerParams& w = p_.layers[l];
  LayerParams& gw = g_.layers[l];
  const LayerActs& a = acts_[l];
  const float* x = layer_input(l);

  // FFN sublayer: out = LN2(dropout(GELU(ffn_pre) W_2 + b_2) + ln1_out)
  ffn_sublayer_backward(l, T, /*cls_rows=*/false);

  // attention sublayer: ln1_out = LN1(dropout(ctx W_o + b_o) + x)
  const float* d_y = residual_layernorm_backward(gw.ln1_g, gw.ln1_b, a.ln1_in, a.ln1_mean, a.ln1_rstd, w.ln1_g,
                                    site_attention_output(l));
  {
    PHASE("bwd attn-out gemm");
    k::linear_backward(device_, d_ctx_, gw.attn_out_w, gw.attn_out_b, d_y, a.ctx, w.attn_out_w, T,
                       H, H);
  }
  {
    PHASE("bwd attention");
    k::attention_backward(device_, d_qkv_, d_ctx_, a.qkv, a.probs, shape_,
                          probs_dropout(l));
  }
  {
    PHASE("bwd qkv gemm");
    k::copy_on_device(device_, d_x_, d_s_, TH * sizeof(float));
    k::linear_backward(device_, d_x_, gw.qkv_w, gw.qkv_b, d_qkv_, x, w.qkv_w, T, H, 3 * H,
                       /*accumulate_dx=*/true);
  }
}

// layer_backward of last_layer_cls_forward. In: d_x_ rows 0..B = d loss / d (the
// [CLS] rows of the output), the only rows the loss reads: the full layer's other rows
// get exactly zero gradient, so nothing is lost. Out: d_x_ = d loss / d (input) for all
// T rows: every row through K and V (the [CLS] queries attend to it), the [CLS] rows
// also through their query and the residual.
void BertModel::last_layer_cls_backward(int l) {
  const int T = T_, B = B_, H = config_.hidden_size;
  const size_t BH = size_t(B) * H;
  const LayerParams& w = p_.layers[l];
  LayerParams& gw = g_.layers[l];
  const LayerActs& a = acts_[l];
  const float* x = layer_input(l);
  const float* kv = a.qkv;                     // (T, 2H)
  const float* q = a.qkv + size_t(2) * T * H;  // (B, H)
  float* d_kv = d_qkv_;                        // (T, 2H)
  float* d_q = d_qkv_ + size_t(2) * T * H;     // (B, H)

  ffn_sublayer_backward(l, B, /*cls_rows=*/true);
  const float* d_y = residual_layernorm_backward(gw.ln1_g, gw.ln1_b, a.ln1_in, a.ln1_mean, a.ln1_rstd, w.ln1_g,
                                    site_attention_output(l), /*cls_rows=*/true);
  {
    PHASE("bwd attn-out gemm");
    k::linear_backward(device_, d_ctx_, gw.attn_out_w, gw.attn_out_b, d_y, a.ctx, w.attn_out_w, B, H, H);
  }
  {
    PHASE("bwd attention");
    k::attention_first_query_backward(device_, d_q, d_kv, d_ctx_, q, kv, a.probs, shape_,
                                      probs_dropout(l));
  }
  {
    PHASE("bwd qkv gemm");
    // d_y_ is spent: d (the [CLS] rows of x) = residual + through the query.
    float* d_cls_in = d_y_;
    k::copy_on_device(device_, d_cls_in, d_s_, BH * sizeof(float));
    k::linear_backward(device_, d_cls_in, gw.qkv_w, gw.qkv_b, d_q, cls_in_, w.qkv_w, B, H, H,
                       /*accumulate_dx=*/true);
    k::linear_backward(device_, d_x_, gw.qkv_w + size_t(H) * H, gw.qkv_b + H, d_kv, x,
                       w.qkv_w + size_t(H) * H, T, H, 2 * H);
    k::scatter_add_rows(device_, d_x_, d_cls_in, batch_.offsets, B, H);
  }
}

void BertModel::embeddings_backward() {
  PHASE("bwd embeddings+layernorm");
  const int T = T_, H = config_.hidden_size, E = config_.embedding_width();
  float* d_ln_out = d_x_;  // (T, E) d loss / d (the LayerNorm's output after dropout)
  if (p_.project_w) {
    k::linear_backward(device_, d_y_, g_.project_w, g_.project_b, d_x_, emb_ln_, p_.project_w, T, E, H);
    d_ln_out = d_y_;
  }
  k::dropout_backward(device_, d_ln_out, d_ln_out, size_t(T) * E,
                      row_dropout(kSiteEmbeddings, E));
  k::layernorm_backward(device_, d_s_, g_.emb_ln_g, g_.emb_ln_b, d_ln_out, emb_sum_, emb_mean_, emb_rstd_,
                        p_.emb_ln_g, T, E);
  k::embeddings_backward(device_, g_.word, g_.position, g_.token_type, d_s_, batch_.ids,
                         batch_.positions, batch_.types, T, E);
}

}  // namespace bertune::model
