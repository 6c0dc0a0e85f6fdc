// The memory estimate before a model is built (model/footprint.h) against what a built model
// really allocates; the memory budget and its refusal (util/limits.h); the run-length plan
// (train/options.h) and rotation over one run's checkpoints (train/state.h).
#include <gtest/gtest.h>

#include <stdlib.h>


#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "model/bert.h"
#include "model/footprint.h"
#include "train/options.h"
#include "train/run_dir.h"
#include "train/state.h"
#include "util/error.h"
#include "util/limits.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

model::BertConfig small_config() {
  model::BertConfig c;
  c.vocab_size = 500;
  c.hidden_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.intermediate_size = 48;
  c.max_position_embeddings = 64;
  c.set_num_labels(3);
  return c;
}

// Sequences of the given lengths; per-token tasks label every third row.
model::Batch batch_of(const std::vector<int>& lengths, model::Task task, int num_labels) {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int32_t> labels;
  for (size_t s = 0; s < lengths.size(); ++s) {
    seqs.emplace_back();
    for (int t = 0; t < lengths[s]; ++t) {
      seqs.back().push_back(static_cast<int32_t>(5 + (s * 7 + t) % 400));
      if (task != model::Task::SequenceClassification) labels.push_back(t % 3 == 0 ? t % num_labels : -100);
    }
    if (task == model::Task::SequenceClassification) labels.push_back(static_cast<int32_t>(s % num_labels));
  }
  return model::Batch::packed(seqs, labels);
}

model::BatchShape shape_of(const model::Batch& b, const model::BertConfig& c, model::Task task) {
  model::BatchShape s;
  s.sequences = b.num_sequences();
  s.rows = b.num_rows();
  for (int32_t len : b.lengths) s.prob_entries += int64_t(c.num_attention_heads) * len * len;
  s.logit_rows = s.sequences;
  if (task != model::Task::SequenceClassification) {
    s.logit_rows = 0;
    for (int32_t l : b.labels) s.logit_rows += l != -100;
  }
  return s;
}

}  // namespace

// The same for each family's classifier: ELECTRA's embeddings of width 16 and 48 (narrower and
// wider than hidden 32, projected), RoBERTa's and ELECTRA's dropout before the head's dense.
TEST(Footprint, EstimateIsTheModelsArenaForEveryFamily) {
  for (auto [family, embedding] : {std::pair{model::Family::Roberta, 0}, std::pair{model::Family::Electra, 16},
                                   std::pair{model::Family::Electra, 48}, std::pair{model::Family::DistilBert, 0}}) {
    model::BertConfig c = small_config();
    c.family = family;
    c.embedding_size = embedding;
    c.type_vocab_size = family == model::Family::DistilBert ? 0 : c.type_vocab_size;
    for (bool train : {true, false}) {
      model::BertModel m(c, model::Task::SequenceClassification, kernels::Device::CPU, model::Init::Random);
      const model::Batch b = batch_of({7, 19, 3, 12}, model::Task::SequenceClassification, 3);
      m.forward(b, train);
      if (train) m.backward();  // the wider embeddings' gradients fit their buffers
      EXPECT_EQ(model::activation_bytes(c, model::Task::SequenceClassification,
                                        shape_of(b, c, model::Task::SequenceClassification), train, train),
                m.activation_bytes())
          << model::family_model_type(family) << " embedding " << embedding << " train " << train;
    }
  }
}

// The estimate is BertModel's own arena, byte for byte, for every head, in training and
// inference, with the last layer on every row or on the [CLS] rows only.
TEST(Footprint, EstimateIsTheModelsArena) {
  const model::BertConfig c = small_config();
  for (model::Task task : {model::Task::SequenceClassification, model::Task::MaskedLM,
                           model::Task::ReplacedTokenDetection}) {
    const int C = task == model::Task::SequenceClassification ? 3 : task == model::Task::MaskedLM ? c.vocab_size : 2;
    for (bool train : {true, false}) {
      for (bool cls_only : {false, true}) {
        model::BertModel m(c, task, kernels::Device::CPU, model::Init::Random);
        m.set_last_layer_cls_only(cls_only);
        const model::Batch b = batch_of({7, 19, 3, 12}, task, C);
        m.forward(b, train);
        const bool compact = cls_only && train && task == model::Task::SequenceClassification;
        EXPECT_EQ(model::activation_bytes(c, task, shape_of(b, c, task), train, compact), m.activation_bytes())
            << "task " << static_cast<int>(task) << " train " << train << " cls_only " << cls_only;
      }
    }
    model::BertModel m(c, task, kernels::Device::CPU, model::Init::Zeros);
    EXPECT_EQ(model::parameter_bytes(c, task), m.num_params() * sizeof(float));
  }
  const model::BatchShape u = model::uniform_batch(c, model::Task::SequenceClassification, 8, 64);
  EXPECT_EQ(u.rows, 512);
  EXPECT_EQ(u.prob_entries, 8 * 4 * 64 * 64);
  EXPECT_EQ(u.logit_rows, 8);
  model::BatchShape absurd = u;
  absurd.rows = int64_t{1} << 40;
  EXPECT_EQ(model::activation_bytes(c, model::Task::MaskedLM, absurd, true, false),
            std::numeric_limits<uint64_t>::max());
}

