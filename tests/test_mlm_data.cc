// Masked-LM pretraining data: corpus reading, held-out split, packing, HF collator masking
// (rates, specials, whole words, determinism), and gradient accumulation in TrainStep.
#include <gtest/gtest.h>

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <span>
#include <filesystem>
#include <random>
#include <set>

#include "io/atomic_file.h"
#include "model/bert.h"
#include "train/mlm_data.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;
using namespace bertune::train;

namespace {

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("bertune_mlm_" + std::to_string(::getpid()) + "_" + name);
}

void write_gz(const fs::path& p, const std::string& text) {
  gzFile f = gzopen(p.c_str(), "wb");
  ASSERT_TRUE(f);
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(f);
}

// [PAD] [UNK] [CLS] [SEP] [MASK], then words and '##' pieces.
text::Tokenizer small_tokenizer() {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "영화", "##가", "##는",
                                    "좋다", "별로", "##다", "재미", "##있", "##어", "a", "b", "c"};
  for (int i = 0; i < 200; ++i) vocab.push_back(std::string(1, 'w').append(std::to_string(i)));
  text::BasicTokenizerOptions o;
  return text::Tokenizer::from_vocab(vocab, o);
}

// Three standard deviations of a binomial share would fail one run in 370; 5 sd one in ~1.7M.
void expect_share(int64_t hits, int64_t n, double p, const char* what) {
  const double sd = std::sqrt(p * (1 - p) / static_cast<double>(n));
  EXPECT_NEAR(static_cast<double>(hits) / static_cast<double>(n), p, 5 * sd) << what << ": " << hits << " of " << n;
}

}  // namespace

TEST(MlmCorpus, ReadsPlainAndGzipSkipsEmptyLines) {
  const std::string text = "첫 리뷰\n\n  \r\n둘째 리뷰\r\n셋째\n";
  const fs::path plain = temp_file("c.txt"), gz = temp_file("c.txt.gz");
  io::write_file_atomic(plain, text);
  write_gz(gz, text);
  for (const auto& p : {plain, gz}) {
    ReviewCorpus c = read_review_corpus(p);
    ASSERT_EQ(c.reviews.size(), 3u) << p;
    EXPECT_EQ(c.reviews[0], "첫 리뷰");
    EXPECT_EQ(c.reviews[1], "둘째 리뷰");  // '\r' dropped
    EXPECT_EQ(c.lines, (std::vector<int64_t>{1, 4, 5}));
  }
  fs::remove(plain);
  fs::remove(gz);
}

TEST(MlmCorpus, InvalidUtf8NamesFileAndLine) {
  const fs::path p = temp_file("bad.txt.gz");
  write_gz(p, "good\nalso good\nbad \xC3\x28 here\n");
  try {
    read_review_corpus(p);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":3: invalid UTF-8"), std::string::npos) << e.what();
  }
  fs::remove(p);
  EXPECT_THROW(read_review_corpus(temp_file("missing.txt")), Error);
}

TEST(MlmCorpus, HeldOutReviewsAreNeverTrainedOn) {
  ReviewCorpus all;
  all.source = "mem";
  for (int i = 0; i < 1000; ++i) {
    all.reviews.push_back("review " + std::to_string(i));
    all.lines.push_back(i + 1);
  }
  CorpusSplit a = split_heldout(all, 100, 7), b = split_heldout(all, 100, 7), c = split_heldout(all, 100, 8);
  ASSERT_EQ(a.heldout.reviews.size(), 100u);
  ASSERT_EQ(a.train.reviews.size(), 900u);
  std::set<std::string> held(a.heldout.reviews.begin(), a.heldout.reviews.end());
  for (const auto& r : a.train.reviews) EXPECT_FALSE(held.count(r)) << r;
  EXPECT_EQ(a.heldout.reviews, b.heldout.reviews);  // seeded
  EXPECT_NE(a.heldout.reviews, c.heldout.reviews);
  for (size_t i = 1; i < a.train.lines.size(); ++i) EXPECT_LT(a.train.lines[i - 1], a.train.lines[i]);  // file order
  EXPECT_THROW(split_heldout(all, 1000, 7), Error);
}

