#include "cli/errors.h"

#include <filesystem>
#include <new>

#include "util/error.h"

namespace bertune::cli {
namespace {

// "filesystem error: cannot create directories: Not a directory [a/b]" ->
// "cannot create directories a/b: Not a directory"
std::string describe(const std::filesystem::filesystem_error& e) {
  std::string what = e.what();
  const std::string prefix = "filesystem error: ";
  if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
  size_t colon = what.find(':');
  std::string s = colon == std::string::npos ? "cannot access" : what.substr(0, colon);
  if (!e.path1().empty()) s += " " + e.path1().string();
  if (!e.path2().empty()) s += " -> " + e.path2().string();
  return s + ": " + e.code().message();
}

}  // namespace

Failure describe_failure(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return {err.exit_code(), std::string("bertune: error: ") + err.what()};
  } catch (const std::filesystem::filesystem_error& err) {
    return {kExitUserError, "bertune: error: " + describe(err)};
  } catch (const std::bad_alloc&) {
    return {kExitInternalError, "bertune: internal error: out of memory (std::bad_alloc)"};
  } catch (const std::exception& err) {
    return {kExitInternalError, std::string("bertune: internal error: ") + err.what()};
  } catch (...) {
    return {kExitInternalError, "bertune: internal error: unknown exception"};
  }
}

}  // namespace bertune::cli
