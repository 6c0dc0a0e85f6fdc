#include "train/mlm_data.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "data/dataset.h"
#include "text/unicode.h"
#include "text/vocab_trainer.h"
#include "train/sampler.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;

// ---- corpus ----

ReviewCorpus read_review_corpus(const fs::path& path) {
  const std::string text = text::read_corpus_file(path);
  ReviewCorpus c;
  c.source = path.string();
  size_t pos = 0;
  int64_t line = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    ++line;
    std::string_view review(text.data() + pos, nl - pos);
    pos = nl + 1;
    if (!review.empty() && review.back() == '\r') review.remove_suffix(1);
    if (review.find_first_not_of(" \t\v\f") == std::string_view::npos) continue;
    if (!text::unicode::is_valid_utf8(review))
      throw Error(path.string() + ":" + std::to_string(line) + ": invalid UTF-8");
    c.reviews.emplace_back(review);
    c.lines.push_back(line);
  }
  if (c.reviews.empty()) throw Error(path.string() + ": no reviews (every line is empty)");
  return c;
}

ReviewCorpus read_pair_corpus(const fs::path& path, const std::string& text_column,
                              const std::string& text_pair_column) {
  data::ReadOptions ro;
  ro.text_column = text_column;
  ro.text_pair_column = text_pair_column;
  ro.label_column.clear();  // unlabelled: any label column is ignored
  data::Dataset d = data::read_dataset(path, ro);
  if (d.examples.empty()) throw Error(path.string() + ": no sentence pairs (no rows)");
  ReviewCorpus c;
  c.source = path.string();
  for (auto& e : d.examples) {
    c.reviews.push_back(std::move(e.text));
    c.pairs.push_back(std::move(e.text_pair));
    c.lines.push_back(e.line);
  }
  return c;
}

CorpusSplit split_heldout(ReviewCorpus all, size_t heldout, uint64_t seed) {
  if (heldout >= all.reviews.size())
    throw Error("--validation-reviews " + std::to_string(heldout) + ": " + all.source + " has only " +
                std::to_string(all.reviews.size()) + " reviews; at least one must remain for training");
  const std::vector<size_t> perm = data::shuffled_indices(all.reviews.size(), seed);
  std::vector<bool> held(all.reviews.size(), false);
  for (size_t i = 0; i < heldout; ++i) held[perm[i]] = true;
  CorpusSplit s;
  s.train.source = s.heldout.source = all.source;
  auto move_to = [&all](ReviewCorpus& to, size_t i) {
    to.reviews.push_back(std::move(all.reviews[i]));
    if (all.is_pairs()) to.pairs.push_back(std::move(all.pairs[i]));
    to.lines.push_back(all.lines[i]);
  };
  // Held-out reviews in shuffled order, training reviews in file order.
  for (size_t i = 0; i < heldout; ++i) move_to(s.heldout, perm[i]);
  for (size_t i = 0; i < all.reviews.size(); ++i)
    if (!held[i]) move_to(s.train, i);
  return s;
}

void draw_next_sentences(ReviewCorpus& c, uint64_t seed) {
  if (!c.is_pairs()) throw Error(c.source + ": next-sentence prediction needs sentence pairs (--text-pair-column)");
  const size_t n = c.size();
  if (n < 2) throw Error(c.source + ": next-sentence prediction needs two sentence pairs at least");
  SplitMix64 rng(seed ^ 0x6E6578745F73656Eull);  // "next_sen"
  const std::vector<std::string> seconds = c.pairs;  // the file's, so that a drawn text is never a drawn one
  c.next_labels.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if ((rng.next() >> 63) == 0) continue;  // probability 1/2: the pair as it is
    size_t j = rng.below(n - 1);
    if (j >= i) ++j;  // another pair, uniformly
    c.pairs[i] = seconds[j];
    c.next_labels[i] = 1;
  }
}

// ---- packing ----

