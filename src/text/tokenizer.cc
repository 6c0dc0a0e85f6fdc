#include "text/tokenizer.h"

#include <omp.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "io/atomic_file.h"
#include "io/json_error.h"
#include "text/sentencepiece.h"
#include "text/unicode.h"
#include "util/error.h"
#include "util/threads.h"

namespace bertune::text {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Per-thread buffers, reused across calls so that encoding a document
// allocates only its output vectors.
struct Scratch {
  std::string word;                 // the current whitespace word, cleaned
  std::vector<uint32_t> piece_end;  // punctuation cuts inside `word` (byte offsets)
  std::u32string cps, lowered, stripped;
  std::string transformed;
  std::string lowered_text;
  std::vector<int32_t> ids;
  std::vector<int32_t> pair_ids;  // the second text of a pair
};

Scratch& thread_scratch() {
  thread_local Scratch s;
  return s;
}

// How a whitespace word is rewritten before punctuation splitting
// (BasicTokenizer.tokenize): lower then strip accents when do_lower_case
// (unless strip_accents is false); strip accents alone when strip_accents is true.
struct WordTransform {
  bool lower = false, strip = false;
  bool split_cjk = true;  // tokenize_chinese_chars
  explicit WordTransform(const BasicTokenizerOptions& o)
      : lower(o.do_lower_case),
        strip(o.do_lower_case ? o.strip_accents != 0 : o.strip_accents == 1),
        split_cjk(o.tokenize_chinese_chars) {}
  bool any() const { return lower || strip; }
};

void transform_word(std::string_view word, const WordTransform& t, Scratch& s) {
  s.cps.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(word.data());
  const auto* end = p + word.size();
  while (p < end) {
    char32_t cp;
    p += unicode::decode_utf8(p, end, cp);
    s.cps.push_back(cp);
  }
  const std::u32string* cur = &s.cps;
  if (t.lower) {
    s.lowered.clear();
    unicode::lower_word(cur->data(), cur->size(), s.lowered);
    cur = &s.lowered;
  }
  if (t.strip) {
    s.stripped.clear();
    unicode::strip_accents(*cur, s.stripped);
    cur = &s.stripped;
  }
  s.transformed.clear();
  for (char32_t cp : *cur) unicode::append_utf8(s.transformed, cp);
}

// _run_split_on_punc on an already transformed word.
template <class Emit>
void split_on_punctuation(std::string_view word, Emit&& emit) {
  const auto* base = reinterpret_cast<const unsigned char*>(word.data());
  const auto* p = base;
  const auto* end = p + word.size();
  const unsigned char* run = p;  // start of the current non-punctuation run
  while (p < end) {
    char32_t cp;
    size_t n = unicode::decode_utf8(p, end, cp);
    if (unicode::is_punctuation(cp)) {
      if (run < p) emit(word.substr(run - base, p - run));
      emit(word.substr(p - base, n));
      run = p + n;
    }
    p += n;
  }
  if (run < end) emit(word.substr(run - base, end - run));
}

// BasicTokenizer.tokenize(text, never_split) of transformers 4.30 in one pass:
// _clean_text, _tokenize_chinese_chars, whitespace split, optional lower /
// strip accents, punctuation split. Calls emit(piece) for each output word.
// Without a transform (the klue case) punctuation cuts are recorded while the
// word is collected, so each byte is looked at once.
template <class Emit>
void basic_tokenize(std::string_view text, const WordTransform& transform, const WordSet& never_split,
                    Scratch& s, Emit&& emit) {
  std::string& word = s.word;
  std::vector<uint32_t>& cuts = s.piece_end;
  word.clear();
  cuts.clear();

  auto finish_word = [&] {
    if (word.empty()) return;
    if (never_split.contains(word)) {
      emit(std::string_view(word));
    } else if (!transform.any()) {
      if (cuts.empty() || cuts.back() != word.size()) cuts.push_back(static_cast<uint32_t>(word.size()));
      uint32_t begin = 0;
      for (uint32_t end : cuts) {
        emit(std::string_view(word).substr(begin, end - begin));
        begin = end;
      }
    } else {
      transform_word(word, transform, s);
      if (never_split.contains(s.transformed)) emit(std::string_view(s.transformed));
      else split_on_punctuation(s.transformed, emit);
    }
    word.clear();
    cuts.clear();
  };

  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    char32_t cp;
    const size_t n = unicode::decode_utf8(p, end, cp);
    switch (unicode::classify(cp)) {
      case unicode::kWord:
        word.append(reinterpret_cast<const char*>(p), n);
        break;
      case unicode::kSpace:
        finish_word();
        break;
      case unicode::kDrop:
        break;
      case unicode::kPunct:
        if (!cuts.empty() ? cuts.back() != word.size() : !word.empty())
          cuts.push_back(static_cast<uint32_t>(word.size()));
        word.append(reinterpret_cast<const char*>(p), n);
        cuts.push_back(static_cast<uint32_t>(word.size()));
        break;
      case unicode::kCjk:  // " 漢 ": a whitespace word of its own
        if (!transform.split_cjk) {
          word.append(reinterpret_cast<const char*>(p), n);
          break;
        }
        finish_word();
        word.append(reinterpret_cast<const char*>(p), n);
        finish_word();
        break;
    }
    p += n;
  }
  finish_word();
}

