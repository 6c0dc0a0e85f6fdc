# The Python package's native module, bertune._native (python/src/*.cc, pybind11),
# a client of the folder libraries like src/cli: it links bertune_core and holds no
# second implementation. Included from the top-level CMakeLists.txt after
# cmake/layers.cmake.
#
# BERTUNE_PYTHON: AUTO (default) builds the module when pybind11 and the Python
# development headers are found, ON requires them, OFF never builds it. The folder
# libraries are then compiled as position-independent code so a shared module can
# link them; -fno-semantic-interposition keeps the calls between their functions as
# direct (and inlinable) as in the executable's -fPIE code.
set(BERTUNE_PYTHON AUTO CACHE STRING "Build the Python module bertune._native: AUTO | ON | OFF")
set_property(CACHE BERTUNE_PYTHON PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${BERTUNE_PYTHON}" _bertune_python_mode)
if(NOT _bertune_python_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "BERTUNE_PYTHON must be AUTO, ON or OFF, not '${BERTUNE_PYTHON}'")
endif()
if(_bertune_python_mode STREQUAL "AUTO" AND (BERTUNE_SANITIZE OR BERTUNE_FUZZ))
  set(_bertune_python_mode OFF)  # a sanitized module would need a sanitized interpreter
endif()
set(BERTUNE_WITH_PYTHON OFF)
if(NOT _bertune_python_mode STREQUAL "OFF")
  # Debian's interpreter (its numpy, pandas and pytest packages) unless one is named
  # with -DPython3_EXECUTABLE=...; a python3 first on PATH (pyenv) has none of them.
  if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
    set(Python3_EXECUTABLE /usr/bin/python3 CACHE FILEPATH "The interpreter the Python module is built for")
  endif()
  find_package(Python3 COMPONENTS Interpreter Development.Module)
  find_package(pybind11 2.6 CONFIG QUIET)
  if(Python3_Development.Module_FOUND AND pybind11_FOUND)
    set(BERTUNE_WITH_PYTHON ON)
  elseif(_bertune_python_mode STREQUAL "ON")
    message(FATAL_ERROR "BERTUNE_PYTHON=ON but pybind11 or the Python headers were not found "
                        "(install Debian's pybind11-dev and python3-dev; scripts/setup does)")
  else()
    message(STATUS "bertune: pybind11 or the Python headers not found (Debian's pybind11-dev, python3-dev); "
                   "the Python module is not built")
  endif()
endif()

if(BERTUNE_WITH_PYTHON)
  foreach(_folder IN LISTS BERTUNE_FOLDERS)
    get_target_property(_type bertune_${_folder} TYPE)
    if(_type STREQUAL "STATIC_LIBRARY")
      set_target_properties(bertune_${_folder} PROPERTIES POSITION_INDEPENDENT_CODE ON)
      target_compile_options(bertune_${_folder} PRIVATE -fno-semantic-interposition)
    endif()
  endforeach()
  if(TARGET bertune_cuda)
    set_target_properties(bertune_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
  file(GLOB BERTUNE_PYTHON_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/python/src/*.cc)
  pybind11_add_module(bertune_python MODULE ${BERTUNE_PYTHON_SOURCES})
  target_link_libraries(bertune_python PRIVATE bertune_cli)  # cli/errors.h: the command line's messages
  # build/python/bertune/_native*.so: python/bertune's __init__ extends its package
  # path over every bertune/ folder on sys.path, so PYTHONPATH=python:build/python
  # imports the source package with the built module (scripts/test).
  set_target_properties(bertune_python PROPERTIES OUTPUT_NAME _native
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/python/bertune)
  # python/tests (pytest) on the source package with the module built here, under the
  # interpreter it was built for: `ctest -R Python`, and scripts/test with everything else.
  # One GEMM provider and the build tree's cache, as for the C++ tests: a calibration taken
  # under load may pick another library for another batch size, and the scores of one text
  # alone and in a batch would then differ in the last bits.
  if(BERTUNE_BUILD_TESTS)
    add_test(NAME Python.Tests COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider
                                       ${CMAKE_SOURCE_DIR}/python/tests)
    set_tests_properties(Python.Tests PROPERTIES TIMEOUT 600 LABELS python
      ENVIRONMENT "PYTHONPATH=${CMAKE_SOURCE_DIR}/python:${CMAKE_BINARY_DIR}/python;BERTUNE_SHARED=${CMAKE_SOURCE_DIR}/../shared;TMPDIR=${CMAKE_BINARY_DIR}/test-tmp;BERTUNE_CACHE=${CMAKE_BINARY_DIR}/test-cache;BERTUNE_GEMM=openblas")
  endif()
  message(STATUS "bertune: Python module ON (${Python3_EXECUTABLE}, pybind11 ${pybind11_VERSION})")
endif()
