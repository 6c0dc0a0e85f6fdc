# One static library per folder of src/ (bertune_util, bertune_io, ...), each
# linked to exactly the folders src/LAYERS lets it include, in that table's order.
# scripts/check_structure reads the same table, so the include check and the link
# graph cannot disagree. Included from the top-level CMakeLists.txt.
#
# bertune_core: every library below src/cli (the libraries take plain structs);
# bertune_cli: src/cli, the only code that sees CLI11. Tests and benchmarks link
# both; main() alone is the executable.

# What every folder compiles and links against.
add_library(bertune_deps INTERFACE)
target_include_directories(bertune_deps INTERFACE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bertune_deps INTERFACE
  nlohmann_json::nlohmann_json ZLIB::ZLIB CURL::libcurl
  PkgConfig::UTF8PROC PkgConfig::LIBZIP PkgConfig::CAIRO OpenSSL::Crypto OpenMP::OpenMP_CXX Threads::Threads ${CMAKE_DL_LIBS})
target_compile_definitions(bertune_deps INTERFACE BERTUNE_VERSION="${PROJECT_VERSION}")

# src/LAYERS: `folder: dep dep ...`, bottom up.
file(STRINGS ${CMAKE_SOURCE_DIR}/src/LAYERS _bertune_layer_lines)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/LAYERS)
set(BERTUNE_FOLDERS "")
foreach(_line IN LISTS _bertune_layer_lines)
  string(REGEX REPLACE "#.*$" "" _line "${_line}")
  string(STRIP "${_line}" _line)
  if(_line STREQUAL "")
    continue()
  endif()
  if(NOT _line MATCHES "^([a-z_]+):(.*)$")
    message(FATAL_ERROR "src/LAYERS: expected `folder: folder folder ...`, got '${_line}'")
  endif()
  set(_folder ${CMAKE_MATCH_1})
  separate_arguments(_deps UNIX_COMMAND "${CMAKE_MATCH_2}")
  if(NOT IS_DIRECTORY ${CMAKE_SOURCE_DIR}/src/${_folder})
    continue()  # a folder of the table this tree does not have (yet)
  endif()
  file(GLOB_RECURSE _sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${_folder}/*.cc)
  if(_folder STREQUAL "cli")
    list(REMOVE_ITEM _sources ${CMAKE_SOURCE_DIR}/src/cli/main.cc)
  endif()
  if(BERTUNE_FUZZ)
    # The fuzz targets need only the parsers (io, data, text, model config,
    # trainer_state.json and bertune_state.json, serve's HTTP parser and model-free
    # request handling with the logit maths of infer/metrics and predictions, util); the
    # rest is not built with Debian's clang 14.
    list(FILTER _sources INCLUDE REGEX "/src/(io|data|text|util)/|/src/model/config\\.cc$|/src/train/(state|run_state)\\.cc$|/src/serve/(http|routes|hf_api)\\.cc$|/src/infer/(metrics|predictions)\\.cc$")
  endif()
  if(_sources)
    add_library(bertune_${_folder} STATIC ${_sources})
    set(_scope PUBLIC)
  else()
    add_library(bertune_${_folder} INTERFACE)
    set(_scope INTERFACE)
  endif()
  target_link_libraries(bertune_${_folder} ${_scope} bertune_deps)
  foreach(_dep IN LISTS _deps)
    if(NOT _dep IN_LIST BERTUNE_FOLDERS AND IS_DIRECTORY ${CMAKE_SOURCE_DIR}/src/${_dep})
      message(FATAL_ERROR "src/LAYERS: ${_folder} lists ${_dep}, which is not a folder above it")
    endif()
    if(TARGET bertune_${_dep})
      target_link_libraries(bertune_${_folder} ${_scope} bertune_${_dep})
    endif()
  endforeach()
  list(APPEND BERTUNE_FOLDERS ${_folder})
endforeach()
foreach(_required util kernels cli)
  if(NOT _required IN_LIST BERTUNE_FOLDERS)
    message(FATAL_ERROR "src/LAYERS: no folder '${_required}'")
  endif()
endforeach()

add_library(bertune_core INTERFACE)
foreach(_folder IN LISTS BERTUNE_FOLDERS)
  if(NOT _folder STREQUAL "cli")
    target_link_libraries(bertune_core INTERFACE bertune_${_folder})
  endif()
endforeach()

# The CPU kernels vectorise sqrt only when it need not set errno (nothing
# there reads errno), and loops with selects (exp_fast's range clamp, erf's
# sign) only when the FP operations may run for every lane (nothing there reads
# the FP exception flags): without -fno-trapping-math GCC if-converts them only
# with AVX-512 masks, and on AVX2 CPUs GELU stayed scalar (~20% of a small
# model's eval on Zen 3).
file(GLOB BERTUNE_CPU_KERNELS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cpu/*.cc)
set_source_files_properties(${BERTUNE_CPU_KERNELS} PROPERTIES COMPILE_OPTIONS "-fno-math-errno;-fno-trapping-math")
# The CUDA library belongs to kernels: bertune_kernels links it and everything
# above kernels sees BERTUNE_CUDA defined.
set(BERTUNE_CUDA_CONSUMER bertune_kernels)
include(${CMAKE_CURRENT_LIST_DIR}/cuda.cmake)

# Only the path lookup knows where the source and build trees are, so the other
# objects do not depend on where the tree lies. The source tree's models/ and
# ../shared are used only by a binary that runs from this build tree.
set_source_files_properties(${CMAKE_SOURCE_DIR}/src/util/paths.cc PROPERTIES
  COMPILE_DEFINITIONS "BERTUNE_SOURCE_DIR=\"${CMAKE_SOURCE_DIR}\";BERTUNE_BUILD_DIR=\"${CMAKE_BINARY_DIR}\"")

if(NOT BERTUNE_FUZZ)
  target_link_libraries(bertune_cli PUBLIC CLI11::CLI11)
  add_executable(bertune src/cli/main.cc)
  target_link_libraries(bertune PRIVATE bertune_cli)
endif()