json read_json(const fs::path& path) { return io::read_json_file(path); }

bool json_bool(const json& j, const char* key, bool fallback, const fs::path& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(path.string() + ": field \"" + key + "\" must be true or false");
  return it->get<bool>();
}

int json_optional_bool(const json& j, const char* key, const fs::path& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return -1;
  if (!it->is_boolean()) throw Error(path.string() + ": field \"" + key + "\" must be true, false or null");
  return it->get<bool>() ? 1 : 0;
}

// A special token is a string or an AddedToken object {"content": ...}.
void json_token(const json& j, const char* key, std::string& out, const fs::path& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (it->is_string()) {
    out = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    out = (*it)["content"].get<std::string>();
  } else {
    throw Error(path.string() + ": field \"" + key + "\" must be a token string or {\"content\": ...}");
  }
}

void json_token_list(const json& j, const char* key, std::vector<std::string>& out, const fs::path& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (!it->is_array()) throw Error(path.string() + ": field \"" + key + "\" must be a list of tokens");
  for (const auto& t : *it) {
    if (t.is_string()) out.push_back(t.get<std::string>());
    else if (t.is_object() && t.contains("content") && t["content"].is_string())
      out.push_back(t["content"].get<std::string>());
    else throw Error(path.string() + ": field \"" + key + "\" holds something that is not a token");
  }
}

void read_special_tokens(const json& j, SpecialTokens& st, const fs::path& path) {
  json_token(j, "unk_token", st.unk, path);
  json_token(j, "sep_token", st.sep, path);
  json_token(j, "pad_token", st.pad, path);
  json_token(j, "cls_token", st.cls, path);
  json_token(j, "mask_token", st.mask, path);
  std::vector<std::string> extra;
  json_token_list(j, "additional_special_tokens", extra, path);
  if (!extra.empty()) st.additional = extra;
}

