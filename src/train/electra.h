#pragma once
// ELECTRA's replaced-token detection (Clark et al., 2020) for `bertune pretrain --objective
// electra`. A small generator (BertForMaskedLM) fills the masked positions with tokens sampled
// from its own prediction; the discriminator — the model that is kept, a BERT encoder with a
// per-token "was this token replaced?" head (Task::ReplacedTokenDetection) — learns from every
// token instead of the 15 % a masked LM learns from.
//
// The two share their embeddings (word, position, token type, embedding LayerNorm), as ELECTRA
// does: the discriminator's copy is the trained one; before a step the generator's copy is
// refreshed from it, and after backward the generator's embedding gradients are added to the
// discriminator's — the update one shared tensor would get. Loss = generator MLM loss +
// discriminator_weight (ELECTRA: 50) x discriminator loss; one global gradient norm over both
// models, clipped together (torch's clip_grad_norm_ over all parameters); one AdamW each, at
// the same learning rate. CPU only (the sampling reads the generator's logits on the host).
#include <cstdint>
#include <span>

#include "model/bert.h"
#include "train/optimizer.h"
#include "train/step.h"

namespace bertune::train {

// The generator of a discriminator: the same embeddings (so the same hidden size, vocabulary,
// positions and token types), `layers` layers with a feed-forward of `intermediate_size`.
model::BertConfig generator_config(const model::BertConfig& discriminator, int layers, int intermediate_size);

// The discriminator's batch for a masked batch, after the generator's forward on it: every
// selected row (label != -100) gets a token drawn from the generator's softmax — a
// counter-based draw, pure in (seed, draw, row), so a resumed run draws the same tokens — and
// every other row its original token. Labels: 1 where the token differs from the original,
// 0 on the other real rows, -100 on pad rows. replaced counts the 1s.
model::Batch replaced_token_batch(const model::Batch& masked, const model::BertModel& generator, uint64_t seed,
                                  uint64_t draw, int64_t* replaced = nullptr);

struct ElectraLosses {
  float generator = 0;      // mean MLM loss over the step's micro-batches
  float discriminator = 0;  // mean replaced-token-detection loss
  double replaced_fraction = 0;  // of the discriminator's labelled tokens
};

class ElectraStep {
 public:
  ElectraStep(model::BertModel& generator, AdamW& generator_optimizer, model::BertModel& discriminator,
              AdamW& discriminator_optimizer, LrSchedule schedule, double max_grad_norm,
              double discriminator_weight, uint64_t seed);

  // One optimizer step of both models on the mean of the micro-batches' losses (TrainStep's
  // rule: gradients summed, 1/k on the clip coefficient). StepOutcome::loss is the combined
  // loss; a non-finite loss or norm skips both updates and zeroes both gradients.
  StepOutcome run(std::span<const model::Batch> masked_micro_batches, int64_t step);
  StepOutcome run(const model::Batch& masked, int64_t step) { return run(std::span(&masked, 1), step); }

  const LrSchedule& schedule() const { return schedule_; }
  const ElectraLosses& last_losses() const { return losses_; }
  // The generator's embeddings := the discriminator's (also before a save or an evaluation).
  void share_embeddings();

 private:
  void add_generator_embedding_gradients();

  model::BertModel& generator_;
  AdamW& generator_optimizer_;
  model::BertModel& discriminator_;
  AdamW& discriminator_optimizer_;
  LrSchedule schedule_;
  double max_grad_norm_, discriminator_weight_;
  uint64_t seed_;
  size_t shared_floats_;  // the shared embeddings: this many floats at the start of both flat buffers
  ElectraLosses losses_;
};

}  // namespace bertune::train
