#pragma once
// Checks of option values that CLI11 runs while parsing, and how options that take free
// text are bound. CLI11 prefixes a check's message with the option: "--max-length: ...".
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kernels/ops.h"
#include "util/error.h"

namespace bertune::cli {

// For unsigned options: CLI11 alone reads "-1" as the type's largest value (a vocabulary of
// every word, a server without a body limit). Fails as "--flag: must not be negative (got -1)".
inline CLI::Validator not_negative() {
  return CLI::Validator(
      [](std::string& s) { return !s.empty() && s.front() == '-' ? "must not be negative (got " + s + ")" : std::string(); },
      "NON-NEGATIVE");
}

// An integer in [lo, hi], said in integers: "must be a positive integer (got -1)",
// "must be an integer from 1 to 256 (got 300)" (CLI11's own Range prints doubles, and
// NonNegativeNumber a 309-digit upper bound). hi defaults to the option type's largest value,
// named only when it is exceeded.
template <class Int = int>
CLI::Validator integer_range(int64_t lo, int64_t hi = static_cast<int64_t>(std::numeric_limits<Int>::max())) {
  const bool open = hi == static_cast<int64_t>(std::numeric_limits<Int>::max());
  const std::string wanted = !open ? "an integer from " + std::to_string(lo) + " to " + std::to_string(hi)
                             : lo == 0 ? "a non-negative integer"
                             : lo == 1 ? "a positive integer"
                                       : "an integer of at least " + std::to_string(lo);
  return CLI::Validator(
      [=](std::string& s) {
        int64_t v = 0;
        const char* begin = s.data() + (s.size() > 1 && s.front() == '+');  // as CLI11 reads "+3"
        const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v);
        const bool integer = ec != std::errc::invalid_argument && end == s.data() + s.size() && !s.empty();
        if (integer && ec == std::errc() && v >= lo && v <= hi) return std::string();
        const bool too_large = integer && (ec == std::errc::result_out_of_range ? s.front() != '-' : v > hi);
        if (too_large && open) return "must be at most " + std::to_string(hi) + " (got " + s + ")";
        return "must be " + wanted + " (got " + s + ")";
      },
      !open ? "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]"
      : lo == 0 ? "NON-NEGATIVE"
      : lo == 1 ? "POSITIVE"
                : ">= " + std::to_string(lo));
}

// A positional argument that collects free text, one argument per item. CLI11 reads an
// argument of a vector option written "[a,b]" as the list a, b (so `predict M '[정말, 최악]'`
// would classify two texts and `tokenize '[PAD]'` the text PAD); only an option that takes
// extra arguments does that, so this one takes none and instead expects more items than a
// command line can hold (which keeps CLI11 handing it every positional).
inline CLI::Option* add_texts_positional(CLI::App* cmd, const std::string& name, std::vector<std::string>& texts,
                                         const std::string& help) {
  return cmd->add_option(name, texts, help)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)  // before expected(): it would lower the maximum
      ->expected(CLI::detail::expected_max_vector_size / 2, CLI::detail::expected_max_vector_size)
      ->allow_extra_args(false);
}

// A list option's items ("a,b,c"), empty ones kept ("a,,b" and "a," hold an empty item) so
// that the caller can refuse them by name.
inline std::vector<std::string> split_list(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t at; (at = s.find(sep, start)) != std::string::npos; start = at + 1) out.push_back(s.substr(start, at - start));
  if (!s.empty()) out.push_back(s.substr(start));
  return out;
}

// --precision's text: empty (the device's default) or fp32|tf32|bf16; Error "--precision: ...".
inline std::optional<kernels::Precision> parse_precision_flag(const std::string& text) {
  if (text.empty()) return std::nullopt;
  try {
    return kernels::parse_precision(text);
  } catch (const Error& e) {
    throw Error(std::string("--precision: ") + e.what());
  }
}

}  // namespace bertune::cli
