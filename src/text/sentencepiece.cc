#include "text/sentencepiece.h"

#include <sentencepiece_processor.h>

#include <algorithm>
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

SentencePieceBackend::SentencePieceBackend(const fs::path& model_file)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
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
  if (n < 4)
    throw Error(model_file.string() + ": a SentencePiece model of " + std::to_string(n) +
                " pieces; XLM-R's mapping needs <unk> <s> </s> and at least one more");
  // XLMRobertaTokenizer: fairseq_ids_to_tokens first, else IdToPiece(id - fairseq_offset).
  vocab_ = {"<s>", "<pad>", "</s>", "<unk>"};
  vocab_.reserve(static_cast<size_t>(n) + 2);
  for (int id = kUnk; id < n; ++id) vocab_.push_back(sp_->IdToPiece(id));
  vocab_.push_back("<mask>");
  specials_ = {"<s>", "</s>", "<unk>", "<pad>", "<mask>"};
  special_ids_ = {kBos, kEos, kUnk, kPad, mask_id()};
}

SentencePieceBackend::~SentencePieceBackend() = default;

int32_t SentencePieceBackend::piece_id(const std::string& piece) const {
  for (size_t k = 0; k < specials_.size(); ++k)
    if (piece == specials_[k]) return special_ids_[k];
  const int id = sp_->PieceToId(piece);
  return id ? id + kFairseqOffset : kUnk;  // SentencePiece's own <unk> (id 0) is the fairseq <unk>
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
    strip_left = special_ids_[best] != mask_id();
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
        const auto status = sp_->Encode(text.substr(begin, end - begin), &out);
        if (!status.ok()) throw Error("SentencePiece could not encode a text: " + status.ToString());
        for (const std::string& piece : out) emit(piece, piece_id(piece));
      },
      [&](size_t k, size_t, size_t) { emit(specials_[k], special_ids_[k]); });
}

void SentencePieceBackend::pieces_with_offsets(
    std::string_view text, const std::function<void(int32_t, size_t, size_t)>& emit) const {
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

Tokenizer Tokenizer::load_sentencepiece(const fs::path& model_file) {
  // tokenizer_config.json may name the class; only XLMRobertaTokenizer's mapping is known here.
  const fs::path config = model_file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config)) {
    const nlohmann::json j = io::read_json_file(config);
    if (j.is_object() && j.contains("tokenizer_class") && j["tokenizer_class"].is_string()) {
      const std::string cls = j["tokenizer_class"];
      if (cls != "XLMRobertaTokenizer" && cls != "XLMRobertaTokenizerFast")
        throw Error(config.string() + ": tokenizer_class is \"" + cls + "\"; " + model_file.filename().string() +
                    " is read as XLMRobertaTokenizer only");
    }
  }
  auto backend = std::make_shared<const SentencePieceBackend>(model_file);
  SpecialTokens st;
  st.unk = "<unk>", st.sep = "</s>", st.pad = "<pad>", st.cls = "<s>", st.mask = "<mask>";
  Tokenizer t = from_vocab(backend->vocabulary(), BasicTokenizerOptions{}, st);
  // A piece spelled like a fairseq special token keeps its id; the name looks up the special one.
  for (int32_t id : {SentencePieceBackend::kBos, SentencePieceBackend::kPad, SentencePieceBackend::kEos,
                     SentencePieceBackend::kUnk, backend->mask_id()})
    t.index_.insert(t.vocab_[static_cast<size_t>(id)], id);
  t.cls_id_ = SentencePieceBackend::kBos;
  t.pad_id_ = SentencePieceBackend::kPad;
  t.sep_id_ = SentencePieceBackend::kEos;
  t.unk_id_ = SentencePieceBackend::kUnk;
  t.mask_id_ = backend->mask_id();
  t.pair_layout_ = PairLayout{.middle_seps = 2, .second_type = 0};  // <s> a </s></s> b </s>, types all 0
  t.sentencepiece_ = std::move(backend);
  return t;
}

std::vector<Tokenizer::Piece> Tokenizer::sentencepiece_offsets(std::string_view text) const {
  std::vector<Piece> out;
  sentencepiece_->pieces_with_offsets(text, [&](int32_t id, size_t start, size_t end) { out.push_back({id, start, end}); });
  return out;
}

}  // namespace bertune::text
