#pragma once
// Fields of a JSON object read with errors that name the file and the field, in words —
// never the JSON library's own exception text — and integers checked against the range of
// the type they land in (no silent wrap of 2147483648 into an int).
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace bertune {

namespace json_detail {
template <typename T>
const char* kind_name() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) return "a non-negative integer";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else return "a string";
}

template <typename T>
bool fits(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) return v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    if (!v.is_number_integer()) return false;
    const int64_t x = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) return x >= 0;
    else return x >= std::numeric_limits<T>::min() && x <= std::numeric_limits<T>::max();
  } else if constexpr (std::is_floating_point_v<T>) {
    return v.is_number();
  } else {
    return v.is_string();
  }
}
}  // namespace json_detail

// j[key] as a T; Error "<source>: field 'key' is missing" / "... is <value>, expected <kind>".
template <typename T>
T json_field(const nlohmann::json& j, const std::string& key, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": expected a JSON object");
  auto it = j.find(key);
  if (it == j.end()) throw Error(source + ": field '" + key + "' is missing");
  if (!json_detail::fits<T>(*it)) {
    std::string shown = it->dump();
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    throw Error(source + ": field '" + key + "' is " + shown + ", expected " + json_detail::kind_name<T>());
  }
  return it->get<T>();
}

// The same, with `fallback` when the field is absent or null.
template <typename T>
T json_field_or(const nlohmann::json& j, const std::string& key, T fallback, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": expected a JSON object");
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return json_field<T>(j, key, source);
}

// "<source>: not valid JSON (byte N)": the position, without the library's prefix.
inline Error json_syntax_error(const std::string& source, const nlohmann::json::parse_error& e) {
  return Error(source + ": not valid JSON (at byte " + std::to_string(e.byte) + ")");
}

}  // namespace bertune
