# The CUDA backend: bertune_cuda (src/kernels/gpu/*.cu) for sm_90a (H100/H200,
# wgmma) with compute_90 PTX the driver can compile for any later GPU, linked
# into ${BERTUNE_CUDA_CONSUMER} (bertune_kernels), which then sees BERTUNE_CUDA
# defined, as does everything that links it. Included from cmake/layers.cmake
# after the folder libraries are declared.
set(BERTUNE_WITH_CUDA OFF)
set(BERTUNE_WITH_NCCL OFF)
set(BERTUNE_NCCL AUTO CACHE STRING "NCCL for data-parallel training on GPUs (with the CUDA backend): AUTO | ON | OFF")
set_property(CACHE BERTUNE_NCCL PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${BERTUNE_CUDA}" _bertune_cuda_mode)
if(NOT _bertune_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "BERTUNE_CUDA must be AUTO, ON or OFF, not '${BERTUNE_CUDA}'")
endif()
if(_bertune_cuda_mode STREQUAL "AUTO" AND (BERTUNE_SANITIZE OR BERTUNE_FUZZ))
  set(_bertune_cuda_mode OFF)  # ASan and the CUDA runtime's address space do not mix
endif()
if(NOT _bertune_cuda_mode STREQUAL "OFF")
  # nvcc is rarely on PATH in a plain shell; look where the CUDA packages put it.
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(ENV{CUDACXX} /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(BERTUNE_WITH_CUDA ON)
  elseif(_bertune_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "BERTUNE_CUDA=ON but no CUDA compiler was found (set CUDACXX or put nvcc on PATH)")
  else()
    message(STATUS "bertune: no CUDA compiler found; building the CPU backend only")
  endif()
endif()

if(BERTUNE_WITH_CUDA)
  # The -gencode flags below choose the targets; CMake must not add its own.
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  # C++20 like the rest. CMake 3.25 does not know nvcc's C++20 flag (nvcc has
  # had it since 12.0), so it is told here.
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_FLAGS_RELEASE "-O3 -DNDEBUG")
  file(GLOB BERTUNE_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/gpu/*.cu)
  add_library(bertune_cuda STATIC ${BERTUNE_CUDA_SOURCES})
  target_include_directories(bertune_cuda PRIVATE ${CMAKE_SOURCE_DIR}/src)
  # Every nvcc warning is an error: the CPU machines compile this code (CI) without
  # ever running it, so the compiler is its first reviewer.
  target_compile_options(bertune_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-gencode=arch=compute_90a,code=sm_90a
      -gencode=arch=compute_90,code=compute_90 -Werror=all-warnings
      -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter --expt-relaxed-constexpr>)
  target_compile_definitions(bertune_cuda PRIVATE BERTUNE_CUDA)
  # cuBLASLt is opened at its first call (src/kernels/gpu/cublaslt_loader.cu), not linked:
  # linked, its initialisers would run at the start of every command, GPU or not.
  target_link_libraries(bertune_cuda PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})
  target_include_directories(bertune_cuda PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  target_compile_definitions(bertune_cuda PRIVATE BERTUNE_CUBLASLT_DIR="${CUDAToolkit_LIBRARY_DIR}")
  target_link_libraries(${BERTUNE_CUDA_CONSUMER} PUBLIC bertune_cuda)
  target_compile_definitions(${BERTUNE_CUDA_CONSUMER} PUBLIC BERTUNE_CUDA)
  message(STATUS "bertune: CUDA backend ON (${CMAKE_CUDA_COMPILER}, sm_90a + compute_90 PTX)")
  # NCCL, for data-parallel training on GPUs (kernels/collectives.h, docs/distributed.md): AUTO
  # uses it when nccl.h is found (the CUDA toolkit's include dirs, or NCCL_ROOT / CPATH), ON
  # requires it, OFF leaves it out. Like cuBLASLt it is opened at its first call, not linked;
  # the directory its library was found in is where that looks after the loader's own path.
  # Only the two files that implement it see BERTUNE_NCCL (nothing else recompiles).
  string(TOUPPER "${BERTUNE_NCCL}" _bertune_nccl_mode)
  if(NOT _bertune_nccl_mode STREQUAL "OFF")
    find_path(BERTUNE_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_ROOT}/include)
    find_library(BERTUNE_NCCL_LIBRARY NAMES nccl libnccl.so.2
                 HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_ROOT}/lib ${CUDAToolkit_LIBRARY_DIR}/../lib)
    if(BERTUNE_NCCL_INCLUDE_DIR)
      set(BERTUNE_WITH_NCCL ON)
      set(_bertune_nccl_defs BERTUNE_NCCL)
      if(BERTUNE_NCCL_LIBRARY)
        get_filename_component(_bertune_nccl_dir "${BERTUNE_NCCL_LIBRARY}" DIRECTORY)
        list(APPEND _bertune_nccl_defs "BERTUNE_NCCL_DIR=\"${_bertune_nccl_dir}\"")
      endif()
      set_source_files_properties(${CMAKE_SOURCE_DIR}/src/kernels/gpu/nccl_gpu.cu PROPERTIES
        COMPILE_DEFINITIONS "${_bertune_nccl_defs}" INCLUDE_DIRECTORIES "${BERTUNE_NCCL_INCLUDE_DIR}")
      set_source_files_properties(${CMAKE_SOURCE_DIR}/src/kernels/collectives.cc PROPERTIES
        COMPILE_DEFINITIONS BERTUNE_NCCL)
      message(STATUS "bertune: NCCL ${BERTUNE_NCCL_INCLUDE_DIR}/nccl.h (the library opened at its first call)")
    elseif(_bertune_nccl_mode STREQUAL "ON")
      message(FATAL_ERROR "BERTUNE_NCCL=ON but nccl.h was not found (set NCCL_ROOT or CPATH)")
    else()
      message(STATUS "bertune: no nccl.h found; data-parallel training on GPUs left out")
    endif()
  endif()
endif()