// tokenizer_config.json + special_tokens_map.json beside it, as
// BertTokenizer.from_pretrained reads them. HF's defaults apply to what is
// absent (do_lower_case true, like BertTokenizer's own default).
void read_tokenizer_config(const fs::path& dir, BasicTokenizerOptions& opt, SpecialTokens& st) {
  const fs::path config = dir / "tokenizer_config.json";
  if (fs::exists(config)) {
    json j = read_json(config);
    if (!j.is_object()) throw Error(config.string() + ": expected a JSON object");
    opt.do_lower_case = json_bool(j, "do_lower_case", true, config);
    opt.tokenize_chinese_chars = json_bool(j, "tokenize_chinese_chars", true, config);
    opt.strip_accents = json_optional_bool(j, "strip_accents", config);
    if (!json_bool(j, "do_basic_tokenize", true, config))
      throw Error(config.string() + ": do_basic_tokenize false is not supported");
    json_token_list(j, "never_split", opt.never_split, config);
    read_special_tokens(j, st, config);
  }
  const fs::path map = dir / "special_tokens_map.json";
  if (fs::exists(map)) {
    json j = read_json(map);
    if (!j.is_object()) throw Error(map.string() + ": expected a JSON object");
    read_special_tokens(j, st, map);
  }
}

}  // namespace

// Everything that needs the tokenizer's private state.
struct TokenizerImpl {
  struct IdSink {
    std::vector<int32_t>& ids;
    size_t mark() const { return ids.size(); }
    void rollback(size_t m) { ids.resize(m); }
    void token(const Tokenizer&, int32_t id) { ids.push_back(id); }
    void literal(const Tokenizer&, std::string_view, int32_t id) { ids.push_back(id); }
  };
  struct TextSink {
    std::vector<std::string>& tokens;
    size_t mark() const { return tokens.size(); }
    void rollback(size_t m) { tokens.resize(m); }
    void token(const Tokenizer& t, int32_t id) { tokens.push_back(t.vocab_[static_cast<size_t>(id)]); }
    void literal(const Tokenizer&, std::string_view text, int32_t) { tokens.emplace_back(text); }
  };

  static void build(Tokenizer& t, std::vector<std::string> vocab, BasicTokenizerOptions options,
                    SpecialTokens specials, std::string prefix, int max_chars, const std::string& source) {
    if (vocab.empty()) throw Error(source + ": the vocabulary is empty");
    t.vocab_ = std::move(vocab);
    t.continuing_prefix_ = std::move(prefix);
    t.max_input_chars_per_word_ = max_chars;
    for (size_t i = 0; i < t.vocab_.size(); ++i)
      if (!unicode::is_valid_utf8(t.vocab_[i]))
        throw Error(source + ": token id " + std::to_string(i) + " is not valid UTF-8");
    t.index_ = TokenMap{};
    t.continuation_ = TokenMap{};
    for (size_t i = 0; i < t.vocab_.size(); ++i) {
      const std::string& tok = t.vocab_[i];
      t.index_.insert(tok, static_cast<int32_t>(i));
      if (tok.size() >= t.continuing_prefix_.size() && tok.compare(0, t.continuing_prefix_.size(), t.continuing_prefix_) == 0)
        t.continuation_.insert(std::string_view(tok).substr(t.continuing_prefix_.size()), static_cast<int32_t>(i));
    }
    t.unk_id_ = t.index_.find(specials.unk);
    if (t.unk_id_ < 0) throw Error(source + ": the vocabulary has no unknown token " + specials.unk);
    // HF maps a special token missing from the vocabulary to the unknown id.
    auto id_of = [&](const std::string& s) {
      int32_t id = t.index_.find(s);
      return id < 0 ? t.unk_id_ : id;
    };
    t.cls_id_ = id_of(specials.cls);
    t.sep_id_ = id_of(specials.sep);
    t.pad_id_ = id_of(specials.pad);
    t.mask_id_ = id_of(specials.mask);
    // all_special_tokens: these are split out of raw text whole.
    t.special_texts_.clear();
    t.special_text_ids_.clear();
    std::vector<std::string> all = {specials.unk, specials.sep, specials.pad, specials.cls, specials.mask};
    all.insert(all.end(), specials.additional.begin(), specials.additional.end());
    std::sort(all.begin(), all.end());  // the order of HF's sorted unique_no_split_tokens
    all.erase(std::unique(all.begin(), all.end()), all.end());
    t.special_first_byte_.reset();
    for (const auto& s : all) {
      if (s.empty()) continue;
      t.special_first_byte_.set(static_cast<unsigned char>(s[0]));
      t.special_texts_.push_back(s);
      t.special_text_ids_.push_back(id_of(s));
    }
    t.never_split_config_ = WordSet(options.never_split);
    t.never_split_all_ = WordSet(options.never_split);
    for (const auto& sp : t.special_texts_) t.never_split_all_.add(sp);
    t.specials_ = std::move(specials);
    t.basic_ = BasicTokenizer(std::move(options));
  }

