#pragma once
// How many tokens of a batch are [UNK]: a tokenizer directory without
// tokenizer_config.json lower-cases (HF's default) and strips accents, which
// turns every Hangul syllable into [UNK] silently. Callers warn on the first
// batch when the rate is above kUnkWarningRate.
#include <optional>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace bertune::text {

inline constexpr double kUnkWarningRate = 0.05;

struct UnkRate {
  size_t unk = 0, tokens = 0;  // tokens: [CLS]/[SEP]/[PAD] not counted
  double rate() const { return tokens ? static_cast<double>(unk) / static_cast<double>(tokens) : 0.0; }
};

UnkRate unk_rate(const Tokenizer& tok, const std::vector<Encoding>& batch);
UnkRate unk_rate(const Tokenizer& tok, const std::vector<std::vector<int32_t>>& ids);

// The warning text when rate() > kUnkWarningRate (with at least 20 tokens
// seen), else nothing: "warning: 63.2% of the tokens of the first batch are
// [UNK] (412 of 652); ..." naming `tokenizer_dir` and the likely cause.
std::optional<std::string> unk_warning(const UnkRate& r, const std::string& tokenizer_dir);

}  // namespace bertune::text
