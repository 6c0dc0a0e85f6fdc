#pragma once
// Task heads: what turns the encoder's last hidden state into logits, one class
// per head. Each holds its HF-named tensors (appended to the encoder's in
// bert_tensor_layout), its views into the flat parameter and gradient buffers,
// its activations in the model's arena, and a _forward/_backward pair. The
// model computes the cross-entropy of the logits, whatever the head.
//   SequenceClassificationHead  each family's classifier on the [CLS] rows (B logit rows)
//   MaskedLMHead                BertOnlyMLMHead on the head rows (the labelled tokens)
//   ReplacedTokenHead           ElectraDiscriminatorPredictions on the head rows
//   TokenClassificationHead     BertForTokenClassification's dropout + classifier on the head rows
// A new head is one new class here and one case in make_head.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/memory.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/layout.h"

namespace bertune::model {

// What a head's forward and backward read of the model's current batch. Pointers are
// memory of the model's device (kernels read them).
struct HeadPass {
  kernels::Device device = kernels::Device::CPU;
  const BertConfig* config = nullptr;
  int B = 0, T = 0;  // sequences, rows of the batch
  int R = 0;         // logit rows: B, or the head rows of a per-token head
  // The last layer's output: (T, H), or (B, H) = the [CLS] rows, compact, when the last
  // layer ran on those only (cls_rows_compact).
  const float* last = nullptr;
  bool cls_rows_compact = false;
  const int32_t* offsets = nullptr;    // [B + 1] sequence b's [CLS] row is offsets[b]
  const int32_t* head_rows = nullptr;  // [R] per-token heads: the token row of logit row r
  // [B] BertForPreTraining's next-sentence labels (0: the second text follows the first, 1: it
  // is a random one), or null: no next-sentence loss.
  const int32_t* next_sentence_labels = nullptr;
  // Dropout of this forward (off in eval): the masks of (seed, step, site); the batch's first
  // sequence and row in the batch it is part of (Batch::dropout_place): a head's (B, H) rows
  // draw from first_sequence on, its (R, H) token rows from first_row on.
  uint64_t dropout_seed = 0, dropout_step = 0;
  uint64_t first_sequence = 0, first_row = 0;
  bool train = false;
  kernels::Dropout dropout(uint64_t site, float p) const {
    return kernels::Dropout::make(dropout_seed, dropout_step, site, train ? p : 0.f);
  }
};

class Head {
 public:
  virtual ~Head() = default;
  // The head's tensors in checkpoint-layout order, appended after the encoder's.
  virtual void append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const = 0;
  // Labels: one per token (true; the head computes the rows with a label only, or all
  // rows without labels) or one per sequence (false).
  virtual bool per_token() const = 0;
  // Columns of a logit row: the values a label takes.
  virtual int num_classes(const BertConfig& config) const = 0;
  // Reads the [CLS] rows only: the encoder may then compute only those in its last layer.
  virtual bool reads_cls_rows_only() const { return false; }
  // Points the head's views at its tensors in the flat buffers.
  virtual void bind(const FlatView& params, const FlatView& grads) = 0;
  // The head's activations for a batch of `pass` (sizes only): forward's, then, for a
  // training forward, backward's.
  virtual void plan_activations(ArenaPlan& plan, const HeadPass& pass) = 0;
  virtual void plan_gradients(ArenaPlan& plan, const HeadPass& pass) = 0;
  // logits (R, C) from pass.last.
  virtual void forward(const HeadPass& pass, float* logits) = 0;
  // d_logits (R, C) -> d_last = d loss / d pass.last, every row of it ((B, H) or (T, H));
  // the head's parameter gradients (and the tied ones') are accumulated.
  virtual void backward(const HeadPass& pass, const float* d_logits, float* d_last) = 0;
  // A loss of the sequences beside the per-token one (BertForPreTraining's next-sentence
  // prediction): its mean over the B sequences, computed by forward when the pass has labels for
  // it (0 otherwise); the model adds it to the loss, and backward adds its gradient to d_last.
  virtual float sequence_loss() const { return 0.f; }
  // That loss's logits (B, 2) of the last forward, host memory (CPU), or null: none.
  virtual const float* sequence_logits() const { return nullptr; }
};

std::unique_ptr<Head> make_head(Task task, const BertConfig& config);

// Each family's sequence classifier on the [CLS] (<s>) rows: [dropout ->] dense ->
// activation -> dropout -> out, in HF's names:
//   BERT        bert.pooler.dense, tanh, dropout, classifier
//   RoBERTa     dropout, classifier.dense, tanh, dropout, classifier.out_proj
//   ELECTRA     dropout, classifier.dense, GELU, dropout, classifier.out_proj
//   DistilBERT  pre_classifier, ReLU, dropout (seq_classif_dropout), classifier
class SequenceClassificationHead : public Head {
 public:
  enum class Activation { Tanh, Gelu, Relu };
  struct Spec {
    std::string dense, out;  // module names: tensors are + ".weight" / ".bias"
    Activation activation = Activation::Tanh;
    bool dropout_before = false;  // dropout on the [CLS] rows before the dense
  };
  static Spec spec_of(const BertConfig& config);
  explicit SequenceClassificationHead(const BertConfig& config) : spec_(spec_of(config)) {}

