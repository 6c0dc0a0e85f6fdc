#pragma once
// BERT (post-LN encoder) with a task head (model/heads.h: sequence
// classification, masked LM, replaced-token detection), forward and backward on
// packed or padded batches, exact against Hugging Face's modeling_bert.py (see
// tests/test_model.cc). The tensors' layout and initialisation: model/layout.h.
//
// Memory model (llm.c): every parameter lives in ONE flat float buffer, every
// gradient in a second one of the same layout, so the optimizer is one pass
// over two arrays; tensors are named views into them, with HF names.
// Activations of a training forward live in one arena that backward reads.
// All three are device memory (kernels/memory.h) on the model's Device; the
// host reads them only through the accessors that say so (state_dict, logits,
// hidden_state), which copy when the device is not the CPU and are free on it.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/memory.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/heads.h"
#include "model/layout.h"
#include "util/tensor.h"

namespace bertune::model {

// Sequences of one batch. Sequence b occupies rows [offsets[b], offsets[b+1])
// of every activation; the first lengths[b] of them are real tokens.
// Packed: no padding at all (span == length). Padded: every span is the same
// pad length and pad rows are computed like HF computes them, masked as keys.
struct Batch {
  std::vector<int32_t> input_ids;       // [T]
  std::vector<int32_t> token_type_ids;  // [T], or empty for all 0
  std::vector<int32_t> offsets;         // [B + 1], offsets[0] = 0, offsets[B] = T
  std::vector<int32_t> lengths;         // [B]
  // Classification: one label per sequence [B]. Masked LM: one per row [T],
  // -100 where there is no target. Replaced-token detection: one per row [T],
  // 1 = replaced, 0 = original, -100 = no target. Empty: no loss.
  std::vector<int32_t> labels;
  // Regression and multi-label classification (ProblemType, model/config.h): float labels,
  // [B, num_labels] row-major ([B] for one label); `labels` then stays empty.
  std::vector<float> targets;
  // BertForPreTraining (Task::PreTraining): one next-sentence label per sequence [B], 0 = the
  // second text follows the first, 1 = it is a random one; empty: no next-sentence loss.
  std::vector<int32_t> next_sentence_labels;

  // Where this batch lies in a larger one whose dropout masks it takes (a rank's share of a
  // data-parallel step, train/distributed.h): the rows, the sequences and the attention
  // probabilities (heads x span^2 per sequence) before it there. Zero: the batch is the whole.
  struct DropoutPlace {
    uint64_t rows = 0, sequences = 0, probs = 0;
  };
  DropoutPlace dropout_place;

  static Batch packed(const std::vector<std::vector<int32_t>>& sequences,
                      std::vector<int32_t> labels = {});
  // pad_to <= 0: pad to the longest sequence of the batch.
  static Batch padded(const std::vector<std::vector<int32_t>>& sequences, int pad_to,
                      int32_t pad_id, std::vector<int32_t> labels = {});

  int num_sequences() const { return static_cast<int>(lengths.size()); }
  int num_rows() const { return static_cast<int>(input_ids.size()); }  // computed tokens
  int64_t real_tokens() const;
};

struct LoadReport {
  std::vector<std::string> initialised;  // expected but absent: freshly initialised (heads only)
  std::vector<std::string> unused;       // present but not part of this model
};

// What a new model's parameters hold: HF's random initialisation (seed 0), or zeros for a
// caller that loads a state dict or calls init_weights next. Skipping the random draw saves
// ~2 s of Box-Muller for a klue/bert-base-sized model that is about to be overwritten.
enum class Init { Random, Zeros };

class BertModel {
 public:
  BertModel(BertConfig config, Task task, kernels::Device device = kernels::Device::CPU,
            Init init = Init::Random);

  const BertConfig& config() const { return config_; }
  Task task() const { return task_; }
  kernels::Device device() const { return device_; }

  // ---- parameters ----
  // HF _init_weights: N(0, initializer_range) for Linear and Embedding weights,
  // padding_idx row 0, biases 0, LayerNorm 1 / 0. Deterministic in `seed`.
  void init_weights(uint64_t seed);
  // Every expected tensor must be present with the configured shape, except
  // task-head tensors, which are initialised (seeded) like from_pretrained does.
  LoadReport load_state_dict(const TensorMap& tensors, uint64_t head_init_seed = 42);
  // HF names -> host-readable views of params() / grads(): on the CPU the model's own
  // memory, on another device a host copy made by this call (valid until the next one).
  std::vector<TensorRef> state_dict() const;
  std::vector<TensorRef> grad_dict() const;

