#pragma once
// BertConfig as Hugging Face writes it in config.json. Unknown fields are
// kept verbatim so a config round-trips through bertune unchanged.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bertune::model {

// Hugging Face's problem_type: what a sequence classifier's loss reads.
//   Regression    MSE of the logits against float labels (num_labels 1: one score)
//   SingleLabel   cross-entropy against one integer label per sequence
//   MultiLabel    BCE-with-logits against a float 0/1 vector of num_labels per sequence
// Unset (config.json has none): HF decides at the first loss, num_labels 1 -> Regression,
// integer labels -> SingleLabel, otherwise MultiLabel (BertModel::forward does the same).
enum class ProblemType { Unset, Regression, SingleLabel, MultiLabel };
// "regression" | "single_label_classification" | "multi_label_classification"; Error naming
// the choices otherwise.
ProblemType parse_problem_type(const std::string& name);
const char* problem_type_name(ProblemType t);  // "" for Unset

// The model family, from config.json's model_type: whose names the tensors carry
// (model/layout.h) and which classification head sits on the encoder (model/heads.h). One
// post-LN encoder computes all of them; they differ around it:
//   Bert        "bert"         pooler (tanh dense on [CLS]) + classifier
//   Roberta     "roberta"      position ids from pad_token_id + 1 over real tokens, token type 0
//                              throughout; classifier.dense + tanh + classifier.out_proj on <s>
//   XlmRoberta  "xlm-roberta"  RoBERTa's model under XLM-R's class names
//   Electra     "electra"      embeddings of embedding_size, projected to hidden_size when they
//                              differ; classifier.dense + GELU + classifier.out_proj on [CLS]
//   DistilBert  "distilbert"   its own config fields (dim, n_layers, ...) and tensor names, no
//                              token types; pre_classifier + ReLU + classifier on [CLS]
enum class Family { Bert, Roberta, XlmRoberta, Electra, DistilBert };
// model_type -> Family; Error naming the supported ones otherwise.
Family parse_family(const std::string& model_type);
const char* family_model_type(Family f);

struct BertConfig {
  Family family = Family::Bert;
  int vocab_size = 30522;
  int hidden_size = 768;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int intermediate_size = 3072;
  std::string hidden_act = "gelu";  // erf form; the only one supported
  float hidden_dropout_prob = 0.1f;
  float attention_probs_dropout_prob = 0.1f;
  int max_position_embeddings = 512;
  int type_vocab_size = 2;  // DistilBERT: 0, no token-type table
  int embedding_size = 0;   // ELECTRA's embedding width (0: hidden_size)
  float initializer_range = 0.02f;
  float layer_norm_eps = 1e-12f;
  int pad_token_id = 0;
  float classifier_dropout = -1.f;  // < 0: null, use hidden_dropout_prob
  std::vector<std::string> architectures;
  std::map<int, std::string> id2label;  // empty: num_labels 2, LABEL_i
  ProblemType problem_type = ProblemType::Unset;  // written back when set

  nlohmann::json extra = nlohmann::json::object();  // fields we do not interpret

  int num_labels() const { return id2label.empty() ? 2 : static_cast<int>(id2label.size()); }
  std::string label_name(int id) const;  // id2label's name, else LABEL_<id>
  // problem_type, or when unset what HF decides for labels read from a file: num_labels 1 ->
  // Regression, else SingleLabel (integer classes).
  ProblemType resolved_problem_type() const;
  int head_dim() const { return hidden_size / num_attention_heads; }
  int embedding_width() const { return embedding_size > 0 ? embedding_size : hidden_size; }
  bool roberta_like() const { return family == Family::Roberta || family == Family::XlmRoberta; }
  // The model reads token_type_ids (BERT, ELECTRA); RoBERTa's one type and DistilBERT's none
  // make every token type 0 (a sentence pair's second text included).
  bool reads_token_types() const { return family == Family::Bert || family == Family::Electra; }
  // Position id of a sequence's first token (RoBERTa: pad_token_id + 1), and so the longest
  // sequence the position table encodes.
  int position_offset() const { return roberta_like() ? pad_token_id + 1 : 0; }
  int max_sequence_length() const { return max_position_embeddings - position_offset(); }
  // HF's class of this family's sequence classifier ("BertForSequenceClassification", ...),
  // or with per_token its token classifier ("RobertaForTokenClassification", ...).
  std::string classifier_architecture(bool per_token = false) const;
  // architectures names a token classifier (<Family>ForTokenClassification).
  bool is_token_classifier() const;
  void set_num_labels(int n);  // id2label = LABEL_0..LABEL_{n-1}
  // Parameters outside the embedding tables, with a classification head:
  // what HF's FLOP estimate (6 x tokens x params) counts.
  long long non_embedding_parameters() const;

  static BertConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");
  static BertConfig load(const std::filesystem::path& path);  // file or HF directory
  nlohmann::json to_json() const;
  void save(const std::filesystem::path& path) const;  // atomic
};

// A --max-length the model's positions cannot encode: Error "--max-length N exceeds the model's
// max_position_embeddings (P[, where])" (RoBERTa: "... the model's longest sequence, L = ...").
void require_max_length_fits(int max_length, const BertConfig& config, const std::string& where = {});

// Why a sentence pair does not fit the model, or "" when it does: a family that reads token types
// (BERT, ELECTRA) needs type 1 for the second text ("<model> has type_vocab_size 1, no token type
// for a pair's second text"); RoBERTa and DistilBERT read none (type 0 throughout).
std::string pair_token_type_problem(const BertConfig& config, const std::string& model = "the model");
// The same as Error "--text-pair-column: <problem>".
void require_pair_token_type(const BertConfig& config, const std::string& model = "the model");

}  // namespace bertune::model