  void append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const override;
  bool per_token() const override { return false; }
  int num_classes(const BertConfig& config) const override { return config.num_labels(); }
  bool reads_cls_rows_only() const override { return true; }
  void bind(const FlatView& params, const FlatView& grads) override;
  void plan_activations(ArenaPlan& plan, const HeadPass& pass) override;
  void plan_gradients(ArenaPlan& plan, const HeadPass& pass) override;
  void forward(const HeadPass& pass, float* logits) override;
  void backward(const HeadPass& pass, const float* d_logits, float* d_last) override;

 private:
  struct Params {
    float *pool_w, *pool_b, *cls_w, *cls_b;
  };
  const float* dense_input() const { return spec_.dropout_before ? dense_in_ : pooled_in_; }

  Spec spec_;
  Params p_{}, g_{};
  float* pooled_in_ = nullptr;    // (B, H) the [CLS] rows of the last layer
  float* dense_in_ = nullptr;     // (B, H) dropout(pooled_in) (spec_.dropout_before only)
  float* pooled_pre_ = nullptr;   // (B, H) dense_input W_p + b_p: the activation's input
  float* pooled_ = nullptr;       // (B, H) activation(pooled_pre)
  float* pooled_drop_ = nullptr;  // (B, H) dropout(pooled): the output projection's input
  float* d_pooled_ = nullptr;     // (B, H) d loss / d pooled_drop, then d pooled, then d pooled_pre
  float* d_pooled_in_ = nullptr;  // (B, H) d loss / d dense_input, then d pooled_in
};

// A head that computes R rows of the last layer, each on its own: the labelled ones (the
// loss reads only those) or, without labels, all T. Both token heads open with
// dense -> GELU on those rows.
class TokenHead : public Head {
 public:
  bool per_token() const override { return true; }
  void plan_activations(ArenaPlan& plan, const HeadPass& pass) override;
  void plan_gradients(ArenaPlan& plan, const HeadPass& pass) override;

 protected:
  // head_gelu = GELU(head_in W + b), head_in = the R head rows of pass.last.
  void dense_gelu_forward(const HeadPass& pass, const float* w, const float* b);
  // d_dense (R, H) = d loss / d head_dense -> d_last (T, H): rows the head did not read
  // get no gradient from it.
  void dense_backward(const HeadPass& pass, const float* d_dense, float* d_w, float* d_b,
                      const float* w, float* d_last);
  const float* head_input(const HeadPass& pass) const;  // (R, H)

  float* head_in_ = nullptr;     // (R, H) the head rows of the last layer (unused when R = T)
  float* head_dense_ = nullptr;  // (R, H) head_in W + b
  float* head_gelu_ = nullptr;   // (R, H) GELU(head_dense)
  float* d_head_in_ = nullptr;   // (R, H) d loss / d head_in (MLM: d ln_out before)
  float* d_head_dense_ = nullptr;  // (R, H) d loss / d head_gelu, then d head_dense
};

// BertOnlyMLMHead: GELU dense -> LayerNorm -> decoder tied to word_embeddings + bias.
class MaskedLMHead : public TokenHead {
 public:
  void append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const override;
  int num_classes(const BertConfig& config) const override { return config.vocab_size; }
  void bind(const FlatView& params, const FlatView& grads) override;
  void plan_activations(ArenaPlan& plan, const HeadPass& pass) override;
  void forward(const HeadPass& pass, float* logits) override;
  void backward(const HeadPass& pass, const float* d_logits, float* d_last) override;