  const std::vector<ParamInfo>& param_info() const { return info_; }
  const ParamInfo& param(const std::string& name) const;  // throws Error when unknown
  // The flat buffers themselves: device memory, for the kernels and the optimizer.
  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }
  float* grads() { return grads_.data(); }
  const float* grads() const { return grads_.data(); }
  size_t num_params() const { return params_.size(); }
  void zero_grad();

  // ---- dropout ----
  // Masks depend on (seed, step, site, element); step advances by one per
  // training forward. Set both when resuming to get the same masks.
  void set_dropout_seed(uint64_t seed) { dropout_seed_ = seed; }
  void set_dropout_step(uint64_t step) { dropout_step_ = step; }
  uint64_t dropout_step() const { return dropout_step_; }

  // ---- compute ----
  // A classification forward (training or not) computes the last layer for the [CLS]
  // rows only, the only rows the pooler reads: K and V for every row, the query,
  // attention context, output projection, LayerNorms and feed-forward for the B [CLS]
  // rows; backward likewise (the other rows' gradient is exactly zero in the full
  // layer), with the same dropout masks. Off: every row, which hidden_state(L) needs
  // (the same loss, logits and gradients up to float rounding; tests compare the two).
  // CPU only: on CUDA the full layer runs. The environment variable
  // BERTUNE_FULL_LAST_LAYER=1 turns it off for every model (to compare whole runs).
  void set_last_layer_cls_only(bool on) { last_layer_cls_only_ = on; }

  // The loss: cross-entropy against `labels` for single-label classification and the
  // per-token heads; MSE (regression) or BCE-with-logits (multi-label) against `targets`
  // by config().problem_type. When that is Unset, the first forward with labels decides
  // as HF does (num_labels 1: regression; integer labels: single-label; float targets:
  // multi-label) and sets it in config(), which a saved config.json then carries.
  // Returns the mean loss when the batch has labels, else NaN. train: dropout
  // on, activations kept for backward(); eval: dropout off, activation memory
  // of two layers only. With a loss_sink (memory of the model's device) the loss
  // is added to *loss_sink instead, where it was computed, and NaN returned: on
  // CUDA nothing then waits for the loss (train/step.h's device step).
  float forward(const Batch& batch, bool train, double* loss_sink = nullptr);
  // The items a batch's mean loss is over: its labels other than -100, or its float targets.
  static double loss_count(const Batch& batch);
  // Data-parallel training (train/step.h): the loss (and its gradient) is the sum over the
  // batch's items divided by `denominator` instead of their count; 0 = their count (the
  // mean). With a loss_sink the share is added there (kernels::add_loss_share), on the device.
  void set_loss_denominator(double denominator) { loss_denominator_ = denominator; }
  // d loss / d params, ACCUMULATED into grads(); needs a training forward with labels.
  // backward walks the model top-down (head, layer L-1, ..., layer 0, embeddings); with
  // `ready` (data-parallel training, train/step.h) it calls ready(from) each time this
  // backward has finished writing grads()[from, num_params()): after the head and after
  // each layer, with the offsets gradient_ready_offsets() lists. The embeddings' part
  // [0, layer 0's first) is finished when backward returns (a masked LM's tied decoder
  // adds to the word embeddings' gradient in the head's backward already).
  using GradientsReady = std::function<void(size_t from)>;
  void backward(const GradientsReady& ready = {});
  // The `from` of each ready(from) call of backward, in its order (decreasing): the first
  // value after the last encoder layer (the head's part, alignment gap included), then the
  // first value of layer L-1, ..., layer 0. The same for every batch.
  std::vector<size_t> gradient_ready_offsets() const;