  // WordpieceTokenizer.tokenize on one basic-tokenizer word: greedy
  // longest-match-first; a word that cannot be covered becomes one [UNK].
  template <class Sink>
  static void wordpiece(const Tokenizer& t, std::string_view word, Sink& sink) {
    const size_t n = word.size();
    const auto max_chars = static_cast<size_t>(t.max_input_chars_per_word_);
    if (n > max_chars) {  // bytes >= code points, so only long words need counting
      size_t chars = 0;
      for (char c : word) chars += !unicode::is_continuation_byte(static_cast<unsigned char>(c));
      if (chars > max_chars) {
        sink.token(t, t.unk_id_);
        return;
      }
    }
    const size_t mark = sink.mark();
    size_t start = 0;
    while (start < n) {
      const TokenMap& map = start == 0 ? t.index_ : t.continuation_;
      // No token is longer than the longest key: start the search there.
      size_t end = std::min(n, start + map.max_key_bytes());
      while (end < n && unicode::is_continuation_byte(static_cast<unsigned char>(word[end]))) --end;
      int32_t found = -1;
      while (end > start) {
        found = map.find(word.substr(start, end - start));
        if (found >= 0) break;
        do --end;
        while (end > start && unicode::is_continuation_byte(static_cast<unsigned char>(word[end])));
      }
      if (found < 0) {
        sink.rollback(mark);
        sink.token(t, t.unk_id_);
        return;
      }
      sink.token(t, found);
      start = end;
    }
  }

  // PreTrainedTokenizer.tokenize + convert_tokens_to_ids for one text.
  template <class Sink>
  static void pieces(const Tokenizer& t, std::string_view text, Scratch& s, Sink& sink) {
    if (t.sentencepiece_) {
      t.sentencepiece_->pieces(text, [&](std::string_view piece, int32_t id) { sink.literal(t, piece, id); });
      return;
    }
    const BasicTokenizerOptions& opt = t.basic_.options();
    const WordTransform transform(opt);
    const WordSet& config_never_split = t.never_split_config_;  // basic_tokenizer.never_split
    const WordSet& all_never_split = t.never_split_all_;        // + all_special_tokens

    if (opt.do_lower_case) {
      // tokenize() lowercases everything but special tokens, one character at
      // a time (regex "(special|...)|(.+?)"), before looking for specials.
      std::string& low = s.lowered_text;
      low.clear();
      std::u32string one;
      const auto* base = reinterpret_cast<const unsigned char*>(text.data());
      const auto* p = base;
      const auto* end = p + text.size();
      while (p < end) {
        const std::string_view rest = text.substr(p - base);
        bool matched = false;
        for (const auto& sp : t.special_texts_) {
          if (rest.starts_with(sp)) {
            low += sp;
            p += sp.size();
            matched = true;
            break;
          }
        }
        if (matched) continue;
        char32_t cp;
        p += unicode::decode_utf8(p, end, cp);
        one.clear();
        unicode::lower_char(cp, one);
        for (char32_t c : one) unicode::append_utf8(low, c);
      }
      text = low;
    }

    auto emit_word = [&](std::string_view w) {
      if (!config_never_split.empty() && config_never_split.contains(w)) {
        int32_t id = t.index_.find(w);
        sink.literal(t, w, id < 0 ? t.unk_id_ : id);
      } else {
        wordpiece(t, w, sink);
      }
    };

    // The added-tokens trie: split special tokens out whole (leftmost, then
    // longest). The whitespace HF strips beside them would be dropped by the
    // basic tokenizer anyway.
    size_t seg = 0, pos = 0;
    while (pos < text.size()) {
      if (!t.special_first_byte_.test(static_cast<unsigned char>(text[pos]))) {
        ++pos;
        continue;
      }
      size_t best = 0, best_len = 0;
      const std::string_view rest = text.substr(pos);
      for (size_t k = 0; k < t.special_texts_.size(); ++k) {
        const std::string& sp = t.special_texts_[k];
        if (sp.size() > best_len && rest.starts_with(sp)) {
          best = k;
          best_len = sp.size();
        }
      }
      if (best_len == 0) {
        ++pos;
        continue;
      }
      basic_tokenize(text.substr(seg, pos - seg), transform, all_never_split, s, emit_word);
      sink.literal(t, t.special_texts_[best], t.special_text_ids_[best]);
      pos += best_len;
      seg = pos;
    }
    basic_tokenize(text.substr(seg), transform, all_never_split, s, emit_word);
  }
};