namespace {
constexpr EnumNames<ReviewAttention, 2> kAttentionNames{
    {{{ReviewAttention::Across, "across"}, {ReviewAttention::Within, "within"}}}};
}  // namespace

ReviewAttention parse_review_attention(const std::string& name) { return kAttentionNames.parse(name); }
const char* review_attention_name(ReviewAttention a) { return kAttentionNames.name(a); }

std::vector<int> PackedCorpus::lengths() const {
  std::vector<int> l(size());
  for (size_t s = 0; s < size(); ++s) l[s] = length(s);
  return l;
}

namespace {

// Greedy packing of units (a review with its [SEP], a whole pair) in order: a unit goes into the
// open sequence when it fits, else it opens the next one, after `lead` ([CLS]) when given.
class SequencePacker {
 public:
  SequencePacker(PackedCorpus& p, int max_length) : p_(p), max_length_(max_length) {}
  // ids (and types, when the corpus has them) of one unit; lead < 0: nothing opens a sequence.
  void add(std::span<const int32_t> ids, std::span<const int32_t> types, int32_t lead) {
    const int64_t open = static_cast<int64_t>(p_.ids.size()) - start_;
    if (open > 0 && open + static_cast<int64_t>(ids.size()) > max_length_) close();
    if (lead >= 0 && static_cast<int64_t>(p_.ids.size()) == start_) {
      p_.ids.push_back(lead);
      if (!types.empty()) p_.types.push_back(0);
    }
    p_.ids.insert(p_.ids.end(), ids.begin(), ids.end());
    p_.types.insert(p_.types.end(), types.begin(), types.end());
    p_.segment_ends.push_back(static_cast<int32_t>(static_cast<int64_t>(p_.ids.size()) - start_));
  }
  void close() {
    if (static_cast<int64_t>(p_.ids.size()) == start_) return;
    p_.offsets.push_back(static_cast<int64_t>(p_.ids.size()));
    p_.seg_offsets.push_back(static_cast<int64_t>(p_.segment_ends.size()));
    start_ = static_cast<int64_t>(p_.ids.size());
  }

 private:
  PackedCorpus& p_;
  int max_length_;
  int64_t start_ = 0;  // of the open sequence in p_.ids; none open when start_ == ids.size()
};

}  // namespace

PackedCorpus pack_reviews(const std::vector<std::string>& reviews, const text::Tokenizer& tok, int max_length,
                          int threads) {
  if (max_length < 3) throw Error("--max-length: packing needs at least 3 ([CLS] a token [SEP])");
  text::EncodeOptions eo;
  eo.add_special_tokens = false;
  const std::vector<text::Encoding> enc = tok.encode_batch(reviews, eo, threads);
  PackedCorpus p;
  p.ids.reserve(reviews.size() * 24);
  SequencePacker packer(p, max_length);
  std::vector<int32_t> unit;  // the review's tokens and its [SEP]
  for (const auto& e : enc) {
    if (e.ids.empty()) continue;
    size_t n = e.ids.size();
    if (n > static_cast<size_t>(max_length - 2)) {
      n = static_cast<size_t>(max_length - 2);
      ++p.truncated_reviews;
    }
    unit.assign(e.ids.begin(), e.ids.begin() + static_cast<std::ptrdiff_t>(n));
    unit.push_back(tok.sep_id());
    packer.add(unit, {}, tok.cls_id());
  }
  packer.close();
  if (p.size() == 0) throw Error("no review produced any token");
  return p;
}