  // After forward: classification [B, num_labels]; MLM [R, vocab] where the
  // R rows are the tokens with a label (!= -100) when the batch has labels —
  // only those feed the loss, so only those are computed — else all T rows;
  // replaced-token detection [R, 2] over the same rows (column 1 - column 0 is
  // ELECTRA's logit that the token was replaced).
  // logit_token_rows()[r] is the token row of logit row r (MLM and RTD).
  // Host-readable: on a device other than the CPU the first call after a
  // forward copies them to the host.
  const float* logits() const;
  const std::vector<int32_t>& logit_token_rows() const { return head_rows_; }
  // BertForPreTraining: after forward, the next-sentence logits (B, 2) (host memory; null for
  // other tasks) and, when the batch had next_sentence_labels, their mean cross-entropy (part
  // of forward's loss; else 0).
  const float* next_sentence_logits() const { return head_->sequence_logits(); }
  float next_sentence_loss() const { return head_->sequence_loss(); }
  int logits_rows() const { return logit_rows_; }
  int logits_cols() const { return logit_cols_; }
  // After a training forward: 0 = embeddings output, i = output of layer i. [T, H]
  // Host-readable (a host copy made by this call when the device is not the CPU).
  // The last one (i = L) throws Error when that layer ran on the [CLS] rows only.
  const float* hidden_state(int i) const;

  size_t activation_bytes() const { return arena_.size() * sizeof(float); }

 private:
  // Activations of one layer, kept for backward. T rows (tokens, pad rows
  // included), H hidden, I intermediate, P = heads x sum of span^2. The last
  // layer of a [CLS]-only forward (last_layer_cls_forward) holds B rows past K
  // and V instead: qkv = K|V (T, 2H) then Q (B, H), probs (heads x T).
  struct LayerActs {
    float* qkv;       // (T, 3H) x W_qkv + b_qkv: Q | K | V per row
    float* probs;     // (P) softmax(Q K^T / sqrt(d) + mask) per sequence and head, before dropout
    float* ctx;       // (T, H) attention context, heads concatenated
    float* ln1_in;    // (T, H) x + dropout(ctx W_o + b_o): LayerNorm 1's input
    float* ln1_mean;  // (T)
    float* ln1_rstd;  // (T)
    float* ln1_out;   // (T, H) attention sublayer output, the FFN's input
    float* ffn_pre;   // (T, I) ln1_out W_1 + b_1: GELU's input
    float* ln2_in;    // (T, H) ln1_out + dropout(GELU(ffn_pre) W_2 + b_2): LayerNorm 2's input
    float* ln2_mean;  // (T)
    float* ln2_rstd;  // (T)
    float* out;       // (T, H) layer output
  };

  void build_layout();
  void init_param(const ParamInfo& p, uint64_t seed);
  void prepare(const Batch& batch, bool train);
  void place_batch_metadata();
  kernels::Dropout dropout(uint64_t site, float p, uint64_t first) const;
  kernels::Dropout row_dropout(uint64_t site, int width) const;
  kernels::Dropout probs_dropout(int l) const;

  void embeddings_forward();
  void layer_forward(int l);
  void last_layer_cls_forward(int l);
  void cls_rows_dropout(float* x, uint64_t site) const;
  HeadPass head_pass() const;
  float head_forward();
  float mean_loss(int N, int C);
  float target_mean_loss(int n);
  ProblemType decide_problem_type(const Batch& batch);
  void head_backward();
  void ffn_sublayer_backward(int l, int rows, bool cls_rows);
  void layer_backward(int l);
  void last_layer_cls_backward(int l);
  void embeddings_backward();

  void check_batch(const Batch& batch) const;
  void layout_arena(bool train);
  // Backward through dropout + residual + LayerNorm: d_x_ holds d loss /
  // d (LayerNorm output); leaves d loss / d (LayerNorm input) in d_s_ and
  // returns d loss / d (the dense output that went into dropout). On T rows,
  // or on the B compact [CLS] rows (cls_rows) of last_layer_cls_forward.
  const float* residual_layernorm_backward(float* d_gamma, float* d_beta, const float* ln_in,
                                           const float* mean, const float* rstd,
                                           const float* gamma, uint64_t site, bool cls_rows = false);

  const float* layer_input(int l) const { return l == 0 ? emb_out_ : acts_[l - 1].out; }
  void select_head_rows();

  BertConfig config_;
  Task task_;
  kernels::Device device_;
  std::vector<ParamInfo> info_;
  kernels::DeviceBuffer<float> params_, grads_;
  EncoderParams p_, g_;  // the encoder's views; the head holds its own
  std::unique_ptr<Head> head_;