// ---------------------------------------------------------------- BasicTokenizer

BasicTokenizer::BasicTokenizer(BasicTokenizerOptions options) : options_(std::move(options)) {}

std::vector<std::string> BasicTokenizer::split(std::string_view text) const {
  std::vector<std::string> out;
  const WordSet never_split(options_.never_split);
  Scratch& s = thread_scratch();
  basic_tokenize(text, WordTransform(options_), never_split, s,
                 [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

// ---------------------------------------------------------------- loading

Tokenizer Tokenizer::from_vocab(std::vector<std::string> vocab, BasicTokenizerOptions options,
                                SpecialTokens specials) {
  Tokenizer t;
  TokenizerImpl::build(t, std::move(vocab), std::move(options), std::move(specials), "##", 100,
                       "vocabulary");
  return t;
}

Tokenizer Tokenizer::load_vocab_txt(const fs::path& dir) {
  const fs::path vocab_file = dir / "vocab.txt";
  if (!fs::exists(vocab_file)) throw Error("missing tokenizer file " + vocab_file.string());
  std::string text = io::read_text_file(vocab_file);  // a directory named vocab.txt: Error
  // load_vocab: one token per line (Python's universal newlines), id = line number.
  std::vector<std::string> vocab;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find_first_of("\r\n", begin);
    if (end == std::string::npos) {
      vocab.push_back(text.substr(begin));
      break;
    }
    vocab.push_back(text.substr(begin, end - begin));
    begin = end + (text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n' ? 2 : 1);
  }
  BasicTokenizerOptions opt;
  opt.do_lower_case = true;
  SpecialTokens st;
  read_tokenizer_config(dir, opt, st);
  Tokenizer t;
  TokenizerImpl::build(t, std::move(vocab), std::move(opt), std::move(st), "##", 100, vocab_file.string());
  return t;
}

Tokenizer Tokenizer::load_tokenizer_json(const fs::path& file) {
  if (!fs::exists(file)) throw Error("missing tokenizer file " + file.string());
  const json j = read_json(file);
  auto field = [&](const json& obj, const char* key, const char* where) -> const json& {
    if (!obj.is_object() || !obj.contains(key))
      throw Error(file.string() + ": missing field \"" + where + "\"");
    return obj[key];
  };
  const json& model = field(j, "model", "model");
  const json& type = field(model, "type", "model.type");
  if (type != "WordPiece")
    throw Error(file.string() + ": model.type is " + type.dump() + "; only WordPiece is supported");
  const json& vocab_json = field(model, "vocab", "model.vocab");
  if (!vocab_json.is_object() || vocab_json.empty())
    throw Error(file.string() + ": model.vocab must be a non-empty {token: id} object");
  std::vector<std::string> vocab(vocab_json.size());
  std::vector<bool> seen(vocab_json.size(), false);
  for (const auto& [token, id] : vocab_json.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<uint64_t>() >= vocab.size() ||
        seen[id.get<size_t>()])
      throw Error(file.string() + ": model.vocab[\"" + token + "\"] = " + id.dump() +
                  " is not a unique id in 0.." + std::to_string(vocab.size() - 1));
    seen[id.get<size_t>()] = true;
    vocab[id.get<size_t>()] = token;
  }
  SpecialTokens st;
  if (model.contains("unk_token") && model["unk_token"].is_string()) st.unk = model["unk_token"];
  std::string prefix = "##";
  if (model.contains("continuing_subword_prefix") && model["continuing_subword_prefix"].is_string())
    prefix = model["continuing_subword_prefix"];
  int max_chars = 100;
  if (model.contains("max_input_chars_per_word") && model["max_input_chars_per_word"].is_number_integer())
    max_chars = model["max_input_chars_per_word"];

  BasicTokenizerOptions opt;
  const json& norm = field(j, "normalizer", "normalizer");
  if (!norm.is_object() || norm.value("type", "") != "BertNormalizer")
    throw Error(file.string() + ": normalizer must be a BertNormalizer (got " + norm.dump().substr(0, 80) + ")");
  if (!json_bool(norm, "clean_text", true, file))
    throw Error(file.string() + ": normalizer.clean_text false is not supported");
  opt.tokenize_chinese_chars = json_bool(norm, "handle_chinese_chars", true, file);
  opt.do_lower_case = json_bool(norm, "lowercase", true, file);
  opt.strip_accents = json_optional_bool(norm, "strip_accents", file);
  const json& pre = field(j, "pre_tokenizer", "pre_tokenizer");
  if (!pre.is_object() || pre.value("type", "") != "BertPreTokenizer")
    throw Error(file.string() + ": pre_tokenizer must be a BertPreTokenizer (got " + pre.dump().substr(0, 80) + ")");

  // Special token names: the config files beside it, plus the added tokens
  // marked special.
  {
    BasicTokenizerOptions ignored;
    read_tokenizer_config(file.parent_path(), ignored, st);
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.value("special", false) || !a.contains("content") || !a["content"].is_string())
        continue;
      std::string content = a["content"];
      if (content != st.unk && content != st.sep && content != st.pad && content != st.cls &&
          content != st.mask && std::find(st.additional.begin(), st.additional.end(), content) == st.additional.end())
        st.additional.push_back(content);
    }
  }
  Tokenizer t;
  TokenizerImpl::build(t, std::move(vocab), std::move(opt), std::move(st), std::move(prefix), max_chars,
                       file.string());
  return t;
}

