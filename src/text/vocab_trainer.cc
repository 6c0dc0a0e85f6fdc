#include "text/vocab_trainer.h"
#include "util/threads.h"

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/atomic_file.h"
#include "util/error.h"

namespace bertune::text {
namespace fs = std::filesystem;

namespace {

// Decodes one UTF-8 code point at s[i] and advances i. A malformed byte
// becomes U+FFFD on its own so every byte is consumed exactly once.
char32_t next_code_point(std::string_view s, size_t& i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc >> 6) != 2) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  i += len;
  return cp;
}

std::string utf8(char32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// A pair of symbol ids packed so that comparing the packed values compares
// (left, right) lexicographically, as tokenizers' tuple comparison does.
using Pair = uint64_t;
inline Pair make_pair_id(uint32_t left, uint32_t right) { return (uint64_t(left) << 32) | right; }
inline uint32_t pair_left(Pair p) { return static_cast<uint32_t>(p >> 32); }
inline uint32_t pair_right(Pair p) { return static_cast<uint32_t>(p); }

struct PairHash {
  size_t operator()(Pair x) const {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
};

// One queued merge candidate. As in tokenizers, a pair can sit in the queue
// several times, each entry carrying the words where it was (re)formed; the
// count is refreshed lazily when an entry reaches the top.
struct QueueEntry {
  uint64_t count;
  Pair pair;
  uint32_t slot;  // index of its word list in the pool
};
// Max-heap order: larger count first, then the smaller pair.
struct QueueLess {
  bool operator()(const QueueEntry& a, const QueueEntry& b) const {
    if (a.count != b.count) return a.count < b.count;
    return a.pair > b.pair;
  }
};

class MergeQueue {
 public:
  void push(uint64_t count, Pair pair, std::vector<uint32_t>&& words) {
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
      pool_[slot] = std::move(words);
    } else {
      slot = static_cast<uint32_t>(pool_.size());
      pool_.push_back(std::move(words));
    }
    push_entry({count, pair, slot});
  }
  void push_entry(const QueueEntry& e) {
    heap_.push_back(e);
    std::push_heap(heap_.begin(), heap_.end(), QueueLess{});
  }
  QueueEntry pop() {
    std::pop_heap(heap_.begin(), heap_.end(), QueueLess{});
    QueueEntry e = heap_.back();
    heap_.pop_back();
    return e;
  }
  bool empty() const { return heap_.empty(); }
  const std::vector<uint32_t>& words(uint32_t slot) const { return pool_[slot]; }
  void release(uint32_t slot) {
    std::vector<uint32_t>().swap(pool_[slot]);
    free_.push_back(slot);
  }

 private:
  std::vector<QueueEntry> heap_;
  std::vector<std::vector<uint32_t>> pool_;
  std::vector<uint32_t> free_;
};

}  // namespace

std::string read_corpus_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error("corpus file " + path.string() + ": " +
                (fs::exists(path, ec) ? "not a regular file" : "no such file"));
  // zlib reads plain files through unchanged, so one path serves .gz and .txt.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open corpus file " + path.string());
  gzbuffer(f, 1 << 20);
  std::string text;
  std::vector<char> buf(1 << 20);
  for (;;) {
    int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw Error("cannot read corpus file " + path.string() + ": " + msg);
    }
    if (n == 0) break;
    text.append(buf.data(), static_cast<size_t>(n));
  }
  gzclose(f);
  return text;
}

void add_word_counts(WordCounts& into, const WordCounts& from) {
  for (const auto& [word, n] : from) into[word] += n;
}

