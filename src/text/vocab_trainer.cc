#include "text/vocab_trainer.h"
#include "util/threads.h"

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/atomic_file.h"
#include "io/read_file.h"
#include "text/unicode.h"
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
  const uint64_t compressed = fs::file_size(path, ec);
  const uint64_t limit = io::gzip_expansion_limit(compressed);  // a gzip bomb stops there
  std::string text;
  std::vector<char> buf(1 << 20);
  // zlib reads plain files through unchanged, so one path serves .gz and .txt.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open corpus file " + path.string());
  gzbuffer(f, 1 << 20);
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
    if (text.size() > limit && !gzdirect(f)) {
      gzclose(f);
      io::check_gzip_expansion(text.size(), compressed, path);  // throws
    }
  }
  // A gzip stream cut short (an interrupted download) reads as its first part and gzread
  // reports nothing: zlib says so only here, as Z_BUF_ERROR.
  if (gzclose(f) != Z_OK)
    throw Error("corpus file " + path.string() + ": the gzip stream is truncated or corrupt (" +
                std::to_string(text.size()) + " bytes decompressed before it ended)");
  io::check_text_encoding(text, path);
  return text;
}

namespace {

// What save_vocab_dir writes.
constexpr const char* kVocabFiles[] = {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                                       "tokenizer.json"};

// FILE:LINE of the first malformed UTF-8 sequence, as the data readers report it: the
// counter would drop those bytes silently and train on other text than the file holds.
void require_utf8_corpus(std::string_view text, const fs::path& path) {
  const auto* begin = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = begin + text.size();
  const unsigned char* line_start = begin;
  int64_t line = 1;
  for (const unsigned char* p = begin; p < end;) {
    if (*p == '\n') {
      ++line;
      line_start = ++p;
      continue;
    }
    char32_t cp;
    const size_t n = unicode::decode_utf8(p, end, cp);
    if (cp == 0xFFFD && n == 1)  // a real U+FFFD takes 3 bytes
      throw Error(path.string() + ":" + std::to_string(line) + ": invalid UTF-8 at byte " +
                  std::to_string(p - line_start) + " (convert the text to UTF-8, e.g. iconv -f cp949 -t utf-8)");
    p += n;
  }
}

// `vocab train --output DIR` replaces DIR whole. An existing DIR is replaced only when it
// holds nothing but a vocabulary's files (an earlier `vocab train`): anything else in it —
// model weights, a corpus — would be lost with it.
void require_vocab_output(const fs::path& dir, const std::vector<fs::path>& corpus) {
  io::require_replaceable_directory(dir, "--output");
  for (const auto& p : corpus) io::require_distinct_paths(p, "--corpus", dir, "--output");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (std::find(std::begin(kVocabFiles), std::end(kVocabFiles), name) == std::end(kVocabFiles))
      throw Error("vocab train: --output " + dir.string() + " holds " + name +
                  ", which is not a vocabulary file; the directory is replaced whole, so choose a new "
                  "or empty one");
  }
}

}  // namespace

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

namespace {

// One WordPiece training run (train_wordpiece), step by step: the initial
// vocabulary (specials, alphabet, "##" forms), the words as symbol ids, the
// pair index, then the merges.
class WordPieceRun {
 public:
  WordPieceRun(const WordCounts& counts, const VocabTrainerOptions& options, TrainedVocab& out)
      : options_(options), prefix_(options.continuing_prefix), out_(out), vocab_(out.tokens) {
    sort_words(counts);
  }

  void run() {
    for (const std::string& t : options_.special_tokens) add_token(t);
    add_alphabet();
    add_continuation_forms();
    check_initial_size();
    encode_words();
    index_pairs();
    merge_until_full();
  }

 private:
  using WordCount = std::pair<const std::string, uint64_t>;

  uint32_t add_token(const std::string& t) {
    auto [it, inserted] = token_id_.try_emplace(t, static_cast<uint32_t>(vocab_.size()));
    if (inserted) vocab_.push_back(t);
    return it->second;
  }

  // Words in byte order: the rest of training then depends only on the
  // counts, never on hash-map iteration order.
  void sort_words(const WordCounts& counts) {
    sorted_.reserve(counts.size());
    for (const auto& kv : counts)
      if (kv.second > 0 && !kv.first.empty()) sorted_.push_back(&kv);
    std::sort(sorted_.begin(), sorted_.end(), [](auto* a, auto* b) { return a->first < b->first; });
    out_.distinct_words = sorted_.size();
    for (auto* kv : sorted_) out_.total_words += kv->second;
    if (sorted_.empty()) throw Error("vocab train: the corpus has no words");
  }

