// The part of LiteRT's C API the runner calls, declared here from the C API's documented signatures because the
// ai-edge-litert wheel ships libLiteRt.so without headers. Written against ai-edge-litert 2.3.0 (LiteRT's C API,
// symbol version VERS_1.0); a library that lacks any of these symbols is refused with one line naming the symbol.
//
// libLiteRt.so is opened at the first LiteRT bundle (dlopen), so the runner starts and runs ExecuTorch bundles
// without it. Where it is looked for, first match wins:
//   $EDGEGEN_LITERT_LIB                        an explicit path
//   libLiteRt.so through the dynamic loader    the runner's RUNPATH ($ORIGIN, $ORIGIN/../lib), LD_LIBRARY_PATH,
//                                              `ld.so --library-path`, an Android app's native library folder
//
// Usage:
//   const edgegen::litert::Api& api = edgegen::litert::api();   // throws RuntimeFailure with the fix
//   edgegen::litert::check(api.CreateEnvironment(0, nullptr, &env), "creating the LiteRT environment");
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace edgegen::litert {

// Opaque handles (pointers to the library's own structs).
using Environment = struct EnvironmentT*;
using Model = struct ModelT*;
using Signature = struct SignatureT*;
using Tensor = struct TensorT*;
using Options = struct OptionsT*;
using OpaqueOptions = struct OpaqueOptionsT*;
using CompiledModel = struct CompiledModelT*;
using TensorBuffer = struct TensorBufferT*;

using Status = int;        // LiteRtStatus; 0 is success
using ParamIndex = size_t;  // LiteRtParamIndex

constexpr int kMaxRank = 8;               // LITERT_TENSOR_MAX_RANK
constexpr size_t kHostAlignment = 64;     // LITERT_HOST_MEMORY_BUFFER_ALIGNMENT
constexpr int kHwAcceleratorCpu = 1;      // kLiteRtHwAcceleratorCpu
constexpr int kElementFloat32 = 1;        // kLiteRtElementTypeFloat32
constexpr int kElementInt32 = 2;          // kLiteRtElementTypeInt32
constexpr int kLockRead = 0;              // kLiteRtTensorBufferLockModeRead
constexpr const char* kCpuOptionsId = "xnnpack";  // the CPU accelerator's opaque-options identifier (TOML payload)

struct Layout {  // LiteRtLayout
  unsigned int rank : 7;
  unsigned int has_strides : 1;
  int32_t dimensions[kMaxRank];
  uint32_t strides[kMaxRank];
};
static_assert(sizeof(Layout) == 68, "LiteRtLayout is 68 bytes in LiteRT 2.3.0");

struct RankedTensorType {  // LiteRtRankedTensorType
  int element_type;
  Layout layout;
};
static_assert(sizeof(RankedTensorType) == 72, "LiteRtRankedTensorType is 72 bytes in LiteRT 2.3.0");

struct Api {
  Status (*CreateEnvironment)(int num_options, const void* options, Environment* env);
  Status (*CreateModelFromFile)(Environment env, const char* filename, Model* model);
  void (*DestroyModel)(Model model);
  Status (*GetNumModelSignatures)(Model model, ParamIndex* num);
  Status (*GetModelSignature)(Model model, ParamIndex index, Signature* signature);
  Status (*GetNumSignatureInputs)(Signature signature, ParamIndex* num);
  Status (*GetNumSignatureOutputs)(Signature signature, ParamIndex* num);
  Status (*GetSignatureInputName)(Signature signature, ParamIndex index, const char** name);
  Status (*GetSignatureOutputName)(Signature signature, ParamIndex index, const char** name);
  Status (*GetSignatureInputTensorByIndex)(Signature signature, ParamIndex index, Tensor* tensor);
  Status (*GetSignatureOutputTensorByIndex)(Signature signature, ParamIndex index, Tensor* tensor);
  Status (*GetRankedTensorType)(Tensor tensor, RankedTensorType* type);
  Status (*CreateOptions)(Options* options);
  void (*DestroyOptions)(Options options);
  Status (*SetOptionsHardwareAccelerators)(Options options, int accelerators);
  Status (*CreateOpaqueOptions)(const char* id, void* payload, void (*destroy)(void*), OpaqueOptions* out);
  Status (*AddOpaqueOptions)(Options options, OpaqueOptions opaque);  // `options` takes ownership of `opaque`
  Status (*CreateCompiledModel)(Environment env, Model model, Options options, CompiledModel* out);
  void (*DestroyCompiledModel)(CompiledModel compiled);
  Status (*CreateTensorBufferFromHostMemory)(const RankedTensorType* type, void* data, size_t size,
                                             void (*deallocate)(void*), TensorBuffer* out);
  void (*DestroyTensorBuffer)(TensorBuffer buffer);
  Status (*LockTensorBuffer)(TensorBuffer buffer, void** data, int mode);
  Status (*UnlockTensorBuffer)(TensorBuffer buffer);
  Status (*RunCompiledModel)(CompiledModel compiled, ParamIndex signature, size_t num_inputs, TensorBuffer* inputs,
                             size_t num_outputs, TensorBuffer* outputs);
  std::string library;  // the path dladdr reports for the loaded library
};

// The resolved API (loaded once per process). Throws RuntimeFailure when libLiteRt.so cannot be opened or lacks a
// symbol, with a message naming the library path and the fix.
const Api& api();

// LiteRT logs info lines (environment, accelerator registry, XNNPACK) straight to stderr and exports no way to
// quiet them; while a Quiet is alive, fd 2 points at /dev/null unless set_verbose(true) was called (--verbose).
// Single-threaded use only (the runner's own thread; XNNPACK's workers never log).
void set_verbose(bool verbose);
class Quiet {
 public:
  Quiet();
  ~Quiet();
  Quiet(const Quiet&) = delete;
  Quiet& operator=(const Quiet&) = delete;

 private:
  int saved_ = -1;
};

// Throws RuntimeFailure("<what> failed: LiteRT status <name> (<code>)") unless `status` is 0.
void check(Status status, const std::string& what);

// LiteRtStatus as its enumerator name ("kLiteRtStatusErrorInvalidArgument"), or "unknown".
const char* status_name(Status status);

}  // namespace edgegen::litert
