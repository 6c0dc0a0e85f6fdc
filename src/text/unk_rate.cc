#include "text/unk_rate.h"

#include <cstdio>

namespace bertune::text {
namespace {
template <typename Ids>
void count(const Tokenizer& tok, const Ids& ids, UnkRate& r) {
  for (int32_t id : ids) {
    if (id == tok.cls_id() || id == tok.sep_id() || id == tok.pad_id()) continue;
    ++r.tokens;
    r.unk += id == tok.unk_id();
  }
}
}  // namespace

UnkRate unk_rate(const Tokenizer& tok, const std::vector<Encoding>& batch) {
  UnkRate r;
  for (const auto& e : batch) count(tok, e.ids, r);
  return r;
}

UnkRate unk_rate(const Tokenizer& tok, const std::vector<std::vector<int32_t>>& ids) {
  UnkRate r;
  for (const auto& e : ids) count(tok, e, r);
  return r;
}

std::optional<std::string> unk_warning(const UnkRate& r, const std::string& tokenizer_dir) {
  if (r.tokens < 20 || r.rate() <= kUnkWarningRate) return std::nullopt;
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.1f%%", 100.0 * r.rate());
  return "warning: " + std::string(pct) + " of the tokens of the first batch are [UNK] (" + std::to_string(r.unk) +
         " of " + std::to_string(r.tokens) + "); is " + tokenizer_dir +
         " the right tokenizer? Without tokenizer_config.json it lower-cases and strips accents "
         "(Hugging Face's default), which turns Hangul into [UNK]: add tokenizer_config.json with "
         "\"do_lower_case\": false";
}

}  // namespace bertune::text