TEST(MemoryBudget, CapAndRefusal) {
  const MemoryCap cap("2GiB");
  const util::MemoryBudget b = util::available_memory();
  ASSERT_EQ(b.source, "BERTUNE_MAX_MEMORY=2GiB");
  EXPECT_GT(b.in_use, 0u);
  EXPECT_EQ(b.limit, uint64_t{2} << 30);
  EXPECT_EQ(b.bytes, b.in_use < b.limit ? b.limit - b.in_use : 0);
  util::MemoryNeed small, big;
  small.add("a little", 1 << 10, "nothing");
  EXPECT_NO_THROW(util::require_memory(small, "test"));
  big.add("parameters", uint64_t{3} << 30, "a smaller model");
  big.add("activations", uint64_t{1} << 30, "lower --per-device-train-batch-size");
  {
    const std::string m = error_of([&] { util::require_memory(big, "train"); });
    EXPECT_EQ(m.rfind("train: needs about 4.", 0), 0u) << m;
    EXPECT_NE(m.find(" GiB of memory (parameters 3.0 GiB, activations 1.0 GiB, "), std::string::npos) << m;
    EXPECT_NE(m.find(" MiB in use already), more than "), std::string::npos) << m;
    EXPECT_NE(m.find("more than the 2.0 GiB it can have (BERTUNE_MAX_MEMORY=2GiB); to fit, a smaller model"),
              std::string::npos)
        << m;
  }
  for (const char* bad : {"lots", "-1G", "12Q", "0"}) {
    cap.set(bad);
    EXPECT_THROW(util::available_memory(), Error) << bad;
  }
  for (auto [text, bytes] : {std::pair{"2G", uint64_t{2} << 30}, {"1.5 GiB", uint64_t{3} << 29}, {"4096", 4096}}) {
    cap.set(text);
    const util::MemoryBudget m = util::available_memory();
    ASSERT_EQ(m.source, "BERTUNE_MAX_MEMORY=" + std::string(text));
    EXPECT_EQ(m.limit, bytes) << text;
  }
}

TEST(MemoryBudget, TheMachinesLimitIsKnown) {
  const util::MemoryBudget machine = util::available_memory();
  EXPECT_FALSE(machine.source.empty());
  EXPECT_GE(machine.limit, machine.in_use);
  EXPECT_EQ(util::format_bytes(512u << 20), "512 MiB");
  EXPECT_EQ(util::format_bytes(uint64_t{27} << 29), "13.5 GiB");
}

// Trainer's step count, fractional epochs included; counts beyond the limit name the flag.
TEST(RunLengthPlan, FractionalEpochsAndTheLimit) {
  train::TrainOptions o;
  o.num_train_epochs = 0.5;
  o.warmup_ratio = 0.1;
  train::RunLength r = train::plan_run_length(o, 25);
  EXPECT_EQ(r.max_steps, 13);
  EXPECT_EQ(r.num_train_epochs, 1);
  EXPECT_EQ(r.warmup_steps, 2);
  o.max_steps = 60;
  r = train::plan_run_length(o, 25);
  EXPECT_EQ(r.max_steps, 60);
  EXPECT_EQ(r.num_train_epochs, 3);
  o.max_steps = -1;
  o.num_train_epochs = 1e11;
  EXPECT_EQ(error_of([&] { train::plan_run_length(o, 25); }),
            "--num-train-epochs 1e+11: 1e+11 epochs x 25 steps per epoch = 2.5e+12 optimization steps, more "
            "than the limit of 1000000000000; lower --num-train-epochs or give --max-steps");
  auto options_error = [](nlohmann::json j) {
    j.update({{"model_config", "c.json"}, {"output_dir", "o"}});
    return error_of([&] { train::train_options_from_json(j); });
  };
  EXPECT_EQ(options_error({{"num_train_epochs", 1e300}}),
            "--num-train-epochs 1e+300: more epochs than the limit (1000000000000 optimization steps); an epoch is "
            "at least one step");
  EXPECT_EQ(options_error({{"num_train_epochs", 1e300}, {"max_steps", 10}}), "");  // --max-steps decides
  EXPECT_EQ(options_error({{"max_steps", 2000000000000}}),
            "--max-steps 2000000000000: more than the limit (1000000000000 optimization steps)");
  EXPECT_EQ(options_error({{"warmup_steps", 2000000000000}}),
            "--warmup-steps 2000000000000: more than the limit (1000000000000 optimization steps)");
  train::TrainOptions nan_epochs;
  nan_epochs.model_config = "c.json";
  nan_epochs.output_dir = "o";
  nan_epochs.num_train_epochs = std::nan("");
  EXPECT_THROW(train::validate(nan_epochs), Error);
}

// Rotation counts and deletes the run's own checkpoints (and those from before run ids) only.
TEST(RunDirRotation, OnlyTheRunsOwnCheckpoints) {
  const TempDir tmp("rotation");
  const fs::path out = tmp.path;
  auto make = [&](int step, const std::string& run) {
    const fs::path c = out / ("checkpoint-" + std::to_string(step));
    fs::create_directories(c);
    if (run != "none") io::write_file_atomic(c / "bertune_state.json", nlohmann::json{{"run_id", run}}.dump());
  };
  make(1, "none");
  make(2, "mine");
  make(80, "stale");
  make(84, "stale");
  make(3, "mine");
  make(4, "mine");
  const auto deleted = train::rotate_checkpoints(out, 2, std::nullopt,
                                                 [](const fs::path& c) { return train::checkpoint_of_run(c, "mine"); });
  ASSERT_EQ(deleted.size(), 2u);
  EXPECT_EQ(deleted[0].filename(), "checkpoint-1");
  EXPECT_EQ(deleted[1].filename(), "checkpoint-2");
  for (const char* kept : {"checkpoint-3", "checkpoint-4", "checkpoint-80", "checkpoint-84"})
    EXPECT_TRUE(fs::exists(out / kept)) << kept;
  EXPECT_EQ(train::checkpoint_run_id(out / "checkpoint-84"), "stale");
  EXPECT_EQ(train::checkpoint_run_id(out / "checkpoint-1"), "");
}
