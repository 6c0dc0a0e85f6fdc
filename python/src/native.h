#pragma once
// The pieces of bertune._native (python/src): each file binds one area of src/ onto the
// module. Native work runs with the GIL released; bertune's exceptions become Python ones
// (module.cc).
#include <string>

#include <pybind11/pybind11.h>

#include "kernels/ops.h"

namespace bertune::python {

namespace py = pybind11;

void bind_tokenizer(py::module_& m);  // tokenizer.cc
void bind_model(py::module_& m);      // model.cc
void bind_train(py::module_& m);      // train.cc

// "cpu" | "cuda" (also "cuda:0", as torch spells the first GPU); the device must be usable.
kernels::Device device_from_name(const std::string& name);

}  // namespace bertune::python
