#include "text/sentencepiece.h"

#include <sentencepiece_processor.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "io/json_error.h"
#include "io/read_file.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "util/error.h"

namespace bertune::text {
namespace fs = std::filesystem;

namespace {

// Python's str.isspace(): what str.strip() removes beside a special token.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// The code points of a UTF-8 piece.
std::u32string code_points(std::string_view s) {
  std::u32string out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    char32_t c;
    p += unicode::decode_utf8(p, end, c);
    out.push_back(c);
  }
  return out;
}

std::string_view lstrip(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    char32_t cp;
    const size_t n = unicode::decode_utf8(p, end, cp);
    if (!is_python_space(cp)) break;
    p += n;
  }
  return s.substr(static_cast<size_t>(p - reinterpret_cast<const unsigned char*>(s.data())));
}

std::string_view rstrip(std::string_view s) {
  const auto* begin = reinterpret_cast<const unsigned char*>(s.data());
  size_t keep = s.size();
  while (keep > 0) {
    size_t start = keep - 1;  // back to the first byte of the last code point
    while (start > 0 && unicode::is_continuation_byte(begin[start])) --start;
    char32_t cp;
    unicode::decode_utf8(begin + start, begin + keep, cp);
    if (!is_python_space(cp)) break;
    keep = start;
  }
  return s.substr(0, keep);
}

}  // namespace

SentencePieceBackend::SentencePieceBackend(const fs::path& model_file, std::optional<AlbertOptions> albert)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), albert_(albert) {
  if (!fs::exists(model_file)) throw Error("missing tokenizer file " + model_file.string());
  const std::string bytes = io::read_file(model_file);  // a directory, unreadable: Error naming it
  const auto status = sp_->LoadFromSerializedProto(bytes);
  if (!status.ok()) {
    // A protobuf that does not parse is reported by the library as its own source line.
    std::string why = status.message();
    if (why.find("ParseFromArray") != std::string::npos) why = "the bytes are not a ModelProto (corrupt or truncated)";
    throw Error(model_file.string() + ": not a readable SentencePiece model: " + why);
  }
  const int n = sp_->GetPieceSize();
  if (albert_) {
    // AlbertTokenizer: the model's ids; a special token the model lacks is added after its
    // pieces (PreTrainedTokenizer._add_tokens, <unk> excepted: it is the model's own).
    for (int id = 0; id < n; ++id) vocab_.push_back(sp_->IdToPiece(id));
    specials_ = {"[CLS]", "[SEP]", "<unk>", "<pad>", "[MASK]"};
    for (const std::string& s : specials_) {
      const int id = sp_->PieceToId(s);
      if (s == "<unk>" || id != sp_->unk_id()) {
        special_ids_.push_back(s == "<unk>" ? sp_->unk_id() : id);
        continue;
      }
      special_ids_.push_back(static_cast<int32_t>(vocab_.size()));
      vocab_.push_back(s);
    }
    return;
  }
  if (n < 4)
    throw Error(model_file.string() + ": a SentencePiece model of " + std::to_string(n) +
                " pieces; XLM-R's mapping needs <unk> <s> </s> and at least one more");
  // XLMRobertaTokenizer: fairseq_ids_to_tokens first, else IdToPiece(id - fairseq_offset).
  vocab_ = {"<s>", "<pad>", "</s>", "<unk>"};
  vocab_.reserve(static_cast<size_t>(n) + 2);
  for (int id = kUnk; id < n; ++id) vocab_.push_back(sp_->IdToPiece(id));
  vocab_.push_back("<mask>");
  specials_ = {"<s>", "</s>", "<unk>", "<pad>", "<mask>"};
  special_ids_ = {kBos, kEos, kUnk, kPad, static_cast<int32_t>(vocab_.size()) - 1};
}

SentencePieceBackend::~SentencePieceBackend() = default;

int32_t SentencePieceBackend::piece_id(const std::string& piece) const {
  for (size_t k = 0; k < specials_.size(); ++k)
    if (piece == specials_[k]) return special_ids_[k];
  const int id = sp_->PieceToId(piece);
  if (albert_) return id;                    // AlbertTokenizer: sp_model.PieceToId
  return id ? id + kFairseqOffset : kUnk;  // SentencePiece's own <unk> (id 0) is the fairseq <unk>
}

