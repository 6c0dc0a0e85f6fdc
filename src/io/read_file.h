#pragma once
// Reading the user's input files, with clear errors for the usual mistakes:
// a path that does not exist, a directory where a file belongs, a file larger
// than memory, a gzip file handed to a text reader. Every reader of
// user-supplied files goes through here (data readers, tokenizer files,
// config.json, checkpoints' JSON, tokenize --input, predict --input).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace bertune::io {

// Throws Error unless `path` names something readable as a file (a regular
// file, or a pipe / device such as <(zcat x)): "FILE: no such file",
// "FILE is a directory; expected a file" (`what` names the role, e.g.
// "--train-file", "vocab.txt"; empty: "a file").
void require_readable_file(const std::filesystem::path& path, std::string_view what = {});

// Throws Error when writing `output` would replace `input` (the same file or directory, by
// whatever spelling: ./x, x/, a symlink or a hard link): "--output X is --input Y; writing
// it would destroy the input" — or when `output` is a directory holding `input` at any depth
// (a directory output is replaced whole), or when `input` is a directory (a model, a tokenizer)
// and `output` an existing file inside it. Either may not exist yet (then they differ).
void require_distinct_paths(const std::filesystem::path& input, std::string_view input_role,
                            const std::filesystem::path& output, std::string_view output_role);

// The whole file, as bytes. Errors as require_readable_file, plus a file
// larger than physical memory is refused with both sizes before allocating.
std::string read_file(const std::filesystem::path& path);

// The whole file as text: like read_file, but a gzip file (detected by its
// magic bytes 1f 8b, whatever its name) is decompressed transparently, as
// users keep gzipped corpora. A corrupt or truncated gzip stream is an Error
// naming the file; so is one that expands past gzip_expansion_limit, and
// decompressed output larger than memory is refused. UTF-16/UTF-32 text is an
// Error saying how to convert it (check_text_encoding).
std::string read_text_file(const std::filesystem::path& path);

bool is_gzip(std::string_view bytes);
// Decompresses a whole gzip stream (concatenated members too); `source` only
// names the input in errors.
std::string gunzip(std::string_view bytes, const std::filesystem::path& source);

// The most a gzip input of `compressed` bytes may decompress to: the largest of
// BERTUNE_GZIP_MAX_RATIO (default 100) times its size and 64 MiB, so a small file
// that unpacks to gigabytes (a gzip bomb) stops early; text compresses 3-10 times
// (NSMC's unlabeled.txt.gz: 2.6). BERTUNE_GZIP_MAX_RATIO=0: no limit (UINT64_MAX).
// A value that is not a whole number is an Error naming the variable.
uint64_t gzip_expansion_limit(uint64_t compressed);
// Throws Error naming `source`, its compressed size and the limit once `decompressed`
// exceeds gzip_expansion_limit(compressed).
void check_gzip_expansion(uint64_t decompressed, uint64_t compressed, const std::filesystem::path& source);

// Throws Error when `bytes` (a file's start) is UTF-16 or UTF-32 text rather than UTF-8:
// a byte-order mark, or UTF-16 without one (NUL bytes in every other position, as
// ASCII characters have). "FILE is UTF-16LE; convert it to UTF-8 (e.g. iconv -f
// UTF-16LE -t UTF-8 FILE > FILE.utf8)" — other readers would call it binary or
// invalid UTF-8.
void check_text_encoding(std::string_view bytes, const std::filesystem::path& path);

// Physical memory in bytes (the limit above); 0 when unknown.
uint64_t physical_memory_bytes();

}  // namespace bertune::io
