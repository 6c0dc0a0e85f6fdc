#pragma once
// Checks of option values that CLI11 runs while parsing.
#include <string>

#include <CLI/CLI.hpp>

namespace bertune::cli {

// For unsigned options: CLI11 alone reads "-1" as the type's largest value (a vocabulary of
// every word, a server without a body limit). Fails as "--flag: must not be negative (got -1)".
inline CLI::Validator not_negative() {
  return CLI::Validator(
      [](std::string& s) { return !s.empty() && s.front() == '-' ? "must not be negative (got " + s + ")" : std::string(); },
      "NON-NEGATIVE");
}

}  // namespace bertune::cli