Tokenizer Tokenizer::load(const fs::path& dir) {
  if (fs::is_regular_file(dir)) {
    if (dir.filename() == "tokenizer.json") return load_tokenizer_json(dir);
    if (dir.filename() == "vocab.txt") return load_vocab_txt(dir.parent_path());
    if (dir.filename() == "sentencepiece.bpe.model" || dir.filename() == "spiece.model") return load_sentencepiece(dir);
    throw Error(dir.string() + " is a file; expected a tokenizer directory (vocab.txt, tokenizer.json, "
                "sentencepiece.bpe.model or spiece.model)");
  }
  if (!fs::is_directory(dir)) throw Error("tokenizer directory " + dir.string() + " does not exist");
  if (fs::exists(dir / "vocab.txt")) return load_vocab_txt(dir);
  if (fs::exists(dir / "sentencepiece.bpe.model")) return load_sentencepiece(dir / "sentencepiece.bpe.model");
  if (fs::exists(dir / "tokenizer.json")) return load_tokenizer_json(dir / "tokenizer.json");
  if (fs::exists(dir / "spiece.model")) return load_sentencepiece(dir / "spiece.model");
  throw Error("tokenizer directory " + dir.string() +
              " has neither vocab.txt nor tokenizer.json nor sentencepiece.bpe.model nor spiece.model");
}