 private:
  struct Params {
    float *dense_w, *dense_b, *ln_g, *ln_b, *bias;
    float* decoder;  // word_embeddings [V, H]
  };
  Params p_{}, g_{};
  float* ln_out_ = nullptr;   // (R, H) LayerNorm(head_gelu): the decoder's input
  float* ln_mean_ = nullptr;  // (R)
  float* ln_rstd_ = nullptr;  // (R)
};

// BertForPreTraining's heads: the masked LM (BertLMPredictionHead, as MaskedLMHead) on the head
// rows and next-sentence prediction on the [CLS] rows: bert.pooler (dense, tanh) ->
// cls.seq_relationship (2 logits; no dropout, as HF's BertPreTrainingHeads). The model's loss is
// HF's: the masked LM's mean cross-entropy + the next-sentence one's over the B sequences. CPU.
class PreTrainingHead : public MaskedLMHead {
 public:
  void append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const override;
  void bind(const FlatView& params, const FlatView& grads) override;
  void plan_activations(ArenaPlan& plan, const HeadPass& pass) override;
  void plan_gradients(ArenaPlan& plan, const HeadPass& pass) override;
  void forward(const HeadPass& pass, float* logits) override;
  void backward(const HeadPass& pass, const float* d_logits, float* d_last) override;
  float sequence_loss() const override { return nsp_loss_; }
  const float* sequence_logits() const override { return nsp_logits_; }

 private:
  struct Params {
    float *pool_w, *pool_b, *nsp_w, *nsp_b;
  };
  Params q_{}, gq_{};
  float* cls_rows_ = nullptr;     // (B, H) the [CLS] rows of the last layer
  float* pooled_ = nullptr;       // (B, H) tanh(cls_rows W_p + b_p)
  float* nsp_logits_ = nullptr;   // (B, 2)
  float* nsp_probs_ = nullptr;    // (B, 2) their softmax
  float* d_nsp_ = nullptr;        // (B, 2) d loss / d nsp_logits
  float* d_pooled_ = nullptr;     // (B, H) d loss / d pooled, then d (its tanh's input)
  float* d_cls_rows_ = nullptr;   // (B, H) d loss / d cls_rows
  float nsp_loss_ = 0.f;
  int nsp_counted_ = 0;
};

// ElectraDiscriminatorPredictions: dense -> GELU -> a 2-way classifier per token (HF's
// dense_prediction is [1, H] with a sigmoid: the same function, as the difference of
// the two logits), so that the loss is the cross-entropy every device has.
class ReplacedTokenHead : public TokenHead {
 public:
  void append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const override;
  int num_classes(const BertConfig&) const override { return 2; }
  void bind(const FlatView& params, const FlatView& grads) override;
  void forward(const HeadPass& pass, float* logits) override;
  void backward(const HeadPass& pass, const float* d_logits, float* d_last) override;

 private:
  struct Params {
    float *dense_w, *dense_b, *out_w, *out_b;
  };
  Params p_{}, g_{};
};

// BertForTokenClassification: dropout -> classifier on every token row HF computes; here on
// the head rows (the labelled tokens when the batch has labels, else all T), no pooler.
class TokenClassificationHead : public Head {
 public:
  void append_tensors(const BertConfig& config, std::vector<TensorSpec>& specs) const override;
  bool per_token() const override { return true; }
  int num_classes(const BertConfig& config) const override { return config.num_labels(); }
  void bind(const FlatView& params, const FlatView& grads) override;
  void plan_activations(ArenaPlan& plan, const HeadPass& pass) override;
  void plan_gradients(ArenaPlan& plan, const HeadPass& pass) override;
  void forward(const HeadPass& pass, float* logits) override;
  void backward(const HeadPass& pass, const float* d_logits, float* d_last) override;

 private:
  struct Params {
    float *cls_w, *cls_b;
  };
  Params p_{}, g_{};
  float* rows_in_ = nullptr;    // (R, H) the head rows of the last layer
  float* rows_drop_ = nullptr;  // (R, H) dropout(rows_in): the classifier's input
  float* d_rows_ = nullptr;     // (R, H) d loss / d rows_drop, then d rows_in
};

}  // namespace bertune::model
