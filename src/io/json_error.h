#pragma once
// JSON files from the user, with errors a user can act on: never the raw
// "[json.exception.parse_error.101] ..." text of the JSON library, never
// an unbounded quote of the input.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace bertune::io {

// "line 3, column 7: syntax error while parsing object - unexpected '}'"
// (the library's id prefix removed, what it last read cut to a few bytes).
std::string json_error_position(const nlohmann::json::exception& e);

// Reads and parses a JSON file. Errors (all Error naming the file): missing,
// a directory ("is a directory; expected a file"), invalid UTF-8 or syntax
// ("FILE: not valid JSON (line L, column C: ...)").
nlohmann::json read_json_file(const std::filesystem::path& path);

// Field access that names the field and file instead of throwing
// nlohmann's out_of_range/type_error: `source: missing field "global_step"`,
// `source: field "global_step" must be an integer (found "x")`.
const nlohmann::json& json_field(const nlohmann::json& j, const char* key, const std::string& source);
int64_t json_int(const nlohmann::json& j, const char* key, const std::string& source);
double json_number(const nlohmann::json& j, const char* key, const std::string& source);
std::string json_string(const nlohmann::json& j, const char* key, const std::string& source);

}  // namespace bertune::io