WordCounts count_words(std::string_view text, const WordSplitter& split, int threads) {
  threads = util::checked_thread_count(std::max(1, threads));
  // Contiguous byte ranges that start at line starts; each thread counts its
  // own range into its own map, and the maps are summed (order-free).
  std::vector<size_t> bounds{0};
  for (int t = 1; t < threads; ++t) {
    size_t b = text.size() * t / threads;
    b = std::max(b, bounds.back());
    size_t nl = text.find('\n', b);
    bounds.push_back(nl == std::string_view::npos ? text.size() : nl + 1);
  }
  bounds.push_back(text.size());

  std::vector<WordCounts> partial(threads);
  auto work = [&](int t) {
    std::vector<std::string> words;
    WordCounts& counts = partial[t];
    size_t pos = bounds[t], end = bounds[t + 1];
    while (pos < end) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string_view::npos || nl > end) nl = end;
      words.clear();
      split(text.substr(pos, nl - pos), words);
      for (std::string& w : words) ++counts.try_emplace(std::move(w), 0).first->second;
      pos = nl + 1;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();

  // Fold the smaller maps into the largest.
  size_t biggest = 0;
  for (int t = 1; t < threads; ++t)
    if (partial[t].size() > partial[biggest].size()) biggest = t;
  WordCounts result = std::move(partial[biggest]);
  for (int t = 0; t < threads; ++t)
    if (static_cast<size_t>(t) != biggest) add_word_counts(result, partial[t]);
  return result;
}