// ---------------------------------------------------------------- encoding

int32_t Tokenizer::token_to_id(std::string_view token) const { return index_.find(token); }

std::vector<std::string> Tokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> out;
  TokenizerImpl::TextSink sink{out};
  TokenizerImpl::pieces(*this, text, thread_scratch(), sink);
  return out;
}

// Each code point's share of the basic tokenizer's output (cleaned, lowered, accents
// stripped, spaces dropped), concatenated: the words of split(text) appear in this stream
// in order, and owner[b] is the code point that byte b came from.
std::vector<Tokenizer::Piece> Tokenizer::encode_with_offsets(std::string_view text) const {
  if (sentencepiece_) return sentencepiece_offsets(text);
  std::string stream;
  std::vector<size_t> owner;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  for (size_t cp_index = 0; p < end; ++cp_index) {
    char32_t cp;
    const size_t n = unicode::decode_utf8(p, end, cp);
    for (const std::string& part : basic_.split(std::string_view(reinterpret_cast<const char*>(p), n))) {
      stream += part;
      owner.resize(stream.size(), cp_index);
    }
    p += n;
  }
  std::vector<Piece> out;
  size_t at = 0;  // in stream
  for (const std::string& word : basic_.split(text)) {
    const size_t found = stream.compare(at, word.size(), word) == 0 ? at : stream.find(word, at);
    if (found == std::string::npos || word.empty()) continue;  // a context-dependent normalisation: no span
    at = found;
    size_t offset = 0;  // in word
    for (const std::string& piece : tokenize(word)) {
      const int32_t id = token_to_id(piece);
      const bool continues = offset > 0 && piece.rfind(continuing_prefix_, 0) == 0;
      const size_t length = id == unk_id_ ? word.size() : piece.size() - (continues ? continuing_prefix_.size() : 0);
      const size_t first = std::min(at + offset, owner.size() - 1), last = std::min(at + offset + length, owner.size()) - 1;
      out.push_back({id < 0 ? unk_id_ : id, owner[first], owner[last] + 1});
      offset = std::min(offset + length, word.size());
    }
    at += word.size();
  }
  return out;
}

static void check_options(const EncodeOptions& o) {
  if (o.max_length < 0) throw Error("max_length must be >= 0 (0: no truncation)");
  if (o.add_special_tokens && o.max_length == 1)
    throw Error("max_length 1 leaves no room for [CLS] and [SEP]; use 0 (no truncation) or >= 2");
}

Encoding Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  check_options(options);
  Scratch& s = thread_scratch();
  std::vector<int32_t>& ids = s.ids;
  ids.clear();
  if (options.add_special_tokens) ids.push_back(cls_id_);
  TokenizerImpl::IdSink sink{ids};
  TokenizerImpl::pieces(*this, text, s, sink);
  const size_t max_len = static_cast<size_t>(options.max_length);
  if (options.add_special_tokens) {
    if (max_len && ids.size() + 1 > max_len) ids.resize(max_len - 1);
    ids.push_back(sep_id_);
  } else if (max_len && ids.size() > max_len) {
    ids.resize(max_len);
  }
  Encoding e;
  e.ids.assign(ids.begin(), ids.end());
  e.attention_mask.assign(ids.size(), 1);
  if (options.return_token_type_ids) e.token_type_ids.assign(ids.size(), 0);
  return e;
}

// specials: the special tokens a pair adds ([CLS] a [SEP] b [SEP]: 3).
static void check_pair_options(const EncodeOptions& o, int specials) {
  check_options(o);
  if (o.add_special_tokens && o.max_length > 0 && o.max_length < specials)
    throw Error("max_length " + std::to_string(o.max_length) + " leaves no room for a pair's " +
                std::to_string(specials) + " special tokens; use 0 (no truncation) or >= " + std::to_string(specials));
}

