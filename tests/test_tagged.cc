// Token classification data: the CoNLL-column and JSONL readers, the word-piece alignment of
// labels, per-token batches, and the entity counting against seqeval's results.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "data/stats.h"
#include "data/tagged.h"
#include "infer/batching.h"
#include "infer/entities.h"
#include "infer/metrics.h"
#include "infer/tagged.h"
#include "model/config.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/paths.h"

using namespace bertune;
using Tags = std::vector<std::vector<std::string>>;

namespace {

std::string error_of(const std::string& contents, const std::string& name) {
  try {
    data::parse_tagged(contents, name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

text::Tokenizer tiny_tokenizer() {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "kim", "lives", "in",
                                    "seoul", "##ite", "(", "32", ")", "sp"};
  text::BasicTokenizerOptions o;
  o.do_lower_case = true;
  return text::Tokenizer::from_vocab(vocab, o);
}

model::BertConfig tag_config() {
  model::BertConfig c;
  c.id2label = {{0, "B-LC"}, {1, "B-PS"}, {2, "I-PS"}, {3, "O"}};
  return c;
}

}  // namespace

TEST(TaggedData, ColumnsWithCommentsSpaceTokensAndBothSeparators) {
  const std::string text =
      "\xEF\xBB\xBF## a comment\n## klue-ner-1\t<kim:PS>\nk\tB-PS\n \tO\ni\tI-PS\r\n\n\n"
      "Seoul  B-LC\nis O\n";
  data::TaggedDataset d = data::parse_tagged(text, "ner.tsv");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d.sentences[0].tokens, (std::vector<std::string>{"k", " ", "i"}));
  EXPECT_EQ(d.sentences[0].tags, (std::vector<std::string>{"B-PS", "O", "I-PS"}));
  EXPECT_EQ(d.sentences[0].lines, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(d.sentences[1].tokens, (std::vector<std::string>{"Seoul", "is"}));
  EXPECT_EQ(d.sentences[1].tags, (std::vector<std::string>{"B-LC", "O"}));
  EXPECT_EQ(data::tag_set(d), (std::vector<std::string>{"B-LC", "B-PS", "I-PS", "O"}));
}

// CoNLL-2003's four columns (token, part of speech, chunk, tag): the first is the token, the last
// the tag, tab- or space-separated; a middle column with spaces is a table of texts, refused.
TEST(TaggedData, ColumnsBeyondTwoGiveTheFirstAsTokenAndTheLastAsTag) {
  data::TaggedDataset d = data::parse_tagged(
      "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n \tSP\tO\nKim\tNNP\tB-PER\n-DOCSTART- -X- O\n",
      "conll.txt");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d.sentences[0].tokens, (std::vector<std::string>{"EU", "rejects"}));
  EXPECT_EQ(d.sentences[0].tags, (std::vector<std::string>{"B-ORG", "O"}));
  EXPECT_EQ(d.sentences[1].tokens, (std::vector<std::string>{" ", "Kim"}));
  EXPECT_EQ(d.sentences[1].tags, (std::vector<std::string>{"O", "B-PER"}));
  EXPECT_EQ(error_of("id\tdocument\tlabel\n9976970\t아 더빙.. 진짜 짜증나네요 목소리\t0\n", "ratings.tsv"),
            "ratings.tsv:2: a middle column holds text with spaces ('아 더빙.. 진짜 짜증나네요 목... (45 bytes)'): a tagged "
            "file has a token and its tag per line (is this a table of texts?)");
}

// A sentence ends at a blank line; a file without any reads as one sentence, refused past
// kMaxSentenceTokens naming where it began.
TEST(TaggedData, ASentenceOfMoreThanTheLimitIsAnError) {
  std::string lines;
  for (size_t i = 0; i < data::kMaxSentenceTokens; ++i) lines += "w\tO\n";
  EXPECT_EQ(data::parse_tagged("x\tO\n\n" + lines, "ner.tsv").sentences[1].tokens.size(), data::kMaxSentenceTokens);
  EXPECT_EQ(error_of("x\tO\n\n" + lines + "w\tO\n", "ner.tsv"),
            "ner.tsv:" + std::to_string(data::kMaxSentenceTokens + 3) + ": a sentence of more than " +
                std::to_string(data::kMaxSentenceTokens) + " tokens (from line 3): a blank line ends each sentence of a "
                "tagged file");
}

TEST(TaggedData, JsonlSentences) {
  data::TaggedDataset d = data::parse_tagged(
      "{\"tokens\": [\"Kim\", \"lives\"], \"tags\": [\"B-PS\", \"O\"]}\n\n{\"tokens\": [\"x\"], \"tags\": [\"O\"]}\n",
      "ner.jsonl");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d.sentences[1].lines, (std::vector<int64_t>{3}));
  EXPECT_EQ(d.sentences[0].tags, (std::vector<std::string>{"B-PS", "O"}));
}

