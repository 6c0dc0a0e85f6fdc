#include "io/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "util/error.h"
#include "util/limits.h"

namespace bertune::io {
namespace fs = std::filesystem;
namespace {

std::string role(const fs::path& path, std::string_view what) {
  return what.empty() ? path.string() : std::string(what) + " " + path.string();
}

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

void check_fits_memory(uint64_t bytes, const fs::path& path, const char* kind) {
  uint64_t limit = physical_memory_bytes();
  if (limit && bytes > limit)
    throw Error(path.string() + ": " + kind + " is " + std::to_string(bytes) + " bytes (" + gib(bytes) +
                "), more than this machine's memory (" + gib(limit) + "); files are read whole");
}

// Closes the descriptor on every path out.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

uint64_t physical_memory_bytes() { return util::physical_memory_bytes(); }

void require_readable_file(const fs::path& path, std::string_view what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw Error("cannot open " + role(path, what) + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode))
    throw Error(role(path, what) + " is a directory; expected a file");
}

void require_distinct_paths(const fs::path& input, std::string_view input_role, const fs::path& output,
                            std::string_view output_role) {
  std::error_code ec;  // either missing: not the same (an output that does not exist replaces nothing)
  // By device and inode (fs::equivalent), so no spelling, symlink or hard link slips through.
  if (fs::equivalent(input, output, ec) && !ec)
    throw Error(std::string(output_role) + " " + output.string() + " is " + std::string(input_role) + " " +
                input.string() + "; writing it would destroy the input");
  // An input directory (a model, a tokenizer) is read file by file: an existing output inside it
  // is one of those files (config.json, weights, vocab.txt, label names) or may be.
  if (fs::is_directory(input, ec) && fs::exists(fs::symlink_status(output, ec)) && !fs::is_directory(output, ec)) {
    const fs::path real_out = fs::weakly_canonical(fs::absolute(output, ec), ec);
    for (fs::path p = real_out.parent_path(); !ec && !p.empty(); p = p.parent_path()) {
      if (fs::equivalent(p, input, ec) && !ec)
        throw Error(std::string(output_role) + " " + output.string() + " is a file inside " +
                    std::string(input_role) + " " + input.string() + ", which this command reads; writing it "
                    "would destroy the input (name a file outside that directory)");
      if (p == p.root_path()) break;
    }
    return;
  }
  ec.clear();
  // A directory output is replaced whole: one that holds the input would take it along.
  if (!fs::is_directory(output, ec)) return;
  const fs::path real = fs::weakly_canonical(fs::absolute(input, ec), ec);
  for (fs::path p = real.parent_path(); !ec && !p.empty(); p = p.parent_path()) {
    if (fs::equivalent(p, output, ec) && !ec)
      throw Error(std::string(output_role) + " " + output.string() + " holds " + std::string(input_role) + " " +
                  input.string() + "; replacing it would destroy the input");
    if (p == p.root_path()) break;
  }
}

std::string read_file(const fs::path& path) {
  require_readable_file(path);
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
  struct stat st;
  std::string data;
  if (::fstat(f.fd, &st) == 0 && S_ISREG(st.st_mode)) {
    check_fits_memory(static_cast<uint64_t>(st.st_size), path, "the file");
    data.reserve(static_cast<size_t>(st.st_size));
  }
  // Read to EOF rather than trusting the size: pipes report none, files may grow.
  char buf[1 << 16];
  for (;;) {
    ssize_t got = ::read(f.fd, buf, sizeof buf);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot read " + path.string() + ": " + std::strerror(errno));
    }
    data.append(buf, static_cast<size_t>(got));
  }
  return data;
}

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

std::string gunzip(std::string_view bytes, const fs::path& source) {
  // The limit is read (and may be refused) before zlib allocates its state.
  const uint64_t expansion_limit = gzip_expansion_limit(bytes.size());
  const uint64_t limit = physical_memory_bytes();
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) throw Error("zlib: cannot initialise inflate");
  struct End {  // frees zlib's state on every path out, thrown or returned
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&z};
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  size_t remaining = bytes.size();
  char buf[1 << 16];
  for (;;) {
    if (z.avail_in == 0 && remaining > 0) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(remaining, 1u << 30));
      z.avail_in = chunk;
      remaining -= chunk;
    }
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > expansion_limit) check_gzip_expansion(out.size(), bytes.size(), source);  // throws
    if (limit && out.size() > limit) check_fits_memory(out.size(), source, "the decompressed data");  // throws
    if (rc == Z_OK) continue;
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (cat a.gz b.gz); anything else is padding.
      if (z.avail_in >= 2 && z.next_in[0] == 0x1f && z.next_in[1] == 0x8b) {
        inflateReset(&z);
        continue;
      }
      break;
    }
    std::string why = rc == Z_BUF_ERROR ? "the gzip stream is truncated" : z.msg ? z.msg : "corrupt gzip stream";
    throw Error(source.string() + ": cannot decompress gzip data: " + why);
  }
  return out;
}

