// bertune_state.json (what a resume reads beside trainer_state.json) from arbitrary bytes,
// through the code a resume runs (train/run_state.cc): the fingerprint check, every field,
// the cross-check against trainer_state.json's global_step and the data position, and the
// collapse detector continuing from the loaded history. An accepted state must also
// survive to_json -> from_json unchanged.
//
// Seeds (fuzz/seeds/bertune_state):
// bertune_state.json of real checkpoints, made with the tiny
// config of tests/test_trainer.cc (`{"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
// "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}`):
//
// - train_checkpoint-N.json: `bertune train --model-config tiny.json --train-file tests/fixtures/data/good.tsv
//   --eval-file tests/fixtures/data/good.tsv --max-length 32 --per-device-train-batch-size 2 --num-train-epochs 2
//   --save-strategy steps --save-steps 1 --eval-strategy steps --eval-steps 2 --logging-steps 1` (the fingerprint
//   fuzz_bertune_state.cc checks against);
// - pretrain_checkpoint-2.json: `bertune pretrain --model-config tiny.json --train-file <120 NSMC train lines>
//   --validation-reviews 10 --max-length 32 --per-device-train-batch-size 4 --max-steps 3 --save-strategy steps
//   --save-steps 2` (another fingerprint: reaches the fields through RunState::from_json only).
#include <cstdlib>

#include "fuzz_common.h"
#include "io/json_error.h"
#include "train/run_state.h"

namespace {

using bertune::train::RunState;
using Json = nlohmann::json;

// The fingerprint of the run that made fuzz/seeds/bertune_state/train_checkpoint-*.json: seeds that keep it reach the fields through read_run_state.
const Json& seed_fingerprint() {
  static const Json f = Json::parse(R"({"data_seed":42,"group_by_length":false,"max_length":32,
    "padding":"packed","per_device_train_batch_size":2,"seed":42,"train_examples":5})");
  return f;
}

void exercise(const std::filesystem::path& dir, const RunState& r) {
  // Round trip: what from_json accepted, to_json must write back the same.
  if (RunState::from_json(r.to_json(), "round trip").to_json() != r.to_json()) std::abort();
  bertune::train::TrainerState state;
  if (__builtin_add_overflow(r.optimizer_steps, r.skipped_steps, &state.global_step)) state.global_step = -1;
  for (int64_t steps_per_epoch : {int64_t{1}, int64_t{3}, r.batch_in_epoch + 1, int64_t{1} << 62}) {
    try {
      bertune::train::check_resume_consistent(dir, state, r, steps_per_epoch);
    } catch (const bertune::Error&) {
    }
  }
  RunState resumed = r;
  resumed.collapse.on_evaluate(0.5, {0, 1, 1}, 2);
  resumed.collapse.on_evaluate(0.5, {0, 1, 1}, 2);
  (void)resumed.tokens.padding_fraction();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = [] {
    auto d = bertune::fuzz::scratch_dir() / "checkpoint-4";
    std::filesystem::create_directories(d);
    return d;
  }();
  BERTUNE_FUZZ_BODY({
    {
      std::ofstream out(dir / "bertune_state.json", std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
      exercise(dir, bertune::train::read_run_state(dir, seed_fingerprint()));
    } catch (const bertune::Error&) {
    }
    // The fields whatever fingerprint the bytes carry.
    const Json j = bertune::io::read_json_file(dir / "bertune_state.json");
    exercise(dir, RunState::from_json(j, "bertune_state.json"));
  })
}