TEST(TaggedData, BadLinesNameFileAndLine) {
  EXPECT_EQ(error_of("a\tO\nnotag\n", "x.tsv"), "x.tsv:2: a token and its tag separated by a tab or a space, got 'notag'");
  EXPECT_EQ(error_of("a\tO\n\tO\n", "x.tsv"), "x.tsv:2: empty token");
  EXPECT_EQ(error_of("a\t\n", "x.tsv"), "x.tsv:1: bad tag ''");
  EXPECT_EQ(error_of("a\t\xff\n", "x.tsv").rfind("x.tsv:1: invalid UTF-8", 0), 0u);
  EXPECT_EQ(error_of("{\"tokens\": [\"a\"]}\n{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n", "x.jsonl"),
            "x.jsonl:2: 1 tags for 2 tokens");
  EXPECT_EQ(error_of("{\"tags\": [\"O\"]}\n", "x.jsonl"), "x.jsonl:1: no \"tokens\"");
  EXPECT_EQ(error_of("[1]\n", "x.jsonl"), "x.jsonl:1: not a JSON object");
}

// The first piece of a word carries its label, the rest -100; a space word gives no piece;
// a word the basic tokenizer splits ("(32)") is one word.
TEST(TaggedData, AlignmentLabelsTheFirstPieceOfEachWord) {
  data::TaggedDataset d =
      data::parse_tagged("Kim\tB-PS\n \tO\nkimite\tI-PS\n(32)\tO\nseoul\tB-LC\n", "ner.tsv");
  const auto tok = tiny_tokenizer();
  const auto config = tag_config();
  infer::TokenizedData t = infer::tokenize_tagged(d, tok, 128, infer::label_ids(config));
  ASSERT_EQ(t.size(), 1u);
  // [CLS] kim kim ##ite ( 32 ) seoul [SEP]
  EXPECT_EQ(t.ids[0], (std::vector<int32_t>{2, 5, 5, 9, 10, 11, 12, 8, 3}));
  EXPECT_EQ(t.token_labels[0], (std::vector<int32_t>{-100, 1, 2, -100, 3, -100, -100, 0, -100}));
  EXPECT_TRUE(t.labelled());
  EXPECT_EQ(infer::labelled_tags(t.token_labels[0], config), (std::vector<std::string>{"B-PS", "I-PS", "O", "B-LC"}));
  // Truncation keeps [CLS] + 4 pieces + [SEP].
  infer::TokenizedData cut = infer::tokenize_tagged(d, tok, 6, infer::label_ids(config));
  EXPECT_EQ(cut.ids[0], (std::vector<int32_t>{2, 5, 5, 9, 10, 3}));
  EXPECT_EQ(cut.token_labels[0], (std::vector<int32_t>{-100, 1, 2, -100, 3, -100}));
  // An unknown tag names the line.
  data::TaggedDataset bad = data::parse_tagged("Kim\tB-PS\nx\tB-XX\n", "eval.tsv");
  try {
    infer::tokenize_tagged(bad, tok, 128, infer::label_ids(config));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "eval.tsv:2: tag 'B-XX' is not a label of the model (B-LC, B-PS, I-PS, O)");
  }
}

TEST(TaggedData, BatchesCarryALabelPerRowAndMinus100OnPads) {
  data::TaggedDataset d = data::parse_tagged("Kim\tB-PS\n\nseoul\tB-LC\nin\tO\n", "ner.tsv");
  infer::TokenizedData t = infer::tokenize_tagged(d, tiny_tokenizer(), 128, infer::label_ids(tag_config()));
  model::Batch b = infer::build_batch(t, {0, 1}, {infer::Padding::Longest, 128, 0});
  EXPECT_EQ(b.labels, (std::vector<int32_t>{-100, 1, -100, -100, -100, 0, 3, -100}));
  model::Batch packed = infer::build_batch(t, {1, 0}, {infer::Padding::Packed, 128, 0});
  EXPECT_EQ(packed.labels, (std::vector<int32_t>{-100, 0, 3, -100, -100, 1, -100}));
}