PackedCorpus pack_pairs(const std::vector<std::string>& texts, const std::vector<std::string>& pairs,
                        const text::Tokenizer& tok, int max_length, int threads,
                        const std::vector<int32_t>& next_labels) {
  if (!next_labels.empty() && next_labels.size() != texts.size())
    throw Error("pack_pairs: " + std::to_string(next_labels.size()) + " next-sentence labels for " +
                std::to_string(texts.size()) + " pairs");
  text::EncodeOptions eo;  // [CLS] a [SEP] b [SEP], token types 0/1
  eo.return_token_type_ids = true;
  if (max_length < static_cast<int>(tok.encode_pair("", "", eo).ids.size()) + 1)
    throw Error("--max-length " + std::to_string(max_length) + ": a sentence pair needs room for its special "
                "tokens and at least one token");
  const std::vector<text::Encoding> enc = tok.encode_batch(texts, pairs, eo, threads);
  text::EncodeOptions cut = eo;
  cut.max_length = max_length;
  PackedCorpus p;
  p.ids.reserve(texts.size() * 48);
  p.types.reserve(texts.size() * 48);
  SequencePacker packer(p, max_length);
  for (size_t i = 0; i < enc.size(); ++i) {
    const bool only_specials = std::all_of(enc[i].ids.begin(), enc[i].ids.end(),
                                           [&](int32_t id) { return id == tok.cls_id() || id == tok.sep_id(); });
    if (only_specials) continue;
    if (!next_labels.empty()) p.segment_labels.push_back(next_labels[i]);
    if (enc[i].ids.size() <= static_cast<size_t>(max_length)) {
      packer.add(enc[i].ids, enc[i].token_type_ids, -1);
      continue;
    }
    ++p.truncated_reviews;  // longest_first, as `train` truncates
    const text::Encoding e = tok.encode_pair(texts[i], pairs[i], cut);
    packer.add(e.ids, e.token_type_ids, -1);
  }
  packer.close();
  if (p.size() == 0) throw Error("no sentence pair produced any token");
  return p;
}

PackedCorpus pack_corpus(const ReviewCorpus& corpus, const text::Tokenizer& tok, int max_length, int threads) {
  return corpus.is_pairs() ? pack_pairs(corpus.reviews, corpus.pairs, tok, max_length, threads, corpus.next_labels)
                           : pack_reviews(corpus.reviews, tok, max_length, threads);
}

// ---- masking ----

MaskingOptions masking_options(const text::Tokenizer& tok, double mlm_probability, bool whole_word_mask) {
  if (!(mlm_probability > 0 && mlm_probability < 1)) throw Error("--mlm-probability: must lie in (0, 1)");
  MaskingOptions o;
  o.mlm_probability = mlm_probability;
  o.whole_word_mask = whole_word_mask;
  o.special_ids = {tok.pad_id(), tok.unk_id(), tok.cls_id(), tok.sep_id(), tok.mask_id()};
  o.mask_id = tok.mask_id();
  o.cls_id = tok.cls_id();
  o.sep_id = tok.sep_id();
  o.vocab_size = static_cast<int32_t>(tok.vocab_size());
  if (whole_word_mask) {
    o.continuation.resize(tok.vocab_size());
    for (size_t i = 0; i < tok.vocab_size(); ++i)
      o.continuation[i] = tok.id_to_token(static_cast<int32_t>(i)).rfind("##", 0) == 0;
  }
  return o;
}

namespace {

// A SplitMix64 stream keyed by (seed, epoch, index): every key gets its own stream.
SplitMix64 keyed_stream(uint64_t seed, int64_t epoch, uint64_t index) {
  SplitMix64 a(seed ^ 0x6D6C6D5F6D61736Bull);  // "mlm_mask"
  SplitMix64 b(a.next() ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ull));
  return SplitMix64(b.next() ^ (index * 0x9E3779B97F4A7C15ull));
}

double uniform(SplitMix64& r) { return static_cast<double>(r.next() >> 11) * 0x1.0p-53; }

bool is_special(const MaskingOptions& o, int32_t id) {
  return std::find(o.special_ids.begin(), o.special_ids.end(), id) != o.special_ids.end();
}

