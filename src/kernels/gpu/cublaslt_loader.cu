// The cuBLASLt functions the GEMMs call (gemm_gpu.cu), resolved from libcublasLt
// the first time one is called instead of when the program starts.
//
// Linked the usual way, libcublasLt (540 MB) is mapped and its initialisers run
// at every start of every command, GPU or not: about a second of CPU time and
// 200 MB of memory before `bertune --version` prints. Here each function of
// cublasLt.h that bertune uses is defined with the header's signature and
// forwards to the library's, opened with dlopen on first use: by its soname
// (LD_LIBRARY_PATH, the executable's run path, the loader's cache), then from the
// CUDA toolkit bertune was built against. A missing library makes every call
// return CUBLAS_STATUS_NOT_INITIALIZED, and cublasLtGetStatusString then names
// the library and dlerror()'s reason, which check_cublas puts in its Error.
#include <cublasLt.h>
#include <dlfcn.h>

#include <string>

#define BERTUNE_STR2(x) #x
#define BERTUNE_STR(x) BERTUNE_STR2(x)

namespace {

constexpr const char* kSoname = "libcublasLt.so." BERTUNE_STR(CUBLAS_VER_MAJOR);

struct Library {
  void* handle = nullptr;
  std::string failure;  // why it could not be opened
};

const Library& library() {
  static const Library lib = [] {
    Library l;
    l.handle = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
#ifdef BERTUNE_CUBLASLT_DIR
    if (!l.handle) {
      const std::string path = std::string(BERTUNE_CUBLASLT_DIR) + "/" + kSoname;
      l.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    }
#endif
    if (!l.handle) {
      const char* why = dlerror();
      l.failure = std::string(kSoname) + " could not be loaded (" + (why ? why : "not found") + ")";
    }
    return l;
  }();
  return lib;
}

void* symbol(const char* name) {
  const Library& lib = library();
  return lib.handle ? dlsym(lib.handle, name) : nullptr;
}

}  // namespace

// Each stub resolves its function once, as the header's own pointer type.
#define BERTUNE_CUBLASLT_FORWARD(name, ...)                                               \
  static const auto fn = reinterpret_cast<decltype(&name)>(symbol(#name));                \
  return fn ? fn(__VA_ARGS__) : CUBLAS_STATUS_NOT_INITIALIZED

extern "C" {

const char* CUBLASWINAPI cublasLtGetStatusString(cublasStatus_t status) {
  static const auto fn = reinterpret_cast<decltype(&cublasLtGetStatusString)>(symbol("cublasLtGetStatusString"));
  if (fn) return fn(status);
  const std::string& failure = library().failure;
  return failure.empty() ? "cublasLtGetStatusString missing from the library" : failure.c_str();
}

cublasStatus_t CUBLASWINAPI cublasLtCreate(cublasLtHandle_t* lightHandle) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtCreate, lightHandle);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc, cublasComputeType_t computeType,
                                                     cudaDataType_t scaleType) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmulDescCreate, matmulDesc, computeType, scaleType);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmulDescDestroy, matmulDesc);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                                           cublasLtMatmulDescAttributes_t attr, const void* buf,
                                                           size_t sizeInBytes) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmulDescSetAttribute, matmulDesc, attr, buf, sizeInBytes);
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type,
                                                       uint64_t rows, uint64_t cols, int64_t ld) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatrixLayoutCreate, matLayout, type, rows, cols, ld);
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatrixLayoutDestroy, matLayout);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmulPreferenceCreate, pref);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmulPreferenceDestroy, pref);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                                 cublasLtMatmulPreferenceAttributes_t attr,
                                                                 const void* buf, size_t sizeInBytes) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmulPreferenceSetAttribute, pref, attr, buf, sizeInBytes);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc, cublasLtMatrixLayout_t Adesc,
    cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
    cublasLtMatmulPreference_t preference, int requestedAlgoCount,
    cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmulAlgoGetHeuristic, lightHandle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc,
                           preference, requestedAlgoCount, heuristicResultsArray, returnAlgoCount);
}

cublasStatus_t CUBLASWINAPI cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
                                           const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
                                           const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                                           const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                                           cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo,
                                           void* workspace, size_t workspaceSizeInBytes, cudaStream_t stream) {
  BERTUNE_CUBLASLT_FORWARD(cublasLtMatmul, lightHandle, computeDesc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D,
                           Ddesc, algo, workspace, workspaceSizeInBytes, stream);
}

}  // extern "C"
