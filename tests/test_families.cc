// RoBERTa, ELECTRA and DistilBERT sequence classifiers against Hugging Face
// (shared/golden/families/{roberta,electra,distilbert}_seqcls, transformers 4.30.2): forward,
// every hidden state, loss and gradients packed, padded and with the [CLS]-only last layer;
// three AdamW steps of the trainer; the tensors each family names.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "golden_bert.h"
#include "model/bert.h"
#include "model/layout.h"
#include "train/optimizer.h"
#include "util/error.h"

using namespace bertune;
using model::Batch;
using model::BertModel;
using model::Task;
using namespace golden_bert;

namespace {

constexpr const char* kFamilies[] = {"roberta_seqcls", "electra_seqcls", "distilbert_seqcls"};

void expect_family_case(const char* name) {
  SCOPED_TRACE(name);
  expect_sequence_case(kernels::Device::CPU, family_inputs(name));
}

// Weights <= 1e-5; elements whose gradient is within 10x Adam's eps of zero (DistilBERT's
// ffn.lin1 has one of 7e-9) follow the gradient's rounding: noise bound.
void expect_family_adamw(const char* name) {
  SCOPED_TRACE(name);
  expect_three_adamw_steps(kernels::Device::CPU, family_inputs(name), train::AdamWVariant::Torch, "adamw.json",
                           "after_adamw.safetensors", 1e-5f, 5e-5f, /*tiny_grad=*/1e-7f);
}

}  // namespace

TEST(FamilyGolden, RobertaMatchesHuggingFace) { expect_family_case("roberta_seqcls"); }
TEST(FamilyGolden, RobertaThreeAdamWSteps) { expect_family_adamw("roberta_seqcls"); }
TEST(FamilyGolden, DistilBertMatchesHuggingFace) { expect_family_case("distilbert_seqcls"); }
TEST(FamilyGolden, DistilBertThreeAdamWSteps) { expect_family_adamw("distilbert_seqcls"); }
TEST(FamilyGolden, ElectraMatchesHuggingFace) { expect_family_case("electra_seqcls"); }
TEST(FamilyGolden, ElectraThreeAdamWSteps) { expect_family_adamw("electra_seqcls"); }

// The model's tensors are exactly the HF state_dict's: none missing, none extra (so a saved
// directory loads in transformers without a missing or unexpected key).
TEST(FamilyGolden, TensorNamesAreHuggingFaces) {
  for (const char* name : kFamilies) {
    const Golden g = family_inputs(name);
    BertModel m(g.config, Task::SequenceClassification, kernels::Device::CPU, model::Init::Zeros);
    const TensorMap init = g.tensors("init.safetensors");
    auto report = m.load_state_dict(init);
    EXPECT_TRUE(report.initialised.empty()) << name;
    EXPECT_TRUE(report.unused.empty()) << name << ": " << (report.unused.empty() ? "" : report.unused.front());
    std::set<std::string> ours, theirs;
    for (const auto& t : m.state_dict()) ours.insert(t.name);
    for (const auto& [tensor, t] : init) theirs.insert(tensor);
    EXPECT_EQ(ours, theirs) << name;
  }
}

// RoBERTa's positions count real tokens from pad_token_id + 1: a padded row's position is the
// pad's, and a sequence that would need a position past the table is refused by name.
TEST(FamilyGolden, RobertaPositionsStartAfterThePad) {
  const Golden g = family_inputs("roberta_seqcls");
  BertModel m(g.config, Task::SequenceClassification);
  std::vector<int32_t> longest(64, 5), too_long(65, 5);
  EXPECT_NO_THROW(m.forward(Batch::packed({longest}), false));
  try {
    m.forward(Batch::packed({too_long}), false);
    ADD_FAILURE() << "65 tokens accepted with 66 positions from 2";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "forward: sequence 0 spans 65 tokens, max_position_embeddings is 66 (positions from 2)");
  }
}

// Token types: RoBERTa and DistilBERT read none (a pair's second segment is type 0, as their
// tokenizers give it); ELECTRA reads them like BERT.
TEST(FamilyGolden, TokenTypesOnlyWhereTheFamilyHasThem) {
  for (const char* name : kFamilies) {
    const Golden g = family_inputs(name);
    BertModel m(g.config, Task::SequenceClassification);
    m.load_state_dict(g.tensors("init.safetensors"));
    Batch plain = g.batch(-1, false), typed = plain;
    typed.token_type_ids.assign(typed.input_ids.size(), 0);
    for (int s = 0; s < typed.num_sequences(); ++s) typed.token_type_ids[typed.offsets[s] + 1] = 1;
    m.forward(plain, false);
    const std::vector<float> a(m.logits(), m.logits() + m.logits_rows() * m.logits_cols());
    m.forward(typed, false);
    const float diff = max_abs_diff(a.data(), m.logits(), a.size());
    if (g.config.reads_token_types())
      EXPECT_GT(diff, 1e-4f) << name;
    else
      EXPECT_EQ(diff, 0.f) << name;
  }
}

// Pretraining objectives are BERT's: another family refuses them by name.
TEST(FamilyGolden, OtherFamiliesRefusePretrainingHeads) {
  const Golden g = family_inputs("roberta_seqcls");
  try {
    BertModel m(g.config, Task::MaskedLM);
    ADD_FAILURE() << "a RoBERTa masked LM was built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model_type \"roberta\": only sequence and token classification"), std::string::npos)
        << e.what();
  }
}

// XLM-R is RoBERTa under other class names: the same logits, its own model_type and architectures.
TEST(FamilyGolden, XlmRobertaIsRobertasModel) {
  Golden g = family_inputs("roberta_seqcls");
  nlohmann::json j = g.config.to_json();
  j["model_type"] = "xlm-roberta";
  const model::BertConfig xlmr = model::BertConfig::from_json(j);
  EXPECT_EQ(xlmr.family, model::Family::XlmRoberta);
  EXPECT_EQ(xlmr.classifier_architecture(), "XLMRobertaForSequenceClassification");
  EXPECT_EQ(xlmr.to_json()["model_type"], "xlm-roberta");
  BertModel m(xlmr, Task::SequenceClassification);
  EXPECT_TRUE(m.load_state_dict(g.tensors("init.safetensors")).unused.empty());
  m.forward(g.batch(-1, false), false);
  const TensorMap forward = g.tensors("forward.safetensors");
  const auto& logits = forward.at("logits");
  EXPECT_LE(max_abs_diff(m.logits(), logits.data.data(), logits.data.size()), 1e-4f);
}