TrainedVocab train_wordpiece(const WordCounts& counts, const VocabTrainerOptions& options) {
  TrainedVocab out;
  const std::string& prefix = options.continuing_prefix;

  // Words in byte order: the rest of training then depends only on the
  // counts, never on hash-map iteration order.
  std::vector<const std::pair<const std::string, uint64_t>*> sorted;
  sorted.reserve(counts.size());
  for (const auto& kv : counts)
    if (kv.second > 0 && !kv.first.empty()) sorted.push_back(&kv);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  out.distinct_words = sorted.size();
  for (auto* kv : sorted) out.total_words += kv->second;
  if (sorted.empty()) throw Error("vocab train: the corpus has no words");

  // 1. Special tokens.
  std::vector<std::string>& vocab = out.tokens;
  std::unordered_map<std::string, uint32_t> token_id;
  auto add_token = [&](const std::string& t) {
    auto [it, inserted] = token_id.try_emplace(t, static_cast<uint32_t>(vocab.size()));
    if (inserted) vocab.push_back(t);
    return it->second;
  };
  for (const std::string& t : options.special_tokens) add_token(t);

  // 2. Alphabet: every character weighted by its word's count; keep the
  // limit_alphabet most frequent, then add them in code-point order.
  std::unordered_map<char32_t, uint64_t> char_count;
  for (auto* kv : sorted) {
    std::string_view w = kv->first;
    for (size_t i = 0; i < w.size();) char_count[next_code_point(w, i)] += kv->second;
  }
  std::vector<std::pair<char32_t, uint64_t>> alphabet(char_count.begin(), char_count.end());
  if (options.limit_alphabet > 0 && alphabet.size() > options.limit_alphabet) {
    std::sort(alphabet.begin(), alphabet.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    out.alphabet_dropped = alphabet.size() - options.limit_alphabet;
    alphabet.resize(options.limit_alphabet);
  }
  std::sort(alphabet.begin(), alphabet.end());
  out.alphabet_size = alphabet.size();
  std::unordered_map<char32_t, uint32_t> first_id;  // kept character → its id
  for (const auto& [cp, n] : alphabet) first_id[cp] = add_token(utf8(cp));

  // 3. Continuation forms "##c" for kept characters seen after a word's first
  // character (the original first: a dropped first character still makes
  // the next one a continuation, as in tokenizers).
  std::unordered_map<char32_t, uint32_t> cont_id;
  if (!prefix.empty()) {
    for (auto* kv : sorted) {
      std::string_view w = kv->first;
      size_t i = 0;
      next_code_point(w, i);
      while (i < w.size()) {
        char32_t cp = next_code_point(w, i);
        if (first_id.count(cp)) cont_id.emplace(cp, 0);
      }
    }
    std::vector<char32_t> order;
    for (const auto& kv : cont_id) order.push_back(kv.first);
    std::sort(order.begin(), order.end());
    for (char32_t cp : order) cont_id[cp] = add_token(prefix + utf8(cp));
    out.continuation_forms = order.size();
  }

  if (vocab.size() > options.vocab_size)
    throw Error("vocab train: --vocab-size " + std::to_string(options.vocab_size) +
                " is smaller than the initial vocabulary of " + std::to_string(vocab.size()) +
                " tokens (" + std::to_string(options.special_tokens.size()) + " special, " +
                std::to_string(out.alphabet_size) + " characters, " +
                std::to_string(out.continuation_forms) + " \"" + prefix +
                "\" forms); raise --vocab-size or lower --limit-alphabet");

  // 4. Words as symbol-id sequences.
  std::vector<std::vector<uint32_t>> words(sorted.size());
  std::vector<uint64_t> word_count(sorted.size());
  for (size_t wi = 0; wi < sorted.size(); ++wi) {
    std::string_view w = sorted[wi]->first;
    word_count[wi] = sorted[wi]->second;
    bool first = true;
    for (size_t i = 0; i < w.size(); first = false) {
      char32_t cp = next_code_point(w, i);
      auto f = first_id.find(cp);
      if (f == first_id.end()) continue;  // cut by limit_alphabet
      words[wi].push_back(first || prefix.empty() ? f->second : cont_id.at(cp));
    }
  }

  // 5. Pair counts and, per pair, the words holding it.
  std::unordered_map<Pair, int64_t, PairHash> pair_count;
  MergeQueue queue;
  {
    std::vector<std::pair<Pair, uint32_t>> where;
    for (size_t wi = 0; wi < words.size(); ++wi) {
      const auto& w = words[wi];
      for (size_t i = 0; i + 1 < w.size(); ++i)
        where.emplace_back(make_pair_id(w[i], w[i + 1]), static_cast<uint32_t>(wi));
    }
    std::sort(where.begin(), where.end());
    pair_count.reserve(where.size() / 2);
    for (size_t i = 0; i < where.size();) {
      Pair p = where[i].first;
      int64_t n = 0;
      std::vector<uint32_t> ws;
      for (; i < where.size() && where[i].first == p; ++i) {
        uint32_t wi = where[i].second;
        n += static_cast<int64_t>(word_count[wi]);
        if (ws.empty() || ws.back() != wi) ws.push_back(wi);
      }
      pair_count[p] = n;
      if (n > 0) queue.push(static_cast<uint64_t>(n), p, std::move(ws));
    }
  }

  // 6. Merge the best pair until the vocabulary is full. Like tokenizers, a
  // merge only applies to the words of the queue entry that won; an older
  // entry of the same pair (words where it formed later) applies when it
  // reaches the top in turn, adding no new token.
  std::vector<std::pair<Pair, uint32_t>> formed;  // (new pair, word) this step
  auto change = [&](Pair p, int delta, uint32_t wi) {
    pair_count[p] += delta * static_cast<int64_t>(word_count[wi]);
    if (delta > 0 && (formed.empty() || formed.back() != std::make_pair(p, wi)))
      formed.emplace_back(p, wi);
  };
  out.stop_reason = "reached vocab size";
  while (vocab.size() < options.vocab_size) {
    if (queue.empty()) {
      out.stop_reason = "no pairs left to merge";
      break;
    }
    QueueEntry top = queue.pop();
    uint64_t current = static_cast<uint64_t>(std::max<int64_t>(0, pair_count[top.pair]));
    if (top.count != current) {
      top.count = current;
      queue.push_entry(top);
      continue;
    }
    if (top.count < 1 || top.count < options.min_frequency) {
      out.stop_reason = "best pair count " + std::to_string(top.count) + " below min frequency";
      break;
    }
    uint32_t a = pair_left(top.pair), b = pair_right(top.pair);
    std::string_view right = vocab[b];
    if (!prefix.empty() && right.substr(0, prefix.size()) == prefix) right.remove_prefix(prefix.size());
    uint32_t merged = add_token(vocab[a] + std::string(right));
    ++out.merges;

    formed.clear();
    for (uint32_t wi : queue.words(top.slot)) {
      // Left-to-right, non-overlapping, in place; the neighbour pairs that
      // disappear or appear are reported exactly as tokenizers' Word::merge.
      std::vector<uint32_t>& w = words[wi];
      size_t n = w.size(), kept = 0;
      for (size_t i = 0; i < n;) {
        if (i + 1 < n && w[i] == a && w[i + 1] == b) {
          if (kept > 0) {
            change(make_pair_id(w[kept - 1], a), -1, wi);
            change(make_pair_id(w[kept - 1], merged), +1, wi);
          }
          if (i + 2 < n) {
            change(make_pair_id(b, w[i + 2]), -1, wi);
            change(make_pair_id(merged, w[i + 2]), +1, wi);
          }
          w[kept++] = merged;
          i += 2;
        } else {
          w[kept++] = w[i++];
        }
      }
      w.resize(kept);
    }
    queue.release(top.slot);

    std::sort(formed.begin(), formed.end());
    for (size_t i = 0; i < formed.size();) {
      Pair p = formed[i].first;
      std::vector<uint32_t> ws;
      for (; i < formed.size() && formed[i].first == p; ++i)
        if (ws.empty() || ws.back() != formed[i].second) ws.push_back(formed[i].second);
      int64_t n = pair_count[p];
      if (n > 0) queue.push(static_cast<uint64_t>(n), p, std::move(ws));
    }
  }
  return out;
}

void save_vocab_dir(const TrainedVocab& vocab, const fs::path& dir, bool lowercase) {
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    if (std::find(vocab.tokens.begin(), vocab.tokens.end(), t) == vocab.tokens.end())
      throw Error(std::string("vocab: special token ") + t + " missing; nothing written to " +
                  dir.string());
  std::string text;
  for (const std::string& t : vocab.tokens) {
    if (t.find_first_of("\r\n") != std::string::npos)
      throw Error("vocab train: token with a line break cannot be written to vocab.txt");
    text += t;
    text += '\n';
  }
  fs::create_directories(dir);
  io::write_file_atomic(dir / "vocab.txt", text);

  // The same fields as klue/bert-base's tokenizer_config.json, so
  // transformers' BertTokenizer and our Tokenizer::load read it alike.
  nlohmann::ordered_json config = {
      {"do_lower_case", lowercase},
      {"do_basic_tokenize", true},
      {"never_split", nullptr},
      {"unk_token", "[UNK]"},
      {"sep_token", "[SEP]"},
      {"pad_token", "[PAD]"},
      {"cls_token", "[CLS]"},
      {"mask_token", "[MASK]"},
      {"tokenize_chinese_chars", true},
      {"strip_accents", nullptr},
      {"model_max_length", 512},
      {"tokenizer_class", "BertTokenizer"},
  };
  io::write_file_atomic(dir / "tokenizer_config.json", config.dump(2) + "\n");
  nlohmann::ordered_json specials = {{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"},
                                     {"pad_token", "[PAD]"}, {"cls_token", "[CLS]"},
                                     {"mask_token", "[MASK]"}};
  io::write_file_atomic(dir / "special_tokens_map.json", specials.dump(2) + "\n");

  // tokenizer.json for Hugging Face's fast tokenizer, laid out as klue's:
  // the specials as added tokens, BertNormalizer/BertPreTokenizer with the
  // training options, [CLS] A [SEP] (B [SEP]) post-processing, WordPiece.
  using J = nlohmann::ordered_json;
  J added = J::array();
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    auto it = std::find(vocab.tokens.begin(), vocab.tokens.end(), t);
    added.push_back({{"id", it - vocab.tokens.begin()}, {"special", true}, {"content", t},
                     {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}});
  }
  auto special = [](const char* t, int type) { return J{{"SpecialToken", {{"id", t}, {"type_id", type}}}}; };
  auto sequence = [](const char* s, int type) { return J{{"Sequence", {{"id", s}, {"type_id", type}}}}; };
  auto id_of = [&](const char* t) {
    return std::find(vocab.tokens.begin(), vocab.tokens.end(), t) - vocab.tokens.begin();
  };
  J model_vocab = J::object();
  for (size_t i = 0; i < vocab.tokens.size(); ++i) model_vocab[vocab.tokens[i]] = i;
  J tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
        {"strip_accents", nullptr}, {"lowercase", lowercase}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)}},
        {"pair",
         {special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0), sequence("B", 1),
          special("[SEP]", 1)}},
        {"special_tokens",
         {{"[CLS]", {{"id", "[CLS]"}, {"ids", {id_of("[CLS]")}}, {"tokens", {"[CLS]"}}}},
          {"[SEP]", {{"id", "[SEP]"}, {"ids", {id_of("[SEP]")}}, {"tokens", {"[SEP]"}}}}}}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
      {"model",
       {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
        {"max_input_chars_per_word", 100}, {"vocab", model_vocab}}},
  };
  io::write_file_atomic(dir / "tokenizer.json", tokenizer.dump(2) + "\n");
}