TEST(MlmPacking, ReviewsPackedBetweenSeparatorsUpToMaxLength) {
  const text::Tokenizer tok = small_tokenizer();
  const std::vector<std::string> reviews = {"영화가 좋다", "별로다", "a b c a b c a b c a b c", "재미있어", "", "c"};
  const int max_length = 8;
  PackedCorpus p = pack_reviews(reviews, tok, max_length, 1);
  // Reconstruct the reviews' ids from the packed sequences and compare with the tokenizer.
  std::vector<std::vector<int32_t>> got;
  for (size_t s = 0; s < p.size(); ++s) {
    const int32_t* ids = p.ids.data() + p.offsets[s];
    ASSERT_LE(p.length(s), max_length);
    EXPECT_EQ(ids[0], tok.cls_id());
    int32_t prev = 1;
    for (int64_t k = p.seg_offsets[s]; k < p.seg_offsets[s + 1]; ++k) {
      const int32_t end = p.segment_ends[k];
      EXPECT_EQ(ids[end - 1], tok.sep_id());
      got.emplace_back(ids + prev, ids + end - 1);
      prev = end;
    }
    EXPECT_EQ(prev, p.length(s));  // the last segment ends the sequence
  }
  text::EncodeOptions eo;
  eo.add_special_tokens = false;
  std::vector<std::vector<int32_t>> want;
  for (const auto& r : reviews) {
    auto ids = tok.encode(r, eo).ids;
    if (ids.empty()) continue;
    if (ids.size() > 6) ids.resize(6);  // truncated to max_length - 2
    want.push_back(ids);
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(p.truncated_reviews, 1);
  // [CLS] 영화 ##가 좋다 [SEP] 별로 ##다 [SEP] fills 8; the long review is alone.
  EXPECT_EQ(p.length(0), 8);
  EXPECT_EQ(p.seg_offsets[1] - p.seg_offsets[0], 2);
}

TEST(MlmMasking, RatesMatchTheCollatorWithinBinomialSpread) {
  const text::Tokenizer tok = small_tokenizer();
  MaskingOptions o = masking_options(tok, 0.15, false);
  const double V = o.vocab_size;
  std::mt19937 gen(1);
  std::uniform_int_distribution<int32_t> word(5, o.vocab_size - 1);
  int64_t candidates = 0, selected = 0, masked = 0, kept = 0, other = 0;
  for (uint64_t s = 0; s < 2000; ++s) {
    std::vector<int32_t> ids = {tok.cls_id()};
    for (int i = 0; i < 126; ++i) ids.push_back(i % 40 == 39 ? tok.sep_id() : (i % 50 == 7 ? tok.unk_id() : word(gen)));
    ids.push_back(tok.sep_id());
    MaskedSequence m = mask_sequence(ids.data(), static_cast<int>(ids.size()), o, 42, 0, s);
    for (size_t i = 0; i < ids.size(); ++i) {
      const bool special = ids[i] < 5;
      candidates += !special;
      if (m.labels[i] == -100) {
        EXPECT_EQ(m.ids[i], ids[i]);  // unselected: untouched
        continue;
      }
      ASSERT_FALSE(special) << "special token selected at " << i;
      ASSERT_EQ(m.labels[i], ids[i]);  // the label is the original id, exactly
      ++selected;
      if (m.ids[i] == o.mask_id) ++masked;
      else if (m.ids[i] == ids[i]) ++kept;
      else ++other;
    }
  }
  expect_share(selected, candidates, 0.15, "selected");
  // A random replacement may draw [MASK] or the original id (1/V each).
  expect_share(masked, selected, 0.8 + 0.1 / V, "[MASK]");
  expect_share(kept, selected, 0.1 + 0.1 / V, "kept");
  expect_share(other, selected, 0.1 * (1 - 2 / V), "random");
}

TEST(MlmMasking, PureInSeedEpochAndIndex) {
  const text::Tokenizer tok = small_tokenizer();
  MaskingOptions o = masking_options(tok, 0.15, false);
  std::vector<int32_t> ids(120, 10);
  ids[0] = tok.cls_id();
  auto mask = [&](uint64_t seed, int64_t epoch, uint64_t index) {
    return mask_sequence(ids.data(), static_cast<int>(ids.size()), o, seed, epoch, index).labels;
  };
  EXPECT_EQ(mask(1, 3, 5), mask(1, 3, 5));
  EXPECT_NE(mask(1, 3, 5), mask(1, 4, 5));  // fresh masks every epoch
  EXPECT_NE(mask(1, 3, 5), mask(1, 3, 6));
  EXPECT_NE(mask(1, 3, 5), mask(2, 3, 5));
}

TEST(MlmMasking, WholeWordsAreMaskedTogether) {
  const text::Tokenizer tok = small_tokenizer();
  MaskingOptions o = masking_options(tok, 0.15, true);
  // Words: 영화 ##가 | 재미 ##있 ##어 | 별로 ##다 | a | wN ... | [UNK] (a word to HF, never masked)
  const std::vector<std::vector<int32_t>> words = {{5, 6}, {11, 12, 13}, {9, 10}, {14}, {20}, {21}, {22}, {1}};
  std::mt19937 gen(3);
  int64_t selected_total = 0, budget_total = 0;
  for (uint64_t s = 0; s < 3000; ++s) {
    std::vector<int32_t> ids = {tok.cls_id()}, word_of = {-1};
    for (int w = 0; w < 30; ++w) {
      const int k = static_cast<int>(gen() % words.size());
      for (int32_t id : words[k]) {
        ids.push_back(id);
        word_of.push_back(w);
      }
      if (w == 14) {
        ids.push_back(tok.sep_id());
        word_of.push_back(-1);
      }
    }
    ids.push_back(tok.sep_id());
    word_of.push_back(-1);
    const int n = static_cast<int>(ids.size());
    MaskedSequence m = mask_sequence(ids.data(), n, o, 9, 1, s);
    std::map<int, std::set<bool>> word_selected;
    int64_t selected = 0;
    for (int i = 0; i < n; ++i) {
      const bool sel = m.labels[i] != -100;
      if (word_of[i] < 0 || ids[i] == tok.unk_id()) {
        ASSERT_FALSE(sel) << "special selected";
        continue;
      }
      if (sel) {
        ASSERT_EQ(m.labels[i], ids[i]);
      }
      word_selected[word_of[i]].insert(sel);
      selected += sel;
    }
    for (const auto& [w, states] : word_selected) ASSERT_EQ(states.size(), 1u) << "word " << w << " split, seq " << s;
    const int64_t budget = std::max<int64_t>(1, std::llround(n * 0.15));
    ASSERT_LE(selected, budget);
    selected_total += selected;
    budget_total += budget;
  }
  // Words of at most 3 pieces in a shuffled order fill the budget (nearly always); [UNK] words
  // take their share of it (1 token in 12 of the words drawn) without being masked, as in HF.
  const double filled = static_cast<double>(selected_total) / static_cast<double>(budget_total);
  EXPECT_GT(filled, 0.87);
  EXPECT_LT(filled, 0.95);
}

TEST(MlmBatch, WithinReviewAttentionHasTheSameTokensAsAcross) {
  const text::Tokenizer tok = small_tokenizer();
  const std::vector<std::string> reviews = {"영화가 좋다", "별로다", "재미있어", "a b", "c", "영화가 별로다"};
  PackedCorpus p = pack_reviews(reviews, tok, 12, 1);
  MaskingOptions o = masking_options(tok, 0.15, false);
  std::vector<size_t> all(p.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  model::Batch across = mlm_batch(p, all, ReviewAttention::Across, o, 5, 2);
  model::Batch within = mlm_batch(p, all, ReviewAttention::Within, o, 5, 2);
  EXPECT_EQ(across.input_ids, within.input_ids);
  EXPECT_EQ(across.labels, within.labels);
  EXPECT_EQ(across.num_sequences(), static_cast<int>(p.size()));
  EXPECT_EQ(within.num_sequences(), static_cast<int>(p.segment_ends.size()));
  EXPECT_EQ(within.offsets.back(), within.num_rows());
  for (int b = 0; b < within.num_sequences(); ++b) {
    EXPECT_EQ(within.offsets[b + 1] - within.offsets[b], within.lengths[b]);
    EXPECT_EQ(within.input_ids[within.offsets[b + 1] - 1], tok.sep_id());  // specials are never masked
  }
}

// Pairs as `train --text-pair-column` encodes them: each unit is encode_pair's [CLS] a [SEP] b
// [SEP] with token types 0/1, truncated longest_first to max_length; packed whole.
TEST(MlmPairs, EncodedAsTrainEncodesThemAndPackedWhole) {
  const text::Tokenizer tok = small_tokenizer();
  const std::vector<std::string> a = {"영화가 좋다", "a b c a b c a b c", "", "재미있어", "c"};
  const std::vector<std::string> b = {"별로다", "a", "", "w1 w2 w3 w4 w5 w6 w7 w8", "a b"};
  const int max_length = 12;
  PackedCorpus p = pack_pairs(a, b, tok, max_length, 1);
  ASSERT_EQ(p.types.size(), p.ids.size());
  std::vector<std::vector<int32_t>> got_ids, got_types;
  for (size_t s = 0; s < p.size(); ++s) {
    ASSERT_LE(p.length(s), max_length);
    int32_t prev = 0;
    for (int64_t k = p.seg_offsets[s]; k < p.seg_offsets[s + 1]; ++k) {
      const int64_t from = p.offsets[s] + prev, to = p.offsets[s] + p.segment_ends[k];
      got_ids.emplace_back(p.ids.begin() + from, p.ids.begin() + to);
      got_types.emplace_back(p.types.begin() + from, p.types.begin() + to);
      prev = p.segment_ends[k];
    }
    EXPECT_EQ(prev, p.length(s));
  }
  text::EncodeOptions eo;
  eo.max_length = max_length;
  eo.return_token_type_ids = true;
  std::vector<std::vector<int32_t>> want_ids, want_types;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].empty() && b[i].empty()) continue;  // only specials: dropped
    const text::Encoding e = tok.encode_pair(a[i], b[i], eo);
    want_ids.push_back(e.ids);
    want_types.push_back(e.token_type_ids);
  }
  EXPECT_EQ(got_ids, want_ids);
  EXPECT_EQ(got_types, want_types);
  // "a b c" x 3 (9) and "a" (1): longest_first cuts the first to 8; 재미있어 (3) with 8 words: the second to 6.
  EXPECT_EQ(p.truncated_reviews, 2);
  EXPECT_EQ(got_ids[1].size(), 12u);
  EXPECT_EQ(std::count(got_types[2].begin(), got_types[2].end(), 1), 7);  // 6 words and the last [SEP] (pair 2 dropped)
  // [CLS] 영화 ##가 좋다 [SEP] 별로 ##다 [SEP] (8) leaves no room for the next pair (12).
  EXPECT_EQ(p.seg_offsets[1] - p.seg_offsets[0], 1);
  EXPECT_EQ(p.seg_offsets.back(), 4);
  EXPECT_THROW(pack_pairs({"a"}, {"b"}, tok, 3, 1), Error);  // no room beyond [CLS] [SEP] [SEP]
}

