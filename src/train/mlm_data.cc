#include "train/mlm_data.h"

#include <algorithm>
#include <cmath>

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

CorpusSplit split_heldout(ReviewCorpus all, size_t heldout, uint64_t seed) {
  if (heldout >= all.reviews.size())
    throw Error("--validation-reviews " + std::to_string(heldout) + ": " + all.source + " has only " +
                std::to_string(all.reviews.size()) + " reviews; at least one must remain for training");
  const std::vector<size_t> perm = data::shuffled_indices(all.reviews.size(), seed);
  std::vector<bool> held(all.reviews.size(), false);
  for (size_t i = 0; i < heldout; ++i) held[perm[i]] = true;
  CorpusSplit s;
  s.train.source = s.heldout.source = all.source;
  // Held-out reviews in shuffled order, training reviews in file order.
  for (size_t i = 0; i < heldout; ++i) {
    s.heldout.reviews.push_back(std::move(all.reviews[perm[i]]));
    s.heldout.lines.push_back(all.lines[perm[i]]);
  }
  for (size_t i = 0; i < all.reviews.size(); ++i) {
    if (held[i]) continue;
    s.train.reviews.push_back(std::move(all.reviews[i]));
    s.train.lines.push_back(all.lines[i]);
  }
  return s;
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

PackedCorpus pack_reviews(const std::vector<std::string>& reviews, const text::Tokenizer& tok, int max_length,
                          int threads) {
  if (max_length < 3) throw Error("--max-length: packing needs at least 3 ([CLS] a token [SEP])");
  text::EncodeOptions eo;
  eo.add_special_tokens = false;
  const std::vector<text::Encoding> enc = tok.encode_batch(reviews, eo, threads);
  PackedCorpus p;
  p.ids.reserve(reviews.size() * 24);
  int64_t start = 0;  // of the open sequence in p.ids; none open when start == ids.size()
  auto close = [&] {
    if (static_cast<int64_t>(p.ids.size()) == start) return;
    p.offsets.push_back(static_cast<int64_t>(p.ids.size()));
    p.seg_offsets.push_back(static_cast<int64_t>(p.segment_ends.size()));
    start = static_cast<int64_t>(p.ids.size());
  };
  for (const auto& e : enc) {
    if (e.ids.empty()) continue;
    size_t n = e.ids.size();
    if (n > static_cast<size_t>(max_length - 2)) {
      n = static_cast<size_t>(max_length - 2);
      ++p.truncated_reviews;
    }
    const int64_t open = static_cast<int64_t>(p.ids.size()) - start;
    if (open > 0 && open + static_cast<int64_t>(n) + 1 > max_length) close();
    if (static_cast<int64_t>(p.ids.size()) == start) p.ids.push_back(tok.cls_id());
    p.ids.insert(p.ids.end(), e.ids.begin(), e.ids.begin() + static_cast<std::ptrdiff_t>(n));
    p.ids.push_back(tok.sep_id());
    p.segment_ends.push_back(static_cast<int32_t>(static_cast<int64_t>(p.ids.size()) - start));
  }
  close();
  if (p.size() == 0) throw Error("no review produced any token");
  return p;
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
    if (attention == ReviewAttention::Across) {
      b.lengths.push_back(n);
      b.offsets.push_back(base + n);
      continue;
    }
    int32_t prev = 0;
    for (int64_t k = corpus.seg_offsets[s]; k < corpus.seg_offsets[s + 1]; ++k) {
      const int32_t end = corpus.segment_ends[k];
      b.lengths.push_back(end - prev);
      b.offsets.push_back(base + end);
      prev = end;
    }
  }
  return b;
}

}  // namespace bertune::train
