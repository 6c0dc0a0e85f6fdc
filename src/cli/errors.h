#pragma once
// Turns an exception escaping a command into the message the user sees and
// the exit code of the contract in util/error.h. Separate from main() so the
// mapping is unit-tested.
#include <exception>
#include <string>

namespace bertune::cli {

struct Failure {
  int exit_code;
  std::string message;  // "bertune: error: ..." or "bertune: internal error: ..."
};

// Error (and subclasses) -> their exit_code(); std::filesystem errors -> 1
// (they come from the user's paths: an output dir that is a file, a read-only
// file system, no permission); anything else -> 2 "internal error".
Failure describe_failure(std::exception_ptr e);

}  // namespace bertune::cli
