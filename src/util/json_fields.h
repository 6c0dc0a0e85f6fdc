#pragma once
// Fields of a JSON object read with errors that name the file and the field, in words —
// never the JSON library's own exception text — and integers checked against the range of
// the type they land in (no silent wrap of 2147483648 into an int). Parsing a JSON file with
// such errors: io::read_json_file (io/json_error.h).
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
  else if constexpr (std::is_same_v<T, int>) return "an integer of at most 2147483647";
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

// j[key] as a T; Error `<source>: missing field "key"` / `... field "key" must be <kind> (found <value>)`.
template <typename T>
T json_field(const nlohmann::json& j, const std::string& key, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": expected a JSON object, found " + j.type_name());
  auto it = j.find(key);
  if (it == j.end()) throw Error(source + ": missing field \"" + key + "\"");
  if (!json_detail::fits<T>(*it)) {
    std::string shown = it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    throw Error(source + ": field \"" + key + "\" must be " + json_detail::kind_name<T>() + " (found " +
                quote_excerpt(shown, 60) + ")");
  }
  return it->get<T>();
}

// The same, with `fallback` when the field is absent or null.
template <typename T>
T json_field_or(const nlohmann::json& j, const std::string& key, T fallback, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": expected a JSON object, found " + j.type_name());
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return json_field<T>(j, key, source);
}

}  // namespace bertune
