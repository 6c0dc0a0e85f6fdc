#pragma once
// An enum's spellings (Hugging Face's names for options): one table gives both directions
// and the list of choices an error names.
#include <array>
#include <string>
#include <utility>

#include "util/error.h"

namespace bertune {

template <typename E, size_t N>
struct EnumNames {
  std::array<std::pair<E, const char*>, N> entries;

  E parse(const std::string& text) const {
    for (const auto& [value, name] : entries)
      if (text == name) return value;
    throw Error("'" + text + "' is not one of " + choices());
  }
  const char* name(E value) const {
    for (const auto& [v, name] : entries)
      if (v == value) return name;
    return "?";
  }
  std::string choices() const {  // "a|b|c"
    std::string s;
    for (const auto& [value, name] : entries) {
      if (!s.empty()) s += '|';
      s += name;
    }
    return s;
  }
};

}  // namespace bertune
