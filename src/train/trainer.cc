#include "train/trainer.h"

#include <cmath>
#include <cstdio>

#include "infer/tagged.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/pretrained.h"
#include "text/tokenizer.h"
#include "text/unk_rate.h"
#include "train/distributed.h"
#include "train/sampler.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

}  // namespace

ClassificationObjective::ClassificationObjective(PreparedRun run, std::FILE* out)
    : r_(std::move(run)),
      out_(console(out)),
      step_(*r_.model, *r_.optimizer, r_.schedule, r_.options.max_grad_norm),
      table_(out_) {
  step_.set_gradient_reduction(world_gradient_reduction(r_.options));
}

LoopParts ClassificationObjective::parts() {
  return {r_.options, r_.config, *r_.model, *r_.optimizer, r_.state, r_.run, r_.fingerprint, r_.tokenizer_dir,
          r_.run_dir, r_.started};
}

std::vector<model::Batch> ClassificationObjective::step_batches(const std::vector<size_t>& step, int64_t) const {
  std::vector<model::Batch> micro;
  const World& w = world();
  if (w.size == 1) {
    micro.push_back(infer::build_batch(r_.train, step, r_.layout()));
    return micro;
  }
  // This rank's share of the global batch: balanced by tokens where batches are cut by tokens
  // or packed (the work follows the tokens), by examples otherwise.
  const bool by_tokens = r_.options.max_tokens_per_batch > 0 || r_.options.padding == infer::Padding::Packed;
  micro.push_back(rank_batch(step, by_tokens ? &r_.sampling_lengths : nullptr, r_.config.num_attention_heads,
                             [&](const std::vector<size_t>& ex) { return infer::build_batch(r_.train, ex, r_.layout()); }));
  return micro;
}

void ClassificationObjective::warn(TrainingLoop& loop, const std::string& message) {
  loop.progress().message(message);
  result_.warnings.push_back(message);
}

// A tokenizer that does not fit the text (e.g. a directory without tokenizer_config.json,
// which lower-cases and strips accents: every Hangul syllable becomes [UNK]) shows on the
// first batch already.
void ClassificationObjective::warn_if_unknown_tokens(TrainingLoop& loop) {
  const auto batches = r_.epoch_batches(r_.run.epoch_index);
  std::vector<std::vector<int32_t>> first;
  for (size_t i : batches.front()) first.push_back(r_.train.ids[i]);
  if (auto w = text::unk_warning(text::unk_rate(r_.tokenizer, first), r_.tokenizer_dir.string())) warn(loop, *w);
}

// After the loop's first writes: the warnings about the model and the tokenizer, the banner.
void ClassificationObjective::start(TrainingLoop& loop) {
  const TrainOptions& o = r_.options;
  if (!r_.unused.empty())
    warn(loop, "Some weights of the model checkpoint at " + o.model +
         " were not used when initializing " + r_.config.classifier_architecture(r_.config.is_token_classifier()) +
         ": [" + join(r_.unused) +
         "] (expected when the checkpoint was trained on another task, e.g. masked-LM pretraining)");
  warn_if_unknown_tokens(loop);
  const std::string newly_initialized = "Some weights of " +
      r_.config.classifier_architecture(r_.config.is_token_classifier()) +
      " were not initialized from the model checkpoint at " + o.model + " and are newly initialized";
  if (!r_.initialised.empty()) warn(loop, newly_initialized + ": [" + join(r_.initialised) + "]");
  if (!r_.mismatched.empty()) {
    std::string lines;
    for (const auto& l : r_.mismatched) lines += "\n" + l;
    warn(loop, newly_initialized + " because the shapes did not match:" + lines);
  }

  const model::BertConfig& c = r_.config;
  const std::string batching =
      std::string(o.group_by_length ? ", grouped by length" : "") +
      (o.max_tokens_per_batch > 0 ? ", batches of at most " + std::to_string(o.max_tokens_per_batch) + " real tokens"
                                  : std::string());
  std::fprintf(out_,
               "***** Running training *****\n"
               "  Num examples = %zu%s\n  Num Epochs = %g\n  Instantaneous batch size = %d\n"
               "  Total optimization steps = %lld\n  Warmup steps = %lld\n  Padding = %s%s\n"
               "  Model = %s (%d layers, hidden %d, %lld non-embedding parameters)%s\n",
               r_.train.size(), r_.have_eval ? (", eval " + std::to_string(r_.eval.size())).c_str() : "",
               r_.state.num_train_epochs, per_device_batch(o), static_cast<long long>(r_.state.max_steps),
               static_cast<long long>(r_.schedule.warmup_steps), padding_name(o.padding).c_str(),
               batching.c_str(), r_.model_description.c_str(), c.num_hidden_layers,
               c.hidden_size, static_cast<long long>(c.non_embedding_parameters()),
               r_.run_dir.resume_dir.empty() ? "" : ("\n  Resuming from " + r_.run_dir.resume_dir.string() + " at step " +
                                           std::to_string(r_.state.global_step)).c_str());
  print_compute(out_, o);
  print_world(out_, o.per_device_train_batch_size);
}

