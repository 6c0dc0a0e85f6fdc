#include "text/unicode.h"

#include <utf8proc.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

namespace bertune::text::unicode {
namespace {

struct Range {
  char32_t first, last;
};

// Characters Unicode 15 added. The golden files come from Python 3.11
// (Unicode 14), where they are unassigned (Cn) and so dropped as "control"
// by _clean_text; utf8proc 2.8 knows them as letters, marks, punctuation.
constexpr Range kUnicode15Additions[] = {
#include "text/unicode_gaps.inc"
};

constexpr bool in_ranges(char32_t cp, const Range* begin, const Range* end) {
  const Range* it = std::upper_bound(begin, end, cp, [](char32_t c, const Range& r) { return c < r.first; });
  return it != begin && cp <= (it - 1)->last;
}

// _is_chinese_char: the CJK Unified Ideographs blocks (not Hangul, kana, ...).
bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

constexpr bool ascii_punct(char32_t cp) {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
         (cp >= 123 && cp <= 126);
}

utf8proc_category_t reference_category(char32_t cp) {
  if (is_unassigned_in_reference(cp)) return UTF8PROC_CATEGORY_CN;
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}

bool is_cased(char32_t cp) {  // Python's _PyUnicode_IsCased, as far as utf8proc tells it
  auto c = reference_category(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
         utf8proc_islower(static_cast<utf8proc_int32_t>(cp)) ||
         utf8proc_isupper(static_cast<utf8proc_int32_t>(cp));
}

bool is_case_ignorable(char32_t cp) {  // Mn Me Cf Lm Sk + Word_Break MidLetter/MidNumLet/Single_Quote
  switch (cp) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52:
    case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default:
      break;
  }
  auto c = reference_category(cp);
  return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
         c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK;
}

// Python lowercases U+03A3 to final sigma at the end of a word.
bool final_sigma_context(const char32_t* cps, size_t n, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(cps[j - 1])) --j;
  if (j == 0 || !is_cased(cps[j - 1])) return false;
  size_t k = i + 1;
  while (k < n && is_case_ignorable(cps[k])) ++k;
  return k == n || !is_cased(cps[k]);
}

}  // namespace

constexpr AsciiClassTable make_ascii_class_table() {
  AsciiClassTable t{};
  for (int c = 0; c < 128; ++c) {
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') t.cls[c] = kSpace;
    else if (c < 0x20 || c == 0x7F) t.cls[c] = kDrop;
    else if (ascii_punct(static_cast<char32_t>(c))) t.cls[c] = kPunct;
    else t.cls[c] = kWord;
  }
  return t;
}

extern const AsciiClassTable kAsciiClass = make_ascii_class_table();

bool is_unassigned_in_reference(char32_t cp) {
  return cp >= std::begin(kUnicode15Additions)->first &&
         in_ranges(cp, std::begin(kUnicode15Additions), std::end(kUnicode15Additions));
}

const char* gap_table_utf8proc_version() {
  return
#include "text/unicode_gaps_version.inc"
      ;
}

CharClass classify_slow(char32_t cp) {
  if (cp == 0xFFFD) return kDrop;
  switch (reference_category(cp)) {
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
      return kDrop;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
      return kSpace;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return kPunct;
    default:
      return is_cjk_ideograph(cp) ? kCjk : kWord;
  }
}

bool is_punctuation(char32_t cp) {
  if (cp < 0x80) return ascii_punct(cp);
  auto c = reference_category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_nonspacing_mark(char32_t cp) { return reference_category(cp) == UTF8PROC_CATEGORY_MN; }

void lower_char(char32_t cp, std::u32string& out) {
  if (cp == 0x130) {  // the one full (multi-character) lowercase mapping
    out.push_back(U'i');
    out.push_back(0x307);
    return;
  }
  out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
}

void lower_word(const char32_t* cps, size_t n, std::u32string& out) {
  for (size_t i = 0; i < n; ++i) {
    if (cps[i] == 0x3A3 && final_sigma_context(cps, n, i)) out.push_back(0x3C2);
    else lower_char(cps[i], out);
  }
}

void strip_accents(const std::u32string& in, std::u32string& out) {
  // utf8proc decomposes from UTF-8 and applies canonical ordering, i.e. NFD.
  std::string utf8;
  for (char32_t cp : in) append_utf8(utf8, cp);
  std::vector<utf8proc_int32_t> buf(utf8.size() * 4 + 16);
  const auto options = static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  auto decode = [&] {
    return utf8proc_decompose(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                              static_cast<utf8proc_ssize_t>(utf8.size()), buf.data(),
                              static_cast<utf8proc_ssize_t>(buf.size()), options);
  };
  utf8proc_ssize_t n = decode();
  if (n > static_cast<utf8proc_ssize_t>(buf.size())) {
    buf.resize(static_cast<size_t>(n));
    n = decode();
  }
  if (n < 0) {  // cannot happen for the valid UTF-8 built above; keep the text as is
    out += in;
    return;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i) {
    const auto cp = static_cast<char32_t>(buf[static_cast<size_t>(i)]);
    if (!is_nonspacing_mark(cp)) out.push_back(cp);
  }
}

}  // namespace bertune::text::unicode
