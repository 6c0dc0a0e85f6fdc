#include "model/footprint.h"

#include <algorithm>
#include <limits>
#include <memory>

#include "model/heads.h"

namespace bertune::model {

BatchShape uniform_batch(const BertConfig& config, Task task, int64_t sequences, int64_t length) {
  BatchShape s;
  s.sequences = sequences;
  s.rows = sequences * length;
  s.prob_entries = sequences * config.num_attention_heads * length * length;
  s.logit_rows = task == Task::SequenceClassification ? sequences : s.rows;
  return s;
}

uint64_t parameter_bytes(const BertConfig& config, Task task) {
  size_t total = 0;
  flat_param_layout(config, task, &total);
  return static_cast<uint64_t>(total) * sizeof(float);
}

// The same plan as BertModel::layout_arena, view for view (tests/test_memory.cc compares the
// two for every task, in training and inference).
uint64_t activation_bytes(const BertConfig& config, Task task, const BatchShape& shape, bool train,
                          bool cls_rows_compact) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (shape.sequences > kMax || shape.rows > kMax || shape.logit_rows > kMax || shape.sequences < 0 || shape.rows < 0)
    return std::numeric_limits<uint64_t>::max();
  const std::unique_ptr<Head> head = make_head(task, config);
  const size_t B = shape.sequences, T = shape.rows, P = shape.prob_entries, R = shape.logit_rows;
  const size_t H = config.hidden_size, I = config.intermediate_size, TH = T * H, TI = T * I;
  const int L = config.num_hidden_layers;
  const size_t C = head->num_classes(config);
  float* view = nullptr;  // never placed: the plan only adds up
  const size_t E = config.embedding_width(), TE = T * E, TW = T * std::max(H, E);
  ArenaPlan plan;
  for (size_t n : {TE, T, T}) plan.take(&view, n);  // embeddings: sum, mean, rstd
  if (E != H) plan.take(&view, TE);                // the LayerNorm's output, projected (ELECTRA)
  plan.take(&view, TH);                            // the embeddings' output
  const int sets = train ? L : std::min(L, 2);
  for (int i = 0; i < sets; ++i) {
    const bool cls = train && cls_rows_compact && i == L - 1;
    const size_t rows = cls ? B : T;
    plan.take(&view, cls ? 2 * TH + rows * H : 3 * TH);                  // qkv
    plan.take(&view, cls ? size_t(config.num_attention_heads) * T : P);  // probs
    for (int k = 0; k < 5; ++k) plan.take(&view, rows * H);  // ctx, ln1_in, ln1_out, ln2_in, out
    for (int k = 0; k < 4; ++k) plan.take(&view, rows);      // the LayerNorms' mean and rstd
    plan.take(&view, rows * I);                              // ffn_pre
  }
  plan.take(&view, TH);  // dense_out
  plan.take(&view, TI);  // ffn_act
  HeadPass sizes;
  sizes.config = &config;
  sizes.B = static_cast<int>(B);
  sizes.T = static_cast<int>(T);
  sizes.R = static_cast<int>(R);
  if (head->reads_cls_rows_only()) plan.take(&view, B * H);
  head->plan_activations(plan, sizes);
  plan.take(&view, R * C);  // logits
  plan.take(&view, R * C);  // ce_probs
  if (train) {  // d_x, d_s, d_y, d_ctx, d_qkv, d_ffn, d_logits
    for (size_t n : {TH, TW, TW, TH, 3 * TH, TI, R * C}) plan.take(&view, n);
    head->plan_gradients(plan, sizes);
  }
  return static_cast<uint64_t>(plan.total()) * sizeof(float);
}

}  // namespace bertune::model