// seqeval 1.2.2 get_entities, default mode.
TEST(EntityMetrics, EntitiesAsSeqevalFindsThem) {
  using E = infer::Entity;
  EXPECT_EQ(infer::iob2_entities({{"B-PER", "I-PER", "O", "B-LOC"}}),
            (std::vector<E>{{"PER", 0, 1}, {"LOC", 3, 3}}));
  // An I- after O starts an entity; an I- of another type starts a new one.
  EXPECT_EQ(infer::iob2_entities({{"O", "I-PER", "I-PER", "I-LOC", "B-LOC", "I-LOC"}}),
            (std::vector<E>{{"PER", 1, 2}, {"LOC", 3, 3}, {"LOC", 4, 5}}));
  // Sequences are joined with an O between them: an entity at the end of one does not run on.
  EXPECT_EQ(infer::iob2_entities({{"O", "B-PER"}, {"I-PER", "O"}}), (std::vector<E>{{"PER", 1, 1}, {"PER", 3, 3}}));
}

// seqeval's README example: f1 0.5, precision 0.5, recall 0.5, accuracy 0.8.
TEST(EntityMetrics, SeqevalReadmeExample) {
  const Tags truth = {{"O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"}, {"B-PER", "I-PER", "O"}};
  const Tags pred = {{"O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"}, {"B-PER", "I-PER", "O"}};
  infer::ClassificationMetrics m = infer::entity_metrics(pred, truth);
  EXPECT_DOUBLE_EQ(m.entity_precision, 0.5);
  EXPECT_DOUBLE_EQ(m.entity_recall, 0.5);
  EXPECT_DOUBLE_EQ(m.entity_f1, 0.5);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.8);
  EXPECT_EQ(m.count, 2);  // sentences
  const auto j = m.to_json();
  EXPECT_DOUBLE_EQ(j.at("eval_f1").get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j.at("eval_precision").get<double>(), 0.5);
  EXPECT_EQ(infer::metric_names(infer::MetricsKind::Entities),
            (std::vector<std::string>{"loss", "precision", "recall", "f1", "accuracy"}));
}

// Hand-worked: truth PER(0-1), LOC(3), ORG(5-6); predicted PER(0-1) right, LOC(3) with an
// I-ORG after it (a second, wrong entity ORG(4)), ORG(5) too short. seqeval: precision 2/4,
// recall 2/3, F1 4/7; nothing predicted gives 0 without dividing by zero.
TEST(EntityMetrics, HandWorkedMicroCounts) {
  const Tags truth = {{"B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG"}};
  const Tags pred = {{"B-PER", "I-PER", "O", "B-LOC", "I-ORG", "B-ORG", "O"}};
  infer::ClassificationMetrics m = infer::entity_metrics(pred, truth);
  EXPECT_EQ(m.true_entities, 3);
  EXPECT_EQ(m.predicted_entities, 4);
  EXPECT_EQ(m.correct_entities, 2);
  EXPECT_DOUBLE_EQ(m.entity_precision, 0.5);
  EXPECT_DOUBLE_EQ(m.entity_recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.entity_f1, 4.0 / 7.0);
  infer::ClassificationMetrics none = infer::entity_metrics({{"O", "O"}}, {{"B-PER", "O"}});
  EXPECT_EQ(none.entity_f1, 0.0);
  EXPECT_EQ(none.entity_precision, 0.0);
  EXPECT_THROW(infer::entity_metrics({{"O"}}, {{"O", "O"}}), Error);
}

// Offsets in code points of the original text, through lowercasing, accent stripping,
// punctuation splitting and WordPiece; an [UNK] word spans the whole word; the ids are encode's.
TEST(TokenOffsets, PiecesCarryTheirCharacterSpans) {
  const auto tok = tiny_tokenizer();
  const std::string text = "Kím (32) kimite 서울 sp";
  const auto pieces = tok.encode_with_offsets(text);
  std::vector<int32_t> ids;
  std::vector<std::pair<size_t, size_t>> spans;
  for (const auto& p : pieces) ids.push_back(p.id), spans.emplace_back(p.start, p.end);
  EXPECT_EQ(ids, tok.encode(text, {.add_special_tokens = false}).ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{5, 10, 11, 12, 5, 9, 1, 13}));
  EXPECT_EQ(spans, (std::vector<std::pair<size_t, size_t>>{
                       {0, 3}, {4, 5}, {5, 7}, {7, 8}, {9, 12}, {12, 15}, {16, 18}, {19, 21}}));
}