// An evaluation on the eval set: logged, tabled, checked for collapse. Returns the metric that
// picks the best model (and that early stopping watches), when there is one.
std::optional<double> ClassificationObjective::evaluate(TrainingLoop& loop) {
  const TrainOptions& o = r_.options;
  RunState& run = r_.run;
  const bool logits = loop.observer() && loop.observer()->wants_eval_logits();
  infer::EvalResult er = infer::evaluate(*r_.model, r_.eval, o.per_device_eval_batch_size, o.padding, o.max_length,
                                         r_.tokenizer.pad_id(), logits, /*sort_by_length=*/false, world_eval_shard());
  Json rec = er.record();
  if (!logits) loop.log_evaluation(rec, {}, {});
  else if (er.positions > 0) loop.log_evaluation(rec, er.logits, infer::padded_token_labels(r_.eval, er.positions), er.positions);
  else loop.log_evaluation(rec, er.logits, r_.eval.labels);
  rec = r_.state.log_history.back();  // with what the observer added (compute_metrics)
  const double train_loss = run.eval_loss_steps ? run.eval_loss_sum / run.eval_loss_steps : NAN;
  if (loop.progress().is_tty()) loop.progress().message("");
  table_.row(r_.state.epoch, r_.state.global_step, train_loss, rec, loop.seconds_since_start());
  run.eval_loss_sum = 0;
  run.eval_loss_steps = 0;
  if (er.metrics.kind == infer::MetricsKind::SingleLabel) {  // predicted classes to watch
    const std::string collapse = run.collapse.on_evaluate(er.metrics.accuracy, er.predictions, r_.config.num_labels());
    if (!collapse.empty()) warn(loop, collapse);
  }
  if (o.metric_for_best_model.empty()) return std::nullopt;
  return rec.at(o.metric_key()).get<double>();
}

// The best model (when asked for), saved as final/, evaluated, and tested once.
void ClassificationObjective::finish(TrainingLoop& loop) {
  model::BertModel& model = *r_.model;
  TrainerState& state = r_.state;
  const TrainOptions& o = r_.options;
  if (o.load_best_model_at_end && state.best_model_checkpoint) {
    std::fprintf(out_, "Loading best model from %s (%s = %.6g).\n", state.best_model_checkpoint->c_str(),
                 o.metric_key().c_str(), *state.best_metric);
    model.load_state_dict(io::read_safetensors(fs::path(*state.best_model_checkpoint) / "model.safetensors"),
                           o.seed);
  }
  result_.final_model_dir = fs::path(o.output_dir) / "final";
  if (world().writer()) {
    model::save_pretrained(result_.final_model_dir, r_.config, model.state_dict(),
                           text::tokenizer_files(r_.tokenizer_dir));
    state.save(fs::path(o.output_dir) / "trainer_state.json");
  }
  std::fprintf(out_, "Saved the final model to %s\n", result_.final_model_dir.c_str());

  const int32_t pad_id = r_.tokenizer.pad_id();
  if (r_.have_eval) {
    result_.final_eval = infer::evaluate(model, r_.eval, o.per_device_eval_batch_size, o.padding, o.max_length, pad_id,
                                         /*keep_logits=*/false, /*sort_by_length=*/false, world_eval_shard());
    std::fprintf(out_, "\n***** Final evaluation (%zu examples) *****\n%s", r_.eval.size(),
                 result_.final_eval->metrics.report().c_str());
  }
  if (!o.test_file.empty()) {
    infer::TokenizedData test =
        o.token_classification()
            ? infer::tokenize_tagged(r_.tagged_test, r_.tokenizer, o.max_length, infer::label_ids(r_.config))
            : infer::tokenize(r_.test_set, r_.tokenizer, o.max_length, o.threads);
    result_.test = infer::evaluate(model, test, o.per_device_eval_batch_size, o.padding, o.max_length, pad_id,
                                   /*keep_logits=*/false, /*sort_by_length=*/false, world_eval_shard());
    loop.log_record(result_.test->record("test_"));
    std::fprintf(out_, "\n***** Test (%s, %zu examples) *****\n%s", o.test_file.c_str(), test.size(),
                 result_.test->metrics.report().c_str());
  }
}

TrainResult run_training(const TrainOptions& options, std::FILE* out, LoopObserver* observer) {
  TrainOptions o = options;
  join_world(o, o.to_json().dump());
  ClassificationObjective objective(prepare_run(o), out);
  TrainResult& result = objective.result();
  TrainingLoop loop(objective, out);
  loop.set_observer(observer);
  result.summary = loop.run();
  result.state = objective.prepared().state;
  return std::move(result);
}

}  // namespace bertune::train