std::string SentencePieceBackend::preprocess(std::string_view text) const {
  const AlbertOptions& o = *albert_;
  std::u32string cps = code_points(text);
  if (o.remove_space) {  // " ".join(inputs.strip().split())
    std::u32string joined;
    bool gap = false;
    for (char32_t c : cps) {
      if (is_python_space(c)) {
        gap = !joined.empty();
        continue;
      }
      if (gap) joined.push_back(U' ');
      gap = false;
      joined.push_back(c);
    }
    cps = std::move(joined);
  }
  for (const char32_t quote : {U'`', U'\''}) {  // .replace("``", '"').replace("''", '"')
    std::u32string replaced;
    for (size_t i = 0; i < cps.size(); ++i) {
      const bool pair = cps[i] == quote && i + 1 < cps.size() && cps[i + 1] == quote;
      replaced.push_back(pair ? U'"' : cps[i]);
      i += pair;
    }
    cps = std::move(replaced);
  }
  std::string out;
  for (char32_t c : cps) unicode::append_utf8(out, c);
  if (!o.keep_accents) {  // NFKD, then the characters unicodedata.combining() calls 0
    utf8proc_uint8_t* nfkd = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(out.data()),
                                static_cast<utf8proc_ssize_t>(out.size()), &nfkd,
                                static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
    if (n < 0) throw Error(std::string("AlbertTokenizer preprocessing: ") + utf8proc_errmsg(n));
    std::string decomposed(reinterpret_cast<const char*>(nfkd), static_cast<size_t>(n));
    std::free(nfkd);
    out.clear();
    for (char32_t c : code_points(decomposed))
      if (utf8proc_get_property(static_cast<utf8proc_int32_t>(c))->combining_class == 0) unicode::append_utf8(out, c);
  }
  if (o.do_lower_case) {  // one character at a time, as tokenize() lowers the text
    std::u32string lowered;
    for (char32_t c : code_points(out)) unicode::lower_char(c, lowered);
    out.clear();
    for (char32_t c : lowered) unicode::append_utf8(out, c);
  }
  return out;
}

namespace {

// Python's str.isdigit() of one character: decimal digits (Nd) and the digits of
// Numeric_Type=Digit (superscripts, subscripts, circled and parenthesised digits, ...).
bool is_python_digit(char32_t c) {
  if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ND) return true;
  return c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0x2070 && c <= 0x2079 && c != 0x2071 && c != 0x2072 &&
                                                  c != 0x2073) ||
         (c >= 0x2080 && c <= 0x2089) || (c >= 0x2460 && c <= 0x2468) || (c >= 0x2474 && c <= 0x247C) ||
         (c >= 0x2488 && c <= 0x2490) || (c >= 0x24F5 && c <= 0x24FD) || c == 0x24EA || c == 0x24FF ||
         (c >= 0x2776 && c <= 0x277E) || (c >= 0x2780 && c <= 0x2788) || (c >= 0x278A && c <= 0x2792) ||
         (c >= 0x1F100 && c <= 0x1F10A);
}

const std::string kUnderline = "\xE2\x96\x81";  // "▁", SPIECE_UNDERLINE

}  // namespace

void SentencePieceBackend::albert_pieces(std::string_view stretch, std::vector<std::string>& out) const {
  std::vector<std::string> pieces;
  auto encode = [&](const std::string& text, std::vector<std::string>& into) {
    into.clear();
    const auto status = sp_->Encode(text, &into);
    if (!status.ok()) throw Error("SentencePiece could not encode a text: " + status.ToString());
  };
  encode(preprocess(stretch), pieces);
  out.clear();
  std::vector<std::string> cur;
  for (const std::string& piece : pieces) {
    const std::u32string cps = code_points(piece);
    if (cps.size() < 2 || cps.back() != U',' || !is_python_digit(cps[cps.size() - 2])) {
      out.push_back(piece);
      continue;
    }
    // The piece without its comma, re-encoded without "▁"s; a leading "▁" the piece did not
    // have is taken off again (a "▁" piece alone dropped); then the comma.
    std::string body = piece.substr(0, piece.size() - 1);
    for (size_t at; (at = body.find(kUnderline)) != std::string::npos;) body.erase(at, kUnderline.size());
    encode(body, cur);
    if (!piece.starts_with(kUnderline) && !cur.empty() && cur.front().starts_with(kUnderline)) {
      if (cur.front() == kUnderline) cur.erase(cur.begin());
      else cur.front().erase(0, kUnderline.size());
    }
    cur.push_back(",");
    out.insert(out.end(), cur.begin(), cur.end());
  }
}