  uint64_t dropout_seed_ = 0, dropout_step_ = 0, forward_step_ = 0;
  Batch::DropoutPlace place_;  // this forward's batch.dropout_place
  bool train_ = false, have_activations_ = false, has_labels_ = false;
  bool last_layer_cls_only_ = true;
  // This forward ran last_layer_cls_forward: the last layer's activations past K and V
  // hold B rows (the [CLS] rows, compact), and so does its backward.
  bool cls_rows_compact_ = false;

  // The batch, validated and completed on the host (positions, token types, prob
  // offsets) ...
  int T_ = 0, B_ = 0;
  std::vector<int32_t> ids_, types_, positions_, offsets_, lengths_, labels_;
  std::vector<int32_t> next_sentence_labels_;  // Task::PreTraining: [B] or empty
  std::vector<float> targets_;
  // This batch's loss: cross-entropy, or target_loss against targets_ (has_targets_).
  bool has_targets_ = false;
  kernels::TargetLoss target_loss_ = kernels::TargetLoss::MSE;
  // A per-token head (MLM, RTD): the token rows it computes (the labelled ones, or all),
  // and labels_ is then compacted to them. Empty for classification.
  std::vector<int32_t> head_rows_;
  std::vector<int64_t> prob_offsets_;
  // ... and as the kernels see it: the host arrays above on the CPU (no copy), else
  // one upload per forward into batch_device_ (grown when too small).
  struct BatchPointers {
    const int32_t *ids, *types, *positions, *offsets, *lengths, *labels, *head_rows;
    const int64_t* prob_offsets;
    const float* targets;
  };
  BatchPointers batch_{};
  kernels::DeviceBuffer<std::byte> batch_device_;
  kernels::AttentionShape shape_;
  int counted_ = 0;  // labelled rows of the loss
  double loss_denominator_ = 0;  // set_loss_denominator
  float loss_factor_ = 1.f;      // this batch's count / loss_denominator_: scales the loss and its gradient
  float rescale_loss(float mean_loss, double count);
  double* loss_sink_ = nullptr;  // during forward(): where the loss goes (null: returned)

  // Activation arena and the views into it. B sequences, T rows, C logit
  // columns (the head's num_classes), R logit rows (B, or a per-token head's
  // head_rows_). The head's own activations are the head's (model/heads.h).
  kernels::DeviceBuffer<float> arena_;
  float* emb_sum_;   // (T, E) word + position [+ token_type]: LayerNorm's input (E = embedding width)
  float* emb_mean_;  // (T)
  float* emb_rstd_;  // (T)
  float* emb_ln_ = nullptr;  // (T, E) LayerNorm output after dropout, when projected (ELECTRA)
  float* emb_out_;   // (T, H) embeddings output (after dropout, or the projection): layer 0's input
  std::vector<LayerActs> acts_;
  // The current layer's, not kept: backward recomputes ffn_act_.
  float* dense_out_;  // (T, H) ctx W_o + b_o, then GELU(ffn_pre) W_2 + b_2
  float* ffn_act_;    // (T, I) GELU(ffn_pre)
  float* cls_in_;     // (B, H) the [CLS] rows of the last layer's input (cls_rows_compact_)
  float* logits_ = nullptr;  // (R, C)
  float* ce_probs_;          // (R, C) softmax(logits), kept for the loss gradient; for a
                             // target loss the gradient d loss / d logits itself
  kernels::DeviceBuffer<double> loss_scratch_;  // a target loss's sum off the CPU (one double)
  kernels::DeviceBuffer<double> share_scratch_;  // a sink's mean loss before its share (one double)
  double* loss_target();                          // where the loss ops add the mean: sink or scratch
  int logit_rows_ = 0, logit_cols_ = 0;
  // Gradients of activations (training only), reused layer after layer.
  float* d_x_;       // (T, H) d loss / d (current layer's output), then its input
  float* d_s_;       // (T, max(H, E)) d loss / d (a LayerNorm's input)
  float* d_y_;       // (T, max(H, E)) d loss / d (a dense output before dropout)
  float* d_ctx_;     // (T, H) d loss / d ctx
  float* d_qkv_;     // (T, 3H) d loss / d qkv
  float* d_ffn_;     // (T, I) d loss / d ffn_act, then d ffn_pre
  float* d_logits_;  // (R, C)

  // Host copies for the host-readable accessors (unused on the CPU).
  mutable std::vector<float> host_params_, host_grads_, host_logits_, host_hidden_;
  mutable bool host_logits_fresh_ = false;
};

}  // namespace bertune::model
