#pragma once
// BERT (post-LN encoder) with a sequence-classification or masked-LM head,
// forward and backward on packed or padded batches, exact against Hugging
// Face's modeling_bert.py (see tests/test_model.cc).
//
// Memory model (llm.c): every parameter lives in ONE flat float buffer, every
// gradient in a second one of the same layout, so the optimizer is one pass
// over two arrays; tensors are named views into them, with HF names.
// Activations of a training forward live in one arena that backward reads.
#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "kernels/ops.h"
#include "model/config.h"

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
  // -100 where there is no target. Empty: no loss.
  std::vector<int32_t> labels;

  static Batch packed(const std::vector<std::vector<int32_t>>& sequences,
                      std::vector<int32_t> labels = {});
  // pad_to <= 0: pad to the longest sequence of the batch.
  static Batch padded(const std::vector<std::vector<int32_t>>& sequences, int pad_to,
                      int32_t pad_id, std::vector<int32_t> labels = {});

  int num_sequences() const { return static_cast<int>(lengths.size()); }
  int num_rows() const { return static_cast<int>(input_ids.size()); }  // computed tokens
  int64_t real_tokens() const;
};

enum class Task { SequenceClassification, MaskedLM };

struct ParamInfo {
  std::string name;  // HF name
  std::vector<int64_t> shape;
  size_t offset = 0;  // into params() / grads()
  size_t numel = 0;
  bool decay = true;  // HF Trainer: no weight decay for biases and LayerNorm weights
  bool head = false;  // task head (pooler, classifier, cls.*): may be absent from a checkpoint
};

struct LoadReport {
  std::vector<std::string> initialised;  // expected but absent: freshly initialised (heads only)
  std::vector<std::string> unused;       // present but not part of this model
};

class BertModel {
 public:
  BertModel(BertConfig config, Task task, kernels::Device device = kernels::Device::CPU);

  const BertConfig& config() const { return config_; }
  Task task() const { return task_; }
  kernels::Device device() const { return device_; }

  // ---- parameters ----
  // HF _init_weights: N(0, initializer_range) for Linear and Embedding weights,
  // padding_idx row 0, biases 0, LayerNorm 1 / 0. Deterministic in `seed`.
  void init_weights(uint64_t seed);
  // Every expected tensor must be present with the configured shape, except
  // task-head tensors, which are initialised (seeded) like from_pretrained does.
  LoadReport load_state_dict(const io::TensorMap& tensors, uint64_t head_init_seed = 42);
  std::vector<io::TensorRef> state_dict() const;  // HF names, views of params()
  std::vector<io::TensorRef> grad_dict() const;   // the same names, views of grads()

  const std::vector<ParamInfo>& param_info() const { return info_; }
  const ParamInfo& param(const std::string& name) const;  // throws Error when unknown
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
  // Returns the mean loss when the batch has labels, else NaN. train: dropout
  // on, activations kept for backward(); eval: dropout off, activation memory
  // of two layers only.
  float forward(const Batch& batch, bool train);
  // d loss / d params, ACCUMULATED into grads(); needs a training forward with labels.
  void backward();

  // After forward: classification [B, num_labels]; MLM [T, vocab].
  const float* logits() const { return logits_; }
  int logits_rows() const { return logit_rows_; }
  int logits_cols() const { return logit_cols_; }
  // After a training forward: 0 = embeddings output, i = output of layer i. [T, H]
  const float* hidden_state(int i) const;

  size_t activation_bytes() const { return arena_.size() * sizeof(float); }

 private:
  struct LayerParams {
    float *qkv_w, *qkv_b, *attn_out_w, *attn_out_b, *ln1_g, *ln1_b;
    float *ffn_in_w, *ffn_in_b, *ffn_out_w, *ffn_out_b, *ln2_g, *ln2_b;
  };
  struct Params {
    float *word, *position, *token_type, *emb_ln_g, *emb_ln_b;
    std::vector<LayerParams> layers;
    float *pool_w = nullptr, *pool_b = nullptr, *cls_w = nullptr, *cls_b = nullptr;
    float *mlm_w = nullptr, *mlm_b = nullptr, *mlm_ln_g = nullptr, *mlm_ln_b = nullptr,
          *mlm_bias = nullptr;
  };
  struct LayerActs {
    float *qkv, *probs, *ctx, *s1, *mean1, *rstd1, *h1, *u, *s2, *mean2, *rstd2, *out;
  };

  void build_layout();
  Params views(float* base) const;
  void init_param(const ParamInfo& p, uint64_t seed);
  void prepare(const Batch& batch, bool train);
  kernels::Dropout dropout(uint64_t site, float p) const;

  void embeddings_forward();
  void layer_forward(int l);
  float classifier_forward(const Batch& batch);
  float mlm_forward(const Batch& batch);
  void classifier_backward();
  void mlm_backward();
  void layer_backward(int l);
  void embeddings_backward();

  const float* layer_input(int l) const { return l == 0 ? x0_ : acts_[l - 1].out; }

  BertConfig config_;
  Task task_;
  kernels::Device device_;
  std::vector<ParamInfo> info_;
  std::vector<float> params_, grads_;
  Params p_, g_;

  uint64_t dropout_seed_ = 0, dropout_step_ = 0, forward_step_ = 0;
  bool train_ = false, have_activations_ = false;

  // The batch as the kernels see it.
  int T_ = 0, B_ = 0;
  std::vector<int32_t> ids_, types_, positions_, offsets_, lengths_, labels_;
  std::vector<int64_t> prob_offsets_;
  kernels::AttentionShape shape_;
  int counted_ = 0;  // labelled rows of the loss

  // Activation arena and the views into it.
  std::vector<float> arena_;
  float *emb_sum_, *emb_mean_, *emb_rstd_, *x0_;
  std::vector<LayerActs> acts_;
  float *scratch_h_, *scratch_i_;  // [T,H] dense outputs, [T,I] GELU outputs
  float *pooled_in_, *pooled_, *pooled_drop_;
  float *t1_, *t2_, *t3_, *mlm_mean_, *mlm_rstd_;
  float *logits_ = nullptr, *ce_probs_;
  int logit_rows_ = 0, logit_cols_ = 0;
  // gradients of activations (training only)
  float *d_x_, *d_s_, *d_y_, *d_ctx_, *d_qkv_, *d_big_, *d_logits_, *d_head_a_, *d_head_b_;
};

}  // namespace bertune::model
