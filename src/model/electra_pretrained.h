#pragma once
// The directories `bertune pretrain --objective electra` writes, laid out as published ELECTRA
// checkpoints are (transformers' ElectraForPreTraining and ElectraForMaskedLM). The pretraining
// trains both models under BERT's names (a Task::ReplacedTokenDetection and a Task::MaskedLM
// BertModel, train/electra.h); these functions rename and reshape their state dicts:
//
//   BERT-named (trained)                            HF ELECTRA (saved)
//   bert.embeddings.*, bert.encoder.layer.N.*       electra.embeddings.*, electra.encoder.layer.N.*
//   discriminator_predictions.dense                 discriminator_predictions.dense
//   discriminator_predictions.classifier [2, H]     discriminator_predictions.dense_prediction [1, H]:
//     (logits z0 = "original", z1 = "replaced")       row 1 - row 0 (bias too): HF's one logit is
//                                                     z1 - z0, and sigmoid(z1 - z0) = softmax(z)[1]
//   cls.predictions.transform.dense                 generator_predictions.dense [E, H]
//   cls.predictions.transform.LayerNorm             generator_predictions.LayerNorm [E]
//   bert.embeddings.word_embeddings (tied decoder)  generator_lm_head.weight [V, E] (a copy: HF ties it)
//   cls.predictions.bias                            generator_lm_head.bias [V]
//
// The generator shares the discriminator's embeddings during pretraining; each saved
// directory holds its own copy of them, so that either loads alone. config.json: model_type
// "electra", embedding_size = hidden_size (the trained embeddings have the hidden width), the
// architecture named. The generator's directory also holds electra.embeddings.position_ids
// (I64 [1, max_position_embeddings], 0..P-1): transformers 4.30's ElectraForMaskedLM does not
// list it as ignorable when missing (ElectraForPreTraining and the classifiers do).
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "util/tensor.h"

namespace bertune::model {

struct ElectraCheckpoint {
  BertConfig config;
  TensorMap tensors;
  std::vector<int64_t> position_ids;     // the generator's buffer; empty for the discriminator
  std::vector<TensorRef> refs() const;  // views of `tensors`, for save_pretrained
  std::vector<io::Int64Ref> buffers() const;  // position_ids, when there are any
};

// A Bert-family discriminator's (Task::ReplacedTokenDetection) config and state dict as an
// ElectraForPreTraining; Error naming a tensor the conversion does not know.
ElectraCheckpoint electra_discriminator_checkpoint(const BertConfig& config, const std::vector<TensorRef>& state);
// A Bert-family generator's (Task::MaskedLM) as an ElectraForMaskedLM.
ElectraCheckpoint electra_generator_checkpoint(const BertConfig& config, const std::vector<TensorRef>& state);

}  // namespace bertune::model
