// bertune._native: the Python package's view of the folder libraries (python/bertune wraps
// it in Hugging Face's names). Errors keep the command line's messages: bertune's user
// errors (a bad file, field, option) are ValueError, an interrupted run KeyboardInterrupt,
// anything else RuntimeError.
#include <exception>
#include <string>

#include "cli/errors.h"
#include "kernels/memory.h"
#include "native.h"
#include "util/error.h"

namespace bertune::python {

kernels::Device device_from_name(const std::string& name) {
  const kernels::Device d = kernels::parse_device(name == "cuda:0" ? "cuda" : name);
  kernels::require_device(d);
  return d;
}

namespace {

// "bertune: error: X" -> "X": Python names the exception class itself.
std::string without_prefix(std::string message) {
  for (const char* prefix : {"bertune: error: ", "bertune: "})
    if (message.rfind(prefix, 0) == 0) return message.substr(std::string(prefix).size());
  return message;
}

void translate(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const Interrupted& err) {
    PyErr_SetString(PyExc_KeyboardInterrupt, err.what());
  } catch (const py::error_already_set&) {
    throw;  // a Python exception raised in a callback: passed on as it is
  } catch (const py::builtin_exception&) {
    throw;  // pybind11's own (TypeError, IndexError, ...)
  } catch (...) {
    const cli::Failure f = cli::describe_failure(std::current_exception());
    PyErr_SetString(f.exit_code == kExitUserError ? PyExc_ValueError : PyExc_RuntimeError,
                    without_prefix(f.message).c_str());
  }
}

}  // namespace

}  // namespace bertune::python

PYBIND11_MODULE(_native, m) {
  using namespace bertune::python;
  m.doc() = "bertune's native engine (the folder libraries of src/); use the bertune package";
  m.attr("__version__") = BERTUNE_VERSION;
  py::register_exception_translator(&translate);
  bind_tokenizer(m);
  bind_model(m);
  bind_train(m);
}
