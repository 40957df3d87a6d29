// See litert_api.h.
#include "litert_api.h"

#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <fcntl.h>
#include <mutex>
#include <unistd.h>

#include "errors.h"

namespace edgegen::litert {
namespace {

constexpr const char* kVersionNode = "VERS_1.0";
constexpr const char* kFix = "; the runner needs libLiteRt.so from ai-edge-litert 2.3.0 for this CPU "
                             "(`edgegen build-runner` puts it beside edgegen-runner, or set EDGEGEN_LITERT_LIB=PATH)";

void* open_library() {
  const char* explicit_path = std::getenv("EDGEGEN_LITERT_LIB");
  const std::string name = explicit_path && *explicit_path ? explicit_path : "libLiteRt.so";
  void* handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw RuntimeFailure("cannot load " + name + " for this LiteRT bundle (" + (why ? why : "no reason given") + ")" + kFix);
  }
  return handle;
}

template <typename Fn>
void resolve(void* handle, const std::string& library, const char* symbol, Fn*& out) {
#if defined(__GLIBC__)
  void* p = ::dlvsym(handle, symbol, kVersionNode);  // pin the symbol version, not only the name
#else
  void* p = ::dlsym(handle, symbol);  // Android's bionic: versioned lookup is not needed to find VERS_1.0
#endif
  if (p == nullptr) {
    throw RuntimeFailure(library + " has no " + symbol + " (" + kVersionNode + "); it is not the LiteRT C API this runner " +
                         "was written for" + kFix);
  }
  out = reinterpret_cast<Fn*>(p);
}

Api load() {
  void* handle = open_library();
  Api a;
  Dl_info info{};
  // Any symbol of the library will do for dladdr; resolve one first so the messages below name the real file.
  void* probe = ::dlsym(handle, "LiteRtCreateEnvironment");
  a.library = probe && ::dladdr(probe, &info) && info.dli_fname ? info.dli_fname : "libLiteRt.so";
  resolve(handle, a.library, "LiteRtCreateEnvironment", a.CreateEnvironment);
  resolve(handle, a.library, "LiteRtCreateModelFromFile", a.CreateModelFromFile);
  resolve(handle, a.library, "LiteRtDestroyModel", a.DestroyModel);
  resolve(handle, a.library, "LiteRtGetNumModelSignatures", a.GetNumModelSignatures);
  resolve(handle, a.library, "LiteRtGetModelSignature", a.GetModelSignature);
  resolve(handle, a.library, "LiteRtGetNumSignatureInputs", a.GetNumSignatureInputs);
  resolve(handle, a.library, "LiteRtGetNumSignatureOutputs", a.GetNumSignatureOutputs);
  resolve(handle, a.library, "LiteRtGetSignatureInputName", a.GetSignatureInputName);
  resolve(handle, a.library, "LiteRtGetSignatureOutputName", a.GetSignatureOutputName);
  resolve(handle, a.library, "LiteRtGetSignatureInputTensorByIndex", a.GetSignatureInputTensorByIndex);
  resolve(handle, a.library, "LiteRtGetSignatureOutputTensorByIndex", a.GetSignatureOutputTensorByIndex);
  resolve(handle, a.library, "LiteRtGetRankedTensorType", a.GetRankedTensorType);
  resolve(handle, a.library, "LiteRtCreateOptions", a.CreateOptions);
  resolve(handle, a.library, "LiteRtDestroyOptions", a.DestroyOptions);
  resolve(handle, a.library, "LiteRtSetOptionsHardwareAccelerators", a.SetOptionsHardwareAccelerators);
  resolve(handle, a.library, "LiteRtCreateOpaqueOptions", a.CreateOpaqueOptions);
  resolve(handle, a.library, "LiteRtAddOpaqueOptions", a.AddOpaqueOptions);
  resolve(handle, a.library, "LiteRtCreateCompiledModel", a.CreateCompiledModel);
  resolve(handle, a.library, "LiteRtDestroyCompiledModel", a.DestroyCompiledModel);
  resolve(handle, a.library, "LiteRtCreateTensorBufferFromHostMemory", a.CreateTensorBufferFromHostMemory);
  resolve(handle, a.library, "LiteRtDestroyTensorBuffer", a.DestroyTensorBuffer);
  resolve(handle, a.library, "LiteRtLockTensorBuffer", a.LockTensorBuffer);
  resolve(handle, a.library, "LiteRtUnlockTensorBuffer", a.UnlockTensorBuffer);
  resolve(handle, a.library, "LiteRtRunCompiledModel", a.RunCompiledModel);
  return a;  // the handle stays open for the life of the process
}

}  // namespace

const Api& api() {
  static std::once_flag once;
  static Api loaded;
  static std::string error;
  std::call_once(once, [] {
    try {
      loaded = load();
    } catch (const RuntimeFailure& e) {
      error = e.what();
    }
  });
  if (!error.empty()) throw RuntimeFailure(error);
  return loaded;
}

namespace {
bool g_verbose = false;
}  // namespace

void set_verbose(bool verbose) { g_verbose = verbose; }

Quiet::Quiet() {
  if (g_verbose) return;
  std::fflush(stderr);
  const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) return;
  saved_ = ::dup(STDERR_FILENO);
  if (saved_ >= 0) ::dup2(null_fd, STDERR_FILENO);
  ::close(null_fd);
}

Quiet::~Quiet() {
  if (saved_ < 0) return;
  std::fflush(stderr);
  ::dup2(saved_, STDERR_FILENO);
  ::close(saved_);
}

const char* status_name(Status status) {
  switch (status) {
    case 0: return "kLiteRtStatusOk";
    case 1: return "kLiteRtStatusErrorInvalidArgument";
    case 2: return "kLiteRtStatusErrorMemoryAllocationFailure";
    case 3: return "kLiteRtStatusErrorRuntimeFailure";
    case 4: return "kLiteRtStatusErrorMissingInputTensor";
    case 5: return "kLiteRtStatusErrorUnsupported";
    case 6: return "kLiteRtStatusErrorNotFound";
    case 7: return "kLiteRtStatusErrorTimeoutExpired";
    case 8: return "kLiteRtStatusErrorWrongVersion";
    case 9: return "kLiteRtStatusErrorUnknown";
    case 10: return "kLiteRtStatusErrorAlreadyExists";
    case 100: return "kLiteRtStatusCancelled";
    case 500: return "kLiteRtStatusErrorFileIO";
    case 501: return "kLiteRtStatusErrorInvalidFlatbuffer";
    case 502: return "kLiteRtStatusErrorDynamicLoading";
    case 503: return "kLiteRtStatusErrorSerialization";
    case 504: return "kLiteRtStatusErrorCompilation";
    case 1000: return "kLiteRtStatusErrorIndexOOB";
    default: return "unknown";
  }
}

void check(Status status, const std::string& what) {
  if (status != 0) {
    throw RuntimeFailure(what + " failed: LiteRT status " + status_name(status) + " (" + std::to_string(status) + ")");
  }
}

}  // namespace edgegen::litert