  // Every character weighted by its word's count; keep the limit_alphabet
  // most frequent, then add them in code-point order.
  void add_alphabet() {
    std::unordered_map<char32_t, uint64_t> char_count;
    for (auto* kv : sorted_) {
      std::string_view w = kv->first;
      for (size_t i = 0; i < w.size();) char_count[next_code_point(w, i)] += kv->second;
    }
    std::vector<std::pair<char32_t, uint64_t>> alphabet(char_count.begin(), char_count.end());
    if (options_.limit_alphabet > 0 && alphabet.size() > options_.limit_alphabet) {
      std::sort(alphabet.begin(), alphabet.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      out_.alphabet_dropped = alphabet.size() - options_.limit_alphabet;
      alphabet.resize(options_.limit_alphabet);
    }
    std::sort(alphabet.begin(), alphabet.end());
    out_.alphabet_size = alphabet.size();
    for (const auto& [cp, n] : alphabet) first_id_[cp] = add_token(utf8(cp));
  }

  // Continuation forms "##c" for kept characters seen after a word's first
  // character (the original first: a dropped first character still makes
  // the next one a continuation, as in tokenizers).
  void add_continuation_forms() {
    if (prefix_.empty()) return;
    for (auto* kv : sorted_) {
      std::string_view w = kv->first;
      size_t i = 0;
      next_code_point(w, i);
      while (i < w.size()) {
        char32_t cp = next_code_point(w, i);
        if (first_id_.count(cp)) cont_id_.emplace(cp, 0);
      }
    }
    std::vector<char32_t> order;
    for (const auto& kv : cont_id_) order.push_back(kv.first);
    std::sort(order.begin(), order.end());
    for (char32_t cp : order) cont_id_[cp] = add_token(prefix_ + utf8(cp));
    out_.continuation_forms = order.size();
  }

  void check_initial_size() const {
    if (vocab_.size() > options_.vocab_size)
      throw Error("vocab train: --vocab-size " + std::to_string(options_.vocab_size) +
                  " is smaller than the initial vocabulary of " + std::to_string(vocab_.size()) +
                  " tokens (" + std::to_string(options_.special_tokens.size()) + " special, " +
                  std::to_string(out_.alphabet_size) + " characters, " +
                  std::to_string(out_.continuation_forms) + " \"" + prefix_ +
                  "\" forms); raise --vocab-size or lower --limit-alphabet");
  }

  // Words as symbol-id sequences.
  void encode_words() {
    words_.resize(sorted_.size());
    word_count_.resize(sorted_.size());
    for (size_t wi = 0; wi < sorted_.size(); ++wi) {
      std::string_view w = sorted_[wi]->first;
      word_count_[wi] = sorted_[wi]->second;
      bool first = true;
      for (size_t i = 0; i < w.size(); first = false) {
        char32_t cp = next_code_point(w, i);
        auto f = first_id_.find(cp);
        if (f == first_id_.end()) continue;  // cut by limit_alphabet
        words_[wi].push_back(first || prefix_.empty() ? f->second : cont_id_.at(cp));
      }
    }
  }

  // Pair counts and, per pair, the words holding it.
  void index_pairs() {
    std::vector<std::pair<Pair, uint32_t>> where;
    for (size_t wi = 0; wi < words_.size(); ++wi) {
      const auto& w = words_[wi];
      for (size_t i = 0; i + 1 < w.size(); ++i)
        where.emplace_back(make_pair_id(w[i], w[i + 1]), static_cast<uint32_t>(wi));
    }
    std::sort(where.begin(), where.end());
    pair_count_.reserve(where.size() / 2);
    for (size_t i = 0; i < where.size();) {
      Pair p = where[i].first;
      int64_t n = 0;
      std::vector<uint32_t> ws;
      for (; i < where.size() && where[i].first == p; ++i) {
        uint32_t wi = where[i].second;
        n += static_cast<int64_t>(word_count_[wi]);
        if (ws.empty() || ws.back() != wi) ws.push_back(wi);
      }
      pair_count_[p] = n;
      if (n > 0) queue_.push(static_cast<uint64_t>(n), p, std::move(ws));
    }
  }

  // Merge the best pair until the vocabulary is full. Like tokenizers, a
  // merge only applies to the words of the queue entry that won; an older
  // entry of the same pair (words where it formed later) applies when it
  // reaches the top in turn, adding no new token.
  void merge_until_full() {
    out_.stop_reason = "reached vocab size";
    while (vocab_.size() < options_.vocab_size) {
      if (queue_.empty()) {
        out_.stop_reason = "no pairs left to merge";
        break;
      }
      QueueEntry top = queue_.pop();
      uint64_t current = static_cast<uint64_t>(std::max<int64_t>(0, pair_count_[top.pair]));
      if (top.count != current) {
        top.count = current;
        queue_.push_entry(top);
        continue;
      }
      if (top.count < 1 || top.count < options_.min_frequency) {
        out_.stop_reason = "best pair count " + std::to_string(top.count) + " below min frequency";
        break;
      }
      apply_merge(top);
    }
  }

  void apply_merge(const QueueEntry& top) {
    uint32_t a = pair_left(top.pair), b = pair_right(top.pair);
    std::string_view right = vocab_[b];
    if (!prefix_.empty() && right.substr(0, prefix_.size()) == prefix_) right.remove_prefix(prefix_.size());
    uint32_t merged = add_token(vocab_[a] + std::string(right));
    ++out_.merges;

    formed_.clear();
    for (uint32_t wi : queue_.words(top.slot)) merge_in_word(wi, a, b, merged);
    queue_.release(top.slot);

    std::sort(formed_.begin(), formed_.end());
    for (size_t i = 0; i < formed_.size();) {
      Pair p = formed_[i].first;
      std::vector<uint32_t> ws;
      for (; i < formed_.size() && formed_[i].first == p; ++i)
        if (ws.empty() || ws.back() != formed_[i].second) ws.push_back(formed_[i].second);
      int64_t n = pair_count_[p];
      if (n > 0) queue_.push(static_cast<uint64_t>(n), p, std::move(ws));
    }
  }

  // Left-to-right, non-overlapping, in place; the neighbour pairs that
  // disappear or appear are reported exactly as tokenizers' Word::merge.
  void merge_in_word(uint32_t wi, uint32_t a, uint32_t b, uint32_t merged) {
    std::vector<uint32_t>& w = words_[wi];
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

  void change(Pair p, int delta, uint32_t wi) {
    pair_count_[p] += delta * static_cast<int64_t>(word_count_[wi]);
    if (delta > 0 && (formed_.empty() || formed_.back() != std::make_pair(p, wi)))
      formed_.emplace_back(p, wi);
  }

  const VocabTrainerOptions& options_;
  const std::string& prefix_;
  TrainedVocab& out_;
  std::vector<std::string>& vocab_;  // out_.tokens
  std::vector<const WordCount*> sorted_;
  std::unordered_map<std::string, uint32_t> token_id_;
  std::unordered_map<char32_t, uint32_t> first_id_;  // kept character -> its id
  std::unordered_map<char32_t, uint32_t> cont_id_;   // kept character -> its "##" form's id
  std::vector<std::vector<uint32_t>> words_;
  std::vector<uint64_t> word_count_;
  std::unordered_map<Pair, int64_t, PairHash> pair_count_;
  MergeQueue queue_;
  std::vector<std::pair<Pair, uint32_t>> formed_;  // (new pair, word) of this merge step
};

}  // namespace

TrainedVocab train_wordpiece(const WordCounts& counts, const VocabTrainerOptions& options) {
  TrainedVocab out;
  WordPieceRun(counts, options, out).run();
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

  // The same fields as klue/bert-base's tokenizer_config.json, so
  // transformers' BertTokenizer and our Tokenizer::load read it alike.
  const nlohmann::ordered_json config = {
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
  const nlohmann::ordered_json specials = {{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"},
                                     {"pad_token", "[PAD]"}, {"cls_token", "[CLS]"},
                                     {"mask_token", "[MASK]"}};

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
  const J tokenizer = {
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
  // All four or none: a folder holding vocab.txt alone (a full disk half way) loads, with
  // tokenizer_config.json's do_lower_case missing, and splits text other than training did.
  io::write_directory_atomic(dir, [&](const fs::path& staging) {
    io::write_file_atomic(staging / "vocab.txt", text);
    io::write_file_atomic(staging / "tokenizer_config.json", config.dump(2) + "\n");
    io::write_file_atomic(staging / "special_tokens_map.json", specials.dump(2) + "\n");
    io::write_file_atomic(staging / "tokenizer.json", tokenizer.dump(2) + "\n");
  });
}

TrainedVocab train_vocab_files(const std::vector<fs::path>& corpus,
                               const VocabTrainerOptions& options, bool lowercase, int threads,
                               const fs::path& output_dir, VocabTrainStats* stats,
                               const std::function<void(const std::string&)>& progress) {
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
  for (const auto& p : corpus)
    if (!fs::is_regular_file(p, ec))
      throw Error("corpus file " + p.string() + ": " +
                  (fs::exists(p, ec) ? "not a regular file" : "no such file"));
  require_vocab_output(output_dir, corpus);
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
    require_utf8_corpus(text, p);
    st.read_seconds += seconds_since(t0);
    t0 = clock::now();
    WordCounts c = count_words(text, split, threads);
    uint64_t words = 0;
    for (const auto& [word, n] : c) words += n;
    if (counts.empty())
      counts = std::move(c);
    else
      add_word_counts(counts, c);
    st.count_seconds += seconds_since(t0);
    if (progress) {
      progress("counted " + p.string() + ": " + std::to_string(words) + " words, " +
               std::to_string(counts.size()) + " distinct so far");
    }
  }

  if (progress) progress("merging to " + std::to_string(options.vocab_size) + " tokens");
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