// DataCollatorForWholeWordMask._whole_word_mask: which positions are selected.
std::vector<bool> whole_word_selection(const int32_t* ids, int n, const MaskingOptions& o, SplitMix64& rng) {
  std::vector<std::vector<int>> words;
  for (int i = 0; i < n; ++i) {
    if (ids[i] == o.cls_id || ids[i] == o.sep_id) continue;  // HF: `if token == "[CLS]" or token == "[SEP]"`
    const bool cont = ids[i] >= 0 && static_cast<size_t>(ids[i]) < o.continuation.size() && o.continuation[ids[i]];
    if (cont && !words.empty()) words.back().push_back(i);
    else words.push_back({i});
  }
  for (size_t i = words.size(); i > 1; --i) std::swap(words[i - 1], words[rng.below(i)]);  // random.shuffle
  const size_t to_predict =
      std::min<size_t>(512, std::max<size_t>(1, static_cast<size_t>(std::llround(n * o.mlm_probability))));
  std::vector<bool> selected(static_cast<size_t>(n), false);
  size_t covered = 0;
  for (const auto& w : words) {
    if (covered >= to_predict) break;
    if (covered + w.size() > to_predict) continue;
    for (int i : w) selected[static_cast<size_t>(i)] = true;
    covered += w.size();
  }
  return selected;
}

}  // namespace

MaskedSequence mask_sequence(const int32_t* ids, int n, const MaskingOptions& o, uint64_t seed, int64_t epoch,
                             uint64_t index) {
  SplitMix64 rng = keyed_stream(seed, epoch, index);
  std::vector<bool> selected;
  if (o.whole_word_mask) {
    selected = whole_word_selection(ids, n, o, rng);
    for (int i = 0; i < n; ++i) selected[i] = selected[i] && !is_special(o, ids[i]);  // special_tokens_mask
  } else {
    selected.assign(static_cast<size_t>(n), false);
    for (int i = 0; i < n; ++i) selected[i] = uniform(rng) < o.mlm_probability && !is_special(o, ids[i]);
  }
  MaskedSequence m;
  m.ids.assign(ids, ids + n);
  m.labels.assign(static_cast<size_t>(n), -100);
  for (int i = 0; i < n; ++i) {
    if (!selected[i]) continue;
    m.labels[i] = ids[i];
    if (uniform(rng) < 0.8) m.ids[i] = o.mask_id;                       // 80%: [MASK]
    else if (uniform(rng) < 0.5)                                         // half the rest: random
      m.ids[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(o.vocab_size)));
    // else: kept
  }
  return m;
}

model::Batch mlm_batch(const PackedCorpus& corpus, const std::vector<size_t>& indices, ReviewAttention attention,
                       const MaskingOptions& masking, uint64_t seed, int64_t epoch) {
  model::Batch b;
  b.offsets.push_back(0);
  for (size_t s : indices) {
    const int n = corpus.length(s);
    MaskedSequence m = mask_sequence(corpus.ids.data() + corpus.offsets[s], n, masking, seed, epoch, s);
    const int32_t base = static_cast<int32_t>(b.input_ids.size());
    b.input_ids.insert(b.input_ids.end(), m.ids.begin(), m.ids.end());
    b.labels.insert(b.labels.end(), m.labels.begin(), m.labels.end());
    if (!corpus.types.empty())
      b.token_type_ids.insert(b.token_type_ids.end(), corpus.types.begin() + corpus.offsets[s],
                              corpus.types.begin() + corpus.offsets[s + 1]);
    if (attention == ReviewAttention::Across) {
      if (!corpus.segment_labels.empty())
        throw Error("mlm_batch: next-sentence labels need each pair in its own attention sequence "
                    "(--review-attention within)");
      b.lengths.push_back(n);
      b.offsets.push_back(base + n);
      continue;
    }
    int32_t prev = 0;
    for (int64_t k = corpus.seg_offsets[s]; k < corpus.seg_offsets[s + 1]; ++k) {
      const int32_t end = corpus.segment_ends[k];
      b.lengths.push_back(end - prev);
      b.offsets.push_back(base + end);
      if (!corpus.segment_labels.empty()) b.next_sentence_labels.push_back(corpus.segment_labels[k]);
      prev = end;
    }
  }
  return b;
}

}  // namespace bertune::train