// aggregation_strategy "simple": B- starts a group, I- of the same type continues it, O groups
// are dropped; the word joins the pieces ("##" glued), an [UNK] piece reads the text.
TEST(TokenOffsets, EntitiesGroupAsThePipelineGroupsThem) {
  const auto tok = tiny_tokenizer();
  const auto config = tag_config();  // B-LC, B-PS, I-PS, O
  const std::string text = "Kim kimite lives in 서울";
  const auto pieces = tok.encode_with_offsets(text);
  ASSERT_EQ(pieces.size(), 6u);  // kim kim ##ite lives in [UNK]
  auto row = [](int best) {
    std::vector<float> r(4, 0.f);
    r[best] = 3.f;
    return r;
  };
  std::vector<float> logits;
  for (int best : {1, 1, 2, 3, 3, 0}) {
    const auto r = row(best);
    logits.insert(logits.end(), r.begin(), r.end());
  }
  const auto spans = infer::group_entities(tok, config, text, pieces, logits.data());
  const auto j = infer::spans_json(spans);
  ASSERT_EQ(j.size(), 3u) << j.dump();
  const float p = std::exp(3.f) / (std::exp(3.f) + 3.f);
  EXPECT_EQ(j[0].at("entity_group"), "PS");
  EXPECT_EQ(j[0].at("word"), "kim");
  EXPECT_EQ(j[0].at("start"), 0);
  EXPECT_EQ(j[0].at("end"), 3);
  EXPECT_EQ(j[1].at("word"), "kimite");  // B-PS then I-PS I-PS: one group
  EXPECT_EQ(j[1].at("start"), 4);
  EXPECT_EQ(j[1].at("end"), 10);
  EXPECT_NEAR(j[1].at("score").get<float>(), p, 1e-6);
  EXPECT_EQ(j[2].at("entity_group"), "LC");
  EXPECT_EQ(j[2].at("word"), "서울");
  EXPECT_EQ(j[2].at("start"), 20);
  EXPECT_EQ(j[2].at("end"), 22);
}

// The other aggregation strategies of the pipeline on "Kim kimite lives in 서울" (pieces kim,
// kim, ##ite, lives, in, [UNK]): "kimite" is one word of two pieces whose labels disagree
// (kim: O, ##ite: B-PS), so first, average and max each label it their own way.
TEST(TokenOffsets, AggregationStrategiesAsThePipelineDefinesThem) {
  const auto tok = tiny_tokenizer();
  const auto config = tag_config();  // B-LC, B-PS, I-PS, O
  const std::string text = "Kim kimite lives in 서울";
  const auto pieces = tok.encode_with_offsets(text);
  ASSERT_EQ(pieces.size(), 6u);
  const std::vector<std::vector<float>> rows{{0, 3, 0, 0},   {0, 1, 0, 2}, {0, 2.5f, 0, 0},
                                             {0, 0, 0, 3},   {0, 0, 0, 3}, {3, 0, 0, 0}};
  std::vector<float> logits;
  for (const auto& r : rows) logits.insert(logits.end(), r.begin(), r.end());
  auto probs = [&](int piece) {
    std::vector<double> p(4);
    double sum = 0;
    for (int c = 0; c < 4; ++c) sum += p[c] = std::exp(double(rows[piece][c]));
    for (double& x : p) x /= sum;
    return p;
  };
  auto spans = [&](infer::Aggregation a, std::vector<std::string> ignore = {"O"}) {
    return infer::spans_json(infer::group_entities(tok, config, text, pieces, logits.data(), {a, ignore}), a);
  };
  // none: a record per piece, its own label, index its row after [CLS]; O records left out.
  const auto none = spans(infer::Aggregation::None);
  ASSERT_EQ(none.size(), 3u) << none.dump();
  nlohmann::json kim = none[0];
  EXPECT_NEAR(kim.at("score").get<double>(), probs(0)[1], 1e-6);
  kim.erase("score");
  EXPECT_EQ(kim, (nlohmann::json{{"entity", "B-PS"}, {"index", 1}, {"word", "kim"}, {"start", 0}, {"end", 3}}));
  EXPECT_EQ(none[1].at("word"), "##ite");
  EXPECT_EQ(none[1].at("index"), 3);
  EXPECT_EQ(none[1].at("start"), 7);
  EXPECT_EQ(none[2].at("entity"), "B-LC");
  EXPECT_EQ(none[2].at("word"), "서울");
  EXPECT_EQ(none[2].at("index"), 6);
  EXPECT_EQ(spans(infer::Aggregation::None, {}).size(), 6u) << "nothing ignored: every piece";
  // simple: pieces grouped; "##ite" (B-PS after an O) is a group of its own.
  const auto simple = spans(infer::Aggregation::Simple);
  ASSERT_EQ(simple.size(), 3u) << simple.dump();
  EXPECT_EQ(simple[1].at("word"), "##ite");
  // first: kimite takes its first piece's O, and is left out.
  const auto first = spans(infer::Aggregation::First);
  ASSERT_EQ(first.size(), 2u) << first.dump();
  EXPECT_EQ(first[0].at("word"), "kim");
  EXPECT_EQ(first[1].at("entity_group"), "LC");
  // max: the piece with the highest score (##ite's B-PS) labels the word.
  const auto max = spans(infer::Aggregation::Max);
  ASSERT_EQ(max.size(), 3u) << max.dump();
  EXPECT_EQ(max[1].at("entity_group"), "PS");
  EXPECT_EQ(max[1].at("word"), "kimite");
  EXPECT_EQ(max[1].at("start"), 4);
  EXPECT_EQ(max[1].at("end"), 10);
  EXPECT_NEAR(max[1].at("score").get<double>(), probs(2)[1], 1e-6);
  // average: the pieces' mean probabilities pick B-PS, the score that mean.
  const auto average = spans(infer::Aggregation::Average);
  ASSERT_EQ(average.size(), 3u) << average.dump();
  EXPECT_EQ(average[1].at("word"), "kimite");
  EXPECT_NEAR(average[1].at("score").get<double>(), (probs(1)[1] + probs(2)[1]) / 2, 1e-6);
  // ignore_labels names grouped types too.
  EXPECT_EQ(spans(infer::Aggregation::Simple, {"O", "PS"}).size(), 1u);

  EXPECT_EQ(infer::parse_aggregation("FIRST"), infer::Aggregation::First);
  try {
    infer::parse_aggregation("longest");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "'longest' is not one of none|simple|first|average|max");
  }
}

