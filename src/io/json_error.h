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
// a directory ("is a directory; expected a file"), UTF-16/UTF-32 text (how to
// convert it), invalid UTF-8 or syntax
// ("FILE: not valid JSON (line L, column C: ...)").
nlohmann::json read_json_file(const std::filesystem::path& path);

// Fields of the parsed object: bertune::json_field<T> (util/json_fields.h).

}  // namespace bertune::io