void SentencePieceBackend::split(std::string_view text, const std::function<void(size_t, size_t)>& stretch,
                                 const std::function<void(size_t, size_t, size_t)>& special) const {
  // A stretch trimmed to the bytes of `kept` (a view into `text`); HF skips stretches the
  // stripping emptied.
  auto encode = [&](std::string_view kept) {
    const size_t begin = static_cast<size_t>(kept.data() - text.data());
    if (!kept.empty()) stretch(begin, begin + kept.size());
  };
  // Leftmost match, longest first, then the stripping of the stretches beside each special
  // token: <mask> (AddedToken lstrip=True) eats the whitespace before it, the plain-string
  // specials the whitespace on both sides.
  size_t seg = 0, pos = 0;
  bool strip_left = false;  // the stretch follows a special token other than <mask>
  while (pos < text.size()) {
    const std::string_view rest = text.substr(pos);
    size_t best = specials_.size(), best_len = 0;
    for (size_t k = 0; k < specials_.size(); ++k)
      if (specials_[k].size() > best_len && rest.starts_with(specials_[k])) {
        best = k;
        best_len = specials_[k].size();
      }
    if (best_len == 0) {
      ++pos;
      continue;
    }
    std::string_view before = rstrip(text.substr(seg, pos - seg));
    encode(strip_left ? lstrip(before) : before);
    special(best, pos, pos + best_len);
    strip_left = best != kMask;
    pos += best_len;
    seg = pos;
  }
  const std::string_view tail = text.substr(seg);
  encode(strip_left ? lstrip(tail) : tail);
}

void SentencePieceBackend::pieces(std::string_view text,
                                  const std::function<void(std::string_view, int32_t)>& emit) const {
  std::vector<std::string> out;
  split(
      text,
      [&](size_t begin, size_t end) {
        out.clear();
        if (albert_) {
          albert_pieces(text.substr(begin, end - begin), out);
        } else if (const auto status = sp_->Encode(text.substr(begin, end - begin), &out); !status.ok()) {
          throw Error("SentencePiece could not encode a text: " + status.ToString());
        }
        for (const std::string& piece : out) emit(piece, piece_id(piece));
      },
      [&](size_t k, size_t, size_t) { emit(specials_[k], special_ids_[k]); });
}

void SentencePieceBackend::pieces_with_offsets(
    std::string_view text, const std::function<void(int32_t, size_t, size_t)>& emit) const {
  if (albert_)
    throw Error("character offsets of spiece.model (AlbertTokenizer) pieces are not supported: its preprocessing "
                "rewrites the text; entity spans need a WordPiece or sentencepiece.bpe.model tokenizer");
  // Code-point index of every byte offset (a continuation byte: its code point's).
  std::vector<size_t> cp(text.size() + 1);
  for (size_t b = 0, n = 0; b <= text.size(); ++b) {
    cp[b] = n;
    if (b < text.size() && !unicode::is_continuation_byte(static_cast<unsigned char>(text[b]))) ++n;
  }
  const auto* base = reinterpret_cast<const unsigned char*>(text.data());
  auto skip_space = [&](size_t b, size_t limit) {  // past Python whitespace, up to limit
    while (b < limit) {
      char32_t c;
      const size_t n = unicode::decode_utf8(base + b, base + limit, c);
      if (!is_python_space(c)) break;
      b += n;
    }
    return b;
  };
  auto next_char = [&](size_t b) {  // the byte after the code point at b
    if (b >= text.size()) return b;
    char32_t c;
    return b + unicode::decode_utf8(base + b, base + text.size(), c);
  };
  split(
      text,
      [&](size_t begin, size_t end) {
        const sentencepiece::ImmutableSentencePieceText spt = sp_->EncodeAsImmutableProto(text.substr(begin, end - begin));
        for (size_t i = 0; i < spt.pieces_size(); ++i) {
          const auto piece = spt.pieces(static_cast<int>(i));
          // SentencePiece's span of "▁x" starts at the space the "▁" stands for.
          const size_t from = begin + piece.begin(), to = begin + piece.end();
          size_t start = skip_space(from, to), stop = to;
          if (start == stop) {  // "▁" alone: the first character of the next word
            start = skip_space(from, text.size());
            stop = next_char(start);
          }
          emit(piece_id(piece.piece()), cp[start], cp[stop]);
        }
      },
      [&](size_t k, size_t begin, size_t end) { emit(special_ids_[k], cp[begin], cp[end]); });
}

