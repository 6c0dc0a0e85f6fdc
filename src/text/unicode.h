#pragma once
// Character classes of HF's BasicTokenizer, as Python 3.11's unicodedata
// (Unicode 14) sees them, on top of utf8proc. Hot paths (ASCII, Hangul
// syllables, UTF-8 decoding) are inline; everything else asks utf8proc.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bertune::text::unicode {

enum CharClass : uint8_t {
  kWord,   // part of a word
  kSpace,  // ends a word: \t \n \r ' ', Zs (-> ' ' in _clean_text), Zl/Zp (Python's str.split)
  kDrop,   // removed by _clean_text: U+0000, U+FFFD, category C* except \t\n\r
  kPunct,  // a word of its own: ASCII 33-47, 58-64, 91-96, 123-126, or category P*
  kCjk,    // CJK ideograph: a word of its own (_tokenize_chinese_chars)
};

struct AsciiClassTable {
  uint8_t cls[128];
};
extern const AsciiClassTable kAsciiClass;
CharClass classify_slow(char32_t cp);

inline CharClass classify(char32_t cp) {
  if (cp < 0x80) return static_cast<CharClass>(kAsciiClass.cls[cp]);
  // Hangul syllables are Lo: not control, space, punctuation or CJK ideograph.
  if (cp - 0xAC00u <= 0xD7A3u - 0xAC00u) return kWord;
  return classify_slow(cp);
}

bool is_punctuation(char32_t cp);        // _is_punctuation
bool is_nonspacing_mark(char32_t cp);    // category Mn (what _run_strip_accents drops)
bool is_unassigned_in_reference(char32_t cp);  // Cn in Unicode 14 though utf8proc assigns it
const char* gap_table_utf8proc_version();      // utf8proc version that table was made against

inline bool is_continuation_byte(unsigned char b) { return (b & 0xC0) == 0x80; }

// Decodes one code point; malformed input yields U+FFFD (which _clean_text
// drops) and consumes one byte, like Python's errors="replace".
inline size_t decode_utf8(const unsigned char* p, const unsigned char* end, char32_t& cp) {
  const unsigned b0 = p[0];
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  const size_t avail = static_cast<size_t>(end - p);
  if (b0 >= 0xE0 && b0 < 0xF0) {  // most common outside ASCII here: Hangul
    if (avail >= 3 && is_continuation_byte(p[1]) && is_continuation_byte(p[2])) {
      cp = ((b0 & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
      if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) return 3;
    }
  } else if (b0 >= 0xC2 && b0 < 0xE0) {
    if (avail >= 2 && is_continuation_byte(p[1])) {
      cp = ((b0 & 0x1Fu) << 6) | (p[1] & 0x3Fu);
      return 2;
    }
  } else if (b0 >= 0xF0 && b0 < 0xF5) {
    if (avail >= 4 && is_continuation_byte(p[1]) && is_continuation_byte(p[2]) &&
        is_continuation_byte(p[3])) {
      cp = ((b0 & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
      if (cp >= 0x10000 && cp <= 0x10FFFF) return 4;
    }
  }
  cp = 0xFFFD;
  return 1;
}

inline bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    char32_t cp;
    const size_t n = decode_utf8(p, end, cp);
    if (cp == 0xFFFD && n == 1) return false;  // a real U+FFFD takes 3 bytes
    p += n;
  }
  return true;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Python's str.lower() of a whole word (full mappings, Final_Sigma), and of a
// single character (no context: what tokenize()'s per-character regex does).
void lower_word(const char32_t* cps, size_t n, std::u32string& out);
void lower_char(char32_t cp, std::u32string& out);

// _run_strip_accents: NFD, then drop Mn.
void strip_accents(const std::u32string& in, std::u32string& out);

}  // namespace bertune::text::unicode