TrainedVocab train_vocab_files(const std::vector<fs::path>& corpus,
                               const VocabTrainerOptions& options, bool lowercase, int threads,
                               const fs::path& output_dir, VocabTrainStats* stats) {
  using clock = std::chrono::steady_clock;
  auto seconds_since = [](clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  };
  VocabTrainStats local;
  VocabTrainStats& st = stats ? *stats : local;

  // Every check that can fail comes before the first write.
  if (corpus.empty()) throw Error("vocab train: no --corpus file given");
  if (options.vocab_size == 0) throw Error("vocab train: --vocab-size must be positive");
  if (output_dir.empty()) throw Error("vocab train: --output is empty");
  std::error_code ec;
  if (fs::exists(output_dir, ec) && !fs::is_directory(output_dir, ec))
    throw Error("vocab train: --output " + output_dir.string() + " exists and is not a directory");
  for (const auto& p : corpus)
    if (!fs::is_regular_file(p, ec))
      throw Error("corpus file " + p.string() + ": " +
                  (fs::exists(p, ec) ? "not a regular file" : "no such file"));
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    if (std::find(options.special_tokens.begin(), options.special_tokens.end(), t) ==
        options.special_tokens.end())
      throw Error(std::string("vocab train: special token ") + t + " missing");

  BasicTokenizerOptions basic_options;
  basic_options.do_lower_case = lowercase;
  BasicTokenizer basic(basic_options);
  WordSplitter split = [&basic](std::string_view line, std::vector<std::string>& words) {
    std::vector<std::string> w = basic.split(line);
    for (auto& s : w) words.push_back(std::move(s));
  };

  WordCounts counts;
  for (const auto& p : corpus) {
    auto t0 = clock::now();
    std::string text = read_corpus_file(p);
    st.read_seconds += seconds_since(t0);
    t0 = clock::now();
    WordCounts c = count_words(text, split, threads);
    if (counts.empty())
      counts = std::move(c);
    else
      add_word_counts(counts, c);
    st.count_seconds += seconds_since(t0);
  }

  auto t0 = clock::now();
  TrainedVocab vocab = train_wordpiece(counts, options);
  st.train_seconds = seconds_since(t0);
  t0 = clock::now();
  save_vocab_dir(vocab, output_dir, lowercase);
  st.save_seconds = seconds_since(t0);
  return vocab;
}

CoverageStats measure_coverage(const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                               int threads) {
  CoverageStats st;
  std::vector<Encoding> enc = tokenizer.encode_batch(texts, {}, threads);
  for (const Encoding& e : enc) {
    // ids are [CLS] ... [SEP]; only the pieces between count as tokens.
    uint64_t unk = 0;
    for (size_t i = 1; i + 1 < e.ids.size(); ++i) unk += e.ids[i] == tokenizer.unk_id();
    st.documents += 1;
    st.tokens_with_specials += e.ids.size();
    st.tokens += e.ids.size() >= 2 ? e.ids.size() - 2 : 0;
    st.unk_tokens += unk;
    st.docs_with_unk += unk > 0;
  }
  return st;
}

}  // namespace bertune::text
