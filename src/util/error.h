#pragma once
// One exception type for every user-facing failure. The CLI prints what() and
// exits non-zero; messages name the file, line or field at fault.
#include <stdexcept>
#include <string>

namespace bertune {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace bertune
