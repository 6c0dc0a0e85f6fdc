#pragma once
// Where BERT's numbers live: the HF-named tensors of BertFor<Task> in the order
// of the model's flat parameter buffer, their offsets in it, HF's random
// initialisation of each, the encoder's named views into a flat buffer, and the
// activation arena's plan. The encoder's tensors are written out here; each
// task head appends its own (model/heads.h).
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "util/tensor.h"

namespace bertune::model {

// ReplacedTokenDetection: ELECTRA's discriminator (per-token "was this token replaced?"),
// the pretraining objective of `bertune pretrain --objective electra` (train/electra.h).
// TokenClassification: BertForTokenClassification, a label per token (NER).
// PreTraining: BertForPreTraining, the masked LM plus next-sentence prediction on the pooled
// [CLS] rows (`bertune pretrain --objective mlm-nsp`).
enum class Task { SequenceClassification, MaskedLM, ReplacedTokenDetection, TokenClassification, PreTraining };

// One tensor of BertFor<Task> as Hugging Face names it, in the order of the
// model's flat parameter buffer.
struct TensorSpec {
  std::string name;            // HF name
  std::vector<int64_t> shape;  // Linear weights [out, in]
  // Starts right after the previous tensor, no alignment gap: Q, K and V
  // weights (and biases) form one [3H, H] matrix ([3H] bias), one GEMM.
  bool follows_previous = false;
  bool head = false;  // task head (pooler, classifier, cls.*): may be absent from a checkpoint
  // Non-empty: not stored, the model uses this tensor instead (the MLM
  // decoder is word_embeddings and cls.predictions.bias). HF checkpoints
  // still hold it, so it is part of what a checkpoint is checked against.
  std::string tied_to;
};

// The HF module names of the encoder's tensors in config's family (a tensor's name is its
// module's + ".weight" / ".bias"): what bert_tensor_layout lays out and encoder_views finds.
//   BERT, RoBERTa, ELECTRA  <base>.embeddings.*, <base>.encoder.layer.N.attention.self.query, ...
//   DistilBERT              distilbert.embeddings.*, distilbert.transformer.layer.N.attention.q_lin, ...
struct EncoderNames {
  std::string word, position, token_type, embedding_layernorm;  // token_type empty: no table
  std::string project;  // ELECTRA's embeddings_project (embedding_size != hidden_size), else empty
  std::string layer_prefix;  // + N + "." = layer N's prefix
  // Layer N's modules, after its prefix: Q, K, V, attention output, its LayerNorm, FFN in,
  // FFN out, its LayerNorm.
  const char *query, *key, *value, *attn_out, *ln1, *ffn_in, *ffn_out, *ln2;
  std::string layer(int l) const { return layer_prefix + std::to_string(l) + "."; }
};
EncoderNames encoder_names(const BertConfig& config);

// Whether HF names `name` a LayerNorm's tensor (BERT's LayerNorm, DistilBERT's *_layer_norm).
bool is_layernorm_tensor(const std::string& name);

// THE layout of BERT: every tensor of BertFor<task> for `config`, tied ones
// included: the encoder's (embeddings, layers), then the task head's. BertModel
// allocates its parameters from it, and checkpoints are checked against it
// (bert_checkpoint_shapes). MaskedLM has no pooler (HF builds BertForMaskedLM
// without one). Families other than BERT: sequence classification only (Error otherwise).
std::vector<TensorSpec> bert_tensor_layout(const BertConfig& config, Task task);

// Name -> shape of every tensor an HF checkpoint of BertFor<task> holds.
TensorShapes bert_checkpoint_shapes(const BertConfig& config, Task task);

struct ParamInfo {
  std::string name;  // HF name
  std::vector<int64_t> shape;
  size_t offset = 0;  // into params() / grads()
  size_t numel = 0;
  bool decay = true;  // HF Trainer: no weight decay for biases and LayerNorm weights
  bool head = false;  // task head (pooler, classifier, cls.*): may be absent from a checkpoint
};

// The flat buffer of bert_tensor_layout: one ParamInfo per stored tensor (tied ones take
// no space), each on a 64-byte boundary unless it follows the previous one (Q, K, V).
// *total: the buffer's length in floats, alignment gaps included.
std::vector<ParamInfo> flat_param_layout(const BertConfig& config, Task task, size_t* total);

// The tensor named `name`; throws Error when there is none.
const ParamInfo& find_param(const std::vector<ParamInfo>& info, const std::string& name);

// HF _init_weights of one tensor into x[0, p.numel): N(0, initializer_range) for Linear
// and Embedding weights, the padding_idx row of word_embeddings 0, biases 0, LayerNorm
// 1 / 0. Each tensor draws from its own stream of (seed, name): independent of the order
// tensors are initialised in.
void init_param_values(const BertConfig& config, const ParamInfo& p, uint64_t seed, float* x);

// A flat buffer (params or grads) seen by HF name.
class FlatView {
 public:
  FlatView(float* base, const std::vector<ParamInfo>& info) : base_(base), info_(&info) {}
  float* operator[](const std::string& name) const { return base_ + find_param(*info_, name).offset; }

 private:
  float* base_;
  const std::vector<ParamInfo>* info_;
};

// The encoder's named pointers into a flat buffer (params or grads).
struct LayerParams {
  float *qkv_w, *qkv_b, *attn_out_w, *attn_out_b, *ln1_g, *ln1_b;
  float *ffn_in_w, *ffn_in_b, *ffn_out_w, *ffn_out_b, *ln2_g, *ln2_b;
};
struct EncoderParams {
  float *word, *position, *emb_ln_g, *emb_ln_b;
  float* token_type = nullptr;  // null: no token-type table (DistilBERT)
  float *project_w = nullptr, *project_b = nullptr;  // ELECTRA's embeddings_project, or null
  std::vector<LayerParams> layers;
};
EncoderParams encoder_views(const BertConfig& config, const FlatView& buffer);

// The activation arena's plan: views taken in order, each on a 64-byte boundary.
class ArenaPlan {
 public:
  void take(float** view, size_t n) { views_.emplace_back(view, n); }
  size_t total() const;  // floats
  void place(float* base) const;  // points every view at its place from base on

 private:
  std::vector<std::pair<float**, size_t>> views_;
};

}  // namespace bertune::model
