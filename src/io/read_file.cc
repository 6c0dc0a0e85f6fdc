#include "io/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

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
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) throw Error("zlib: cannot initialise inflate");
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  size_t remaining = bytes.size();
  char buf[1 << 16];
  const uint64_t limit = physical_memory_bytes();
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
    if (limit && out.size() > limit) {
      inflateEnd(&z);
      check_fits_memory(out.size(), source, "the decompressed data");  // throws
    }
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
    inflateEnd(&z);
    throw Error(source.string() + ": cannot decompress gzip data: " + why);
  }
  inflateEnd(&z);
  return out;
}

std::string read_text_file(const fs::path& path) {
  std::string data = read_file(path);
  if (!is_gzip(data)) return data;
  return gunzip(data, path);
}

}  // namespace bertune::io