namespace {

std::string megabytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

constexpr uint64_t kGzipDefaultRatio = 100;
constexpr uint64_t kGzipFloorBytes = 64ull << 20;

uint64_t gzip_max_ratio() {
  const char* env = std::getenv("BERTUNE_GZIP_MAX_RATIO");
  if (!env || !*env) return kGzipDefaultRatio;
  uint64_t ratio = 0;
  const char* end = env + std::strlen(env);
  const auto [stop, ec] = std::from_chars(env, end, ratio);
  if (ec != std::errc() || stop != end)
    throw Error("BERTUNE_GZIP_MAX_RATIO='" + std::string(env) +
                "' is not a whole number (how many times its size a gzip input may decompress to; 0: no limit)");
  return ratio;
}

}  // namespace

uint64_t gzip_expansion_limit(uint64_t compressed) {
  const uint64_t ratio = gzip_max_ratio();
  if (ratio == 0) return std::numeric_limits<uint64_t>::max();
  if (compressed > std::numeric_limits<uint64_t>::max() / ratio) return std::numeric_limits<uint64_t>::max();
  return std::max(compressed * ratio, kGzipFloorBytes);
}

void check_gzip_expansion(uint64_t decompressed, uint64_t compressed, const fs::path& source) {
  if (decompressed <= gzip_expansion_limit(compressed)) return;
  throw Error(source.string() + ": gzip data of " + megabytes(compressed) + " decompresses to more than " +
              megabytes(gzip_expansion_limit(compressed)) + " (" + std::to_string(gzip_max_ratio()) +
              " times its size; at least " + megabytes(kGzipFloorBytes) +
              " is always allowed); reading stopped. If the file is genuine, raise the limit with "
              "BERTUNE_GZIP_MAX_RATIO=N (0: no limit)");
}

void check_text_encoding(std::string_view bytes, const fs::path& path) {
  auto starts = [&](std::string_view bom) { return bytes.substr(0, bom.size()) == bom; };
  using namespace std::string_view_literals;
  std::string encoding, from;  // the name said, the name iconv takes
  if (starts("\xFF\xFE\0\0"sv)) encoding = "UTF-32 (little-endian, with a byte-order mark)", from = "UTF-32";
  else if (starts("\0\0\xFE\xFF"sv)) encoding = "UTF-32 (big-endian, with a byte-order mark)", from = "UTF-32";
  else if (starts("\xFF\xFE"sv)) encoding = "UTF-16 (little-endian, with a byte-order mark)", from = "UTF-16";
  else if (starts("\xFE\xFF"sv)) encoding = "UTF-16 (big-endian, with a byte-order mark)", from = "UTF-16";
  else {
    // No mark: UTF-16 puts a NUL beside every ASCII character (spaces, digits, newlines,
    // tabs), always on the same side, and a NUL on the other side only for the few
    // characters U+xx00; binary data has NULs on both sides alike, UTF-8 text none.
    const size_t n = std::min<size_t>(bytes.size(), 8192) & ~size_t{1};
    size_t nul[2] = {0, 0};
    for (size_t i = 0; i < n; ++i) nul[i & 1] += bytes[i] == '\0';
    const int side = nul[1] > nul[0];  // 1: the high bytes of little-endian units
    if (n >= 2 && nul[side] * 10 >= n / 2 && nul[1 - side] * 4 <= nul[side])
      encoding = side ? "UTF-16LE (no byte-order mark)" : "UTF-16BE (no byte-order mark)",
      from = side ? "UTF-16LE" : "UTF-16BE";
  }
  if (encoding.empty()) return;
  throw Error(path.string() + " is " + encoding + " text; convert it to UTF-8 (e.g. iconv -f " + from +
              " -t UTF-8 " + path.string() + " > " + path.filename().string() + ".utf8)");
}

std::string read_text_file(const fs::path& path) {
  std::string data = read_file(path);
  if (is_gzip(data)) data = gunzip(data, path);
  check_text_encoding(data, path);
  return data;
}

}  // namespace bertune::io