// data stats --task token-classification: piece lengths and the words truncation leaves untagged
// are those of the batches training makes (infer::tokenize_tagged) at that max_length.
TEST(TaggedData, StatsCountWhatTrainingTruncates) {
  data::TaggedDataset d = data::select_sentences(data::read_tagged(shared_path("data/klue/ner_train.tsv")), 42, 200,
                                                 "--samples");
  const text::Tokenizer tok = text::Tokenizer::load(shared_path("models/klue-bert-base"));
  model::BertConfig config;
  for (const auto& tag : data::tag_set(d)) config.id2label[static_cast<int>(config.id2label.size())] = tag;
  const auto label2id = infer::label_ids(config);
  const auto pieces = data::tagged_word_pieces(d, tok);
  const int limit = 32;
  const data::TaggedStats s = data::compute_tagged_stats(d, pieces, limit);
  const infer::TokenizedData whole = infer::tokenize_tagged(d, tok, 1 << 20, label2id);
  const infer::TokenizedData cut = infer::tokenize_tagged(d, tok, limit, label2id);
  size_t with_pieces = 0, kept = 0, over = 0, words = 0;
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < d.size(); ++i) {
    words += d.sentences[i].tokens.size();
    for (const int64_t n : pieces[i]) with_pieces += n > 0;
    for (const int32_t l : cut.token_labels[i]) kept += l != -100;
    lengths.push_back(whole.lengths[i]);
    over += whole.lengths[i] > limit;
  }
  EXPECT_EQ(s.sentences, d.size());
  EXPECT_EQ(s.words, words);
  EXPECT_EQ(s.over_token_limit, over);
  EXPECT_GT(over, 0u);  // the limit truncates some sentences of this sample
  EXPECT_EQ(s.words_past_limit, with_pieces - kept);
  ASSERT_TRUE(s.pieces.has_value());
  const data::LengthSummary want = data::summarize_lengths(lengths);
  EXPECT_EQ(s.pieces->max, want.max);
  EXPECT_EQ(s.pieces->p50, want.p50);
  EXPECT_DOUBLE_EQ(s.pieces->mean, want.mean);
  size_t tagged = 0;
  for (const auto& [tag, n] : s.tag_counts) tagged += n;
  EXPECT_EQ(tagged, words);
  EXPECT_THROW(data::select_sentences(d, 42, 201, "--samples"), Error);
}