// Masking reads both texts of a pair and never selects [CLS] or [SEP]; the batch carries the
// pairs' token types under either attention mode.
TEST(MlmPairs, MaskingSparesSpecialsAndBatchesKeepTokenTypes) {
  const text::Tokenizer tok = small_tokenizer();
  std::vector<std::string> a, b;
  for (int i = 0; i < 40; ++i) {
    a.push_back("영화가 좋다 w" + std::to_string(i));
    b.push_back("별로다 재미있어 w" + std::to_string(i + 1));
  }
  PackedCorpus p = pack_pairs(a, b, tok, 24, 1);
  std::vector<size_t> all(p.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  for (bool whole_word : {false, true}) {
    const MaskingOptions o = masking_options(tok, 0.6, whole_word);
    for (ReviewAttention mode : {ReviewAttention::Across, ReviewAttention::Within}) {
      const model::Batch batch = mlm_batch(p, all, mode, o, 7, 0);
      EXPECT_EQ(batch.token_type_ids, p.types);
      int64_t selected[2] = {0, 0};
      for (size_t i = 0; i < p.ids.size(); ++i) {
        const bool special = p.ids[i] == tok.cls_id() || p.ids[i] == tok.sep_id();
        if (special) {
          EXPECT_EQ(batch.labels[i], -100) << i;
          EXPECT_EQ(batch.input_ids[i], p.ids[i]) << i;
        } else if (batch.labels[i] != -100) {
          ++selected[p.types[i]];
        }
      }
      EXPECT_GT(selected[0], 50) << whole_word;  // both segments are masked
      EXPECT_GT(selected[1], 50) << whole_word;
    }
    const model::Batch within = mlm_batch(p, all, ReviewAttention::Within, o, 7, 0);
    EXPECT_EQ(within.num_sequences(), 40);  // a pair is one attention sequence
    for (int s = 0; s < within.num_sequences(); ++s) EXPECT_EQ(within.input_ids[within.offsets[s]], tok.cls_id());
  }
}

// Next-sentence data: about half the pairs take another pair's second text (label 1), the rest
// keep theirs (label 0); pure in the seed. Packed, each kept pair carries its label, and a
// batch with each pair in its own attention sequence has one label per sequence.
TEST(MlmPairs, NextSentenceDrawsHalfRandomSecondTextsAndBatchesCarryTheLabels) {
  ReviewCorpus c;
  c.source = "pairs.jsonl";
  const int n = 400;
  for (int i = 0; i < n; ++i) {
    c.reviews.push_back("a" + std::to_string(i));
    c.pairs.push_back("b" + std::to_string(i));
    c.lines.push_back(i + 1);
  }
  ReviewCorpus d = c, e = c;
  draw_next_sentences(d, 3);
  draw_next_sentences(e, 3);
  EXPECT_EQ(d.pairs, e.pairs);
  EXPECT_EQ(d.next_labels, e.next_labels);
  ASSERT_EQ(d.next_labels.size(), size_t(n));
  int64_t random = 0;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(d.reviews[i], c.reviews[i]);
    if (d.next_labels[i] == 0) {
      EXPECT_EQ(d.pairs[i], c.pairs[i]) << i;
      continue;
    }
    ASSERT_EQ(d.next_labels[i], 1);
    ++random;
    EXPECT_NE(d.pairs[i], c.pairs[i]) << i;
    EXPECT_NE(std::find(c.pairs.begin(), c.pairs.end(), d.pairs[i]), c.pairs.end()) << d.pairs[i];
  }
  expect_share(random, n, 0.5, "random second texts");
  draw_next_sentences(e, 4);
  EXPECT_NE(e.next_labels, d.next_labels);
  ReviewCorpus one = c, singles;
  one.reviews.resize(1), one.pairs.resize(1), one.lines.resize(1);
  EXPECT_THROW(draw_next_sentences(one, 1), Error);
  singles.reviews = {"x", "y"};
  EXPECT_THROW(draw_next_sentences(singles, 1), Error);

  const text::Tokenizer tok = small_tokenizer();
  const std::vector<std::string> a = {"영화가 좋다", "", "재미있어", "c", "a b"};
  const std::vector<std::string> b = {"별로다", "", "w1 w2", "a b", "w3"};
  const std::vector<int32_t> labels = {1, 0, 0, 1, 0};
  PackedCorpus p = pack_pairs(a, b, tok, 24, 1, labels);
  EXPECT_EQ(p.segment_labels, (std::vector<int32_t>{1, 0, 1, 0}));  // the empty pair dropped with its label
  ASSERT_EQ(p.segment_labels.size(), p.segment_ends.size());
  std::vector<size_t> all(p.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  const MaskingOptions o = masking_options(tok, 0.15, false);
  const model::Batch within = mlm_batch(p, all, ReviewAttention::Within, o, 7, 0);
  EXPECT_EQ(within.next_sentence_labels, p.segment_labels);
  EXPECT_EQ(within.num_sequences(), 4);
  EXPECT_THROW(mlm_batch(p, all, ReviewAttention::Across, o, 7, 0), Error);
  EXPECT_THROW(pack_pairs(a, b, tok, 24, 1, {1, 0}), Error);
  EXPECT_TRUE(pack_pairs(a, b, tok, 24, 1).segment_labels.empty());
}

// A JSONL of pairs reads as `train` reads it; the held-out split keeps each pair together.
TEST(MlmPairs, CorpusReadsColumnsAndSplitsPairsTogether) {
  const fs::path f = temp_file("pairs.jsonl");
  std::string text;
  for (int i = 0; i < 20; ++i)
    text += "{\"p\": \"a" + std::to_string(i) + "\", \"h\": \"b" + std::to_string(i) + "\", \"label\": 9}\n";
  io::write_file_atomic(f, text);
  ReviewCorpus c = read_pair_corpus(f, "p", "h");
  ASSERT_EQ(c.size(), 20u);
  ASSERT_TRUE(c.is_pairs());
  EXPECT_EQ(c.reviews[3], "a3");
  EXPECT_EQ(c.pairs[3], "b3");
  EXPECT_EQ(c.lines[3], 4);
  CorpusSplit s = split_heldout(c, 5, 42);
  ASSERT_EQ(s.heldout.pairs.size(), 5u);
  ASSERT_EQ(s.train.pairs.size(), 15u);
  for (const ReviewCorpus* part : {&s.train, &s.heldout})
    for (size_t i = 0; i < part->size(); ++i) EXPECT_EQ("b" + part->reviews[i].substr(1), part->pairs[i]);
  io::write_file_atomic(f, text + "{\"p\": \"x\", \"h\": \"\"}\n");
  try {
    read_pair_corpus(f, "p", "h");
    ADD_FAILURE() << "an empty second text was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(f.string() + ":21"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_pair_corpus(f, "p", "hypothesis"), Error);
  fs::remove(f);
}

// Two micro-batches with the same number of labelled rows: the mean of their mean losses is
// the combined batch's mean loss, so one accumulated step must equal one step on both at once.
TEST(TrainStepAccumulation, TwoMicroBatchesEqualOneCombinedBatch) {
  const model::BertConfig config = model::BertConfig::load(shared_path("golden/bert/tiny_config.json"));
  auto make = [&](std::vector<int32_t> ids, std::vector<int32_t> labels) {
    model::Batch b = model::Batch::packed({ids});
    b.labels = std::move(labels);
    return b;
  };
  const model::Batch a = make({2, 40, 41, 42, 43, 3}, {-100, 40, -100, 42, -100, -100});
  const model::Batch b = make({2, 50, 51, 52, 3}, {-100, -100, 51, 52, -100});
  model::Batch both = model::Batch::packed({{2, 40, 41, 42, 43, 3}, {2, 50, 51, 52, 3}});
  both.labels = a.labels;
  both.labels.insert(both.labels.end(), b.labels.begin(), b.labels.end());

  auto train_once = [&](const std::vector<model::Batch>& micro, double max_norm, StepOutcome* out) {
    auto m = std::make_unique<model::BertModel>(config, model::Task::MaskedLM);
    m->init_weights(11);
    AdamW opt(*m, {});
    TrainStep step(*m, opt, LrSchedule{Schedule::Constant, 1e-3, 0, 10}, max_norm);
    *out = step.run(std::span<const model::Batch>(micro), 0);
    return std::vector<float>(m->params(), m->params() + m->num_params());
  };
  for (double max_norm : {0.0, 1e-3}) {  // unclipped, and clipped hard
    StepOutcome split, whole;
    const auto p_split = train_once({a, b}, max_norm, &split);
    const auto p_whole = train_once({both}, max_norm, &whole);
    ASSERT_TRUE(split.finite && whole.finite);
    EXPECT_NEAR(split.loss, whole.loss, 1e-5);
    EXPECT_NEAR(split.grad_norm, whole.grad_norm, 1e-5 * whole.grad_norm);
    double worst = 0;
    for (size_t i = 0; i < p_whole.size(); ++i) worst = std::max(worst, std::fabs(double(p_split[i]) - p_whole[i]));
    EXPECT_LT(worst, 2e-6) << "max_norm " << max_norm;
  }
}

// The data-parallel seam: worker 1 runs micro-batch a, a simulated worker 2 computes b's
// gradient on an identical model, and sum_over_workers adds it in (what an allreduce
// does). The step must equal one worker accumulating both micro-batches.
class SimulatedSecondWorker : public GradientReduction {
 public:
  SimulatedSecondWorker(std::vector<float> grads, double loss, std::vector<double> counts = {})
      : grads_(std::move(grads)), loss_(loss), counts_(std::move(counts)) {}
  int workers() const override { return 2; }
  void sum_counts(std::span<double> values) override {  // the second worker's labelled items
    ASSERT_EQ(values.size(), counts_.size());
    for (size_t i = 0; i < values.size(); ++i) values[i] += counts_[i];
  }
  void sum_over_workers(float* grads, size_t n, double& loss_sum, double& micro_batches) override {
    ASSERT_EQ(n, grads_.size());
    for (size_t i = 0; i < n; ++i) grads[i] += grads_[i];
    loss_sum += loss_;
    micro_batches += 1;
    ++calls;
  }
  int calls = 0;

 private:
  std::vector<float> grads_;
  double loss_;
  std::vector<double> counts_;
};

TEST(TrainStepAccumulation, GradientReductionOverWorkersEqualsAccumulation) {
  const model::BertConfig config = model::BertConfig::load(shared_path("golden/bert/tiny_config.json"));
  model::Batch a = model::Batch::packed({{2, 40, 41, 42, 43, 3}});
  a.labels = {-100, 40, -100, 42, -100, -100};
  model::Batch b = model::Batch::packed({{2, 50, 51, 52, 3}});
  b.labels = {-100, -100, 51, 52, -100};
  auto fresh = [&] {
    auto m = std::make_unique<model::BertModel>(config, model::Task::MaskedLM);
    m->init_weights(11);
    return m;
  };
  auto accumulated = fresh();
  AdamW opt_acc(*accumulated, {});
  TrainStep acc(*accumulated, opt_acc, LrSchedule{Schedule::Constant, 1e-3, 0, 10}, 1e-3);
  const StepOutcome want = acc.run(std::span<const model::Batch>(std::vector<model::Batch>{a, b}), 0);

  auto other = fresh();  // worker 2: b's gradient and loss at the same weights
  const float loss_b = other->forward(b, true);
  other->backward();
  SimulatedSecondWorker worker2(std::vector<float>(other->grads(), other->grads() + other->num_params()), loss_b,
                                {model::BertModel::loss_count(b)});
  auto worker1 = fresh();
  AdamW opt1(*worker1, {});
  TrainStep step1(*worker1, opt1, LrSchedule{Schedule::Constant, 1e-3, 0, 10}, 1e-3);
  step1.set_gradient_reduction(&worker2);
  const StepOutcome got = step1.run(a, 0);
  EXPECT_EQ(worker2.calls, 1);
  ASSERT_TRUE(got.finite && want.finite);
  EXPECT_NEAR(got.loss, want.loss, 1e-6);
  EXPECT_NEAR(got.grad_norm, want.grad_norm, 1e-5 * want.grad_norm);
  double worst = 0;
  for (size_t i = 0; i < worker1->num_params(); ++i)
    worst = std::max(worst, std::fabs(double(worker1->params()[i]) - accumulated->params()[i]));
  EXPECT_LT(worst, 1e-6);

  // A non-finite loss on another worker makes every worker skip the update.
  SimulatedSecondWorker broken(std::vector<float>(worker1->num_params(), 0.f), NAN, {2.0});
  step1.set_gradient_reduction(&broken);
  const std::vector<float> before(worker1->params(), worker1->params() + worker1->num_params());
  const StepOutcome skipped = step1.run(a, 1);
  EXPECT_FALSE(skipped.finite);
  EXPECT_EQ(std::vector<float>(worker1->params(), worker1->params() + worker1->num_params()), before);
}