// ---------------------------------------------------------------- Tokenizer

namespace {

// tokenizer_config.json beside the model file (may be absent): its tokenizer_class must be one
// the file is read as; ALBERT's preprocessing options come from it.
AlbertOptions read_tokenizer_config(const fs::path& model_file, bool albert) {
  AlbertOptions o;
  const fs::path config = model_file.parent_path() / "tokenizer_config.json";
  if (!fs::exists(config)) return o;
  const nlohmann::json j = io::read_json_file(config);
  if (!j.is_object()) return o;
  if (j.contains("tokenizer_class") && j["tokenizer_class"].is_string()) {
    const std::string cls = j["tokenizer_class"], base = albert ? "AlbertTokenizer" : "XLMRobertaTokenizer";
    if (cls != base && cls != base + "Fast")
      throw Error(config.string() + ": tokenizer_class is \"" + cls + "\"; " + model_file.filename().string() +
                  " is read as " + base + " only (supported: " + base + ", " + base + "Fast)");
  }
  if (!albert) return o;  // XLMRobertaTokenizer has no such options
  const std::pair<const char*, bool*> flags[] = {
      {"do_lower_case", &o.do_lower_case}, {"remove_space", &o.remove_space}, {"keep_accents", &o.keep_accents}};
  for (const auto& [key, value] : flags) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (!j[key].is_boolean()) throw Error(config.string() + ": " + key + " must be true or false");
    *value = j[key].get<bool>();
  }
  return o;
}

}  // namespace

Tokenizer Tokenizer::load_sentencepiece(const fs::path& model_file) {
  const bool albert = model_file.filename() == "spiece.model";
  const AlbertOptions options = read_tokenizer_config(model_file, albert);
  auto backend = std::make_shared<const SentencePieceBackend>(model_file, albert ? std::optional(options) : std::nullopt);
  using B = SentencePieceBackend;
  SpecialTokens st;
  st.cls = backend->special_text(B::kCls), st.sep = backend->special_text(B::kSep);
  st.unk = backend->special_text(B::kUnkToken), st.pad = backend->special_text(B::kPadToken);
  st.mask = backend->special_text(B::kMask);
  Tokenizer t = from_vocab(backend->vocabulary(), BasicTokenizerOptions{}, st);
  // A piece spelled like a special token keeps its id; the name looks up the special one.
  for (B::Special s : {B::kCls, B::kSep, B::kUnkToken, B::kPadToken, B::kMask})
    t.index_.insert(backend->special_text(s), backend->special_id(s));
  t.cls_id_ = backend->special_id(B::kCls);
  t.pad_id_ = backend->special_id(B::kPadToken);
  t.sep_id_ = backend->special_id(B::kSep);
  t.unk_id_ = backend->special_id(B::kUnkToken);
  t.mask_id_ = backend->special_id(B::kMask);
  // XLM-R: <s> a </s></s> b </s>, types all 0; ALBERT: [CLS] a [SEP] b [SEP], types 0 then 1.
  if (!albert) t.pair_layout_ = PairLayout{.middle_seps = 2, .second_type = 0};
  t.sentencepiece_ = std::move(backend);
  return t;
}

std::vector<Tokenizer::Piece> Tokenizer::sentencepiece_offsets(std::string_view text) const {
  std::vector<Piece> out;
  sentencepiece_->pieces_with_offsets(text, [&](int32_t id, size_t start, size_t end) { out.push_back({id, start, end}); });
  return out;
}

}  // namespace bertune::text