// PreTrainedTokenizerBase.truncate_sequences with 'longest_first' (transformers 4.30): one
// token at a time from the end of the longer sequence; on a tie from the second.
static void truncate_longest_first(std::vector<int32_t>& a, std::vector<int32_t>& b, size_t budget) {
  while (a.size() + b.size() > budget) {
    if (a.size() > b.size()) a.pop_back();
    else b.pop_back();
  }
}

Encoding Tokenizer::encode_pair(std::string_view text, std::string_view text_pair, const EncodeOptions& options) const {
  const int middle_seps = pair_layout_.middle_seps;
  check_pair_options(options, 2 + middle_seps);
  Scratch& s = thread_scratch();
  std::vector<int32_t>& a = s.ids;
  std::vector<int32_t>& b = s.pair_ids;
  a.clear();
  b.clear();
  TokenizerImpl::IdSink sink_a{a}, sink_b{b};
  TokenizerImpl::pieces(*this, text, s, sink_a);
  TokenizerImpl::pieces(*this, text_pair, s, sink_b);
  const size_t specials = options.add_special_tokens ? 2 + middle_seps : 0;  // [CLS] a [SEP] b [SEP]
  if (options.max_length > 0) truncate_longest_first(a, b, static_cast<size_t>(options.max_length) - specials);
  Encoding e;
  e.ids.reserve(a.size() + b.size() + specials);
  if (options.add_special_tokens) e.ids.push_back(cls_id_);
  e.ids.insert(e.ids.end(), a.begin(), a.end());
  if (options.add_special_tokens) e.ids.insert(e.ids.end(), static_cast<size_t>(middle_seps), sep_id_);
  const size_t first_segment = e.ids.size();  // [CLS] a [SEP]: type 0; b [SEP]: type 1 (second_type)
  e.ids.insert(e.ids.end(), b.begin(), b.end());
  if (options.add_special_tokens) e.ids.push_back(sep_id_);
  e.attention_mask.assign(e.ids.size(), 1);
  e.token_type_ids.assign(e.ids.size(), pair_layout_.second_type);
  std::fill(e.token_type_ids.begin(), e.token_type_ids.begin() + static_cast<std::ptrdiff_t>(first_segment), 0);
  return e;
}

std::vector<Encoding> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                              const EncodeOptions& options, int threads) const {
  return encode_batch(texts, {}, options, threads);
}

std::vector<Encoding> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                              const std::vector<std::string>& text_pairs,
                                              const EncodeOptions& options, int threads) const {
  const bool pairs = !text_pairs.empty();
  if (pairs && text_pairs.size() != texts.size())
    throw Error("encode_batch: " + std::to_string(texts.size()) + " texts but " + std::to_string(text_pairs.size()) +
                " text pairs");
  // Before the parallel region: nothing may throw inside it.
  if (pairs) check_pair_options(options, 2 + pair_layout_.middle_seps);
  else check_options(options);
  std::vector<Encoding> out(texts.size());
  const int n_threads = threads > 0 ? util::checked_thread_count(threads) : omp_get_max_threads();
  const auto n = static_cast<int64_t>(texts.size());
#pragma omp parallel for schedule(dynamic, 256) num_threads(n_threads)
  for (int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<size_t>(i);
    out[k] = pairs ? encode_pair(texts[k], text_pairs[k], options) : encode(texts[k], options);
  }
  return out;
}

std::vector<fs::path> tokenizer_files(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const char* name : {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
                           "sentencepiece.bpe.model", "spiece.model"})
    if (fs::is_regular_file(dir / name, ec)) files.push_back(dir / name);
  return files;
}

bool is_tokenizer_dir(const fs::path& dir) {
  std::error_code ec;
  if (dir.empty()) return false;
  for (const char* name : {"vocab.txt", "tokenizer.json", "sentencepiece.bpe.model", "spiece.model"})
    if (fs::is_regular_file(dir / name, ec)) return true;
  return false;
}

}  // namespace bertune::text
