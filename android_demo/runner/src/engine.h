// One bundle artifact loaded in its runtime (the manifest's `backend`): ExecuTorch (.pte, XNNPACK) or LiteRT
// (.tflite, CPU accelerator = XNNPACK through libLiteRt.so's C API).
//
//   auto dit = edgegen::load_engine(bundle.backend, bundle.dit, "dit", threads);
//   std::vector<std::vector<float>> out = dit->run({x, t, cross, glob});   // inputs in call order
//
// Loading checks the artifact's own input/output signature against the manifest (dtype, shape, count; LiteRT also
// the names) and throws InputError on a mismatch, RuntimeFailure when the runtime cannot load it.
//
// With a WeightCache (weight_cache.h) the packed weights come from, or go to, the artifact's XNNPACK cache file:
//   CacheUse use;
//   auto dit = edgegen::load_engine(bundle.backend, bundle.dit, "dit", threads, cache, &use);   // use: hit/built/off
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bundle.h"
#include "weight_cache.h"

namespace edgegen {

class Engine {
 public:
  virtual ~Engine() = default;
  // inputs[i] points at a buffer shaped and typed as artifact.inputs[i] (call order); returns every output copied
  // out, in the manifest's output order. Throws RuntimeFailure when the runtime fails.
  virtual std::vector<std::vector<float>> run(const std::vector<const void*>& inputs) = 0;
};

// `threads`: the CPU thread count (0: the runtime's default). ExecuTorch's pool is process-wide, so for it the
// count is applied by the caller (threadpool.h) and ignored here; LiteRT sizes each compiled model. `cache`: the
// XNNPACK weight cache (default: off); `use`, when given, receives what it did for this artifact.
std::unique_ptr<Engine> load_engine(const std::string& backend, const Artifact& artifact, const char* name, int threads,
                                    const WeightCache& cache = {}, CacheUse* use = nullptr);

// Backend-specific factories behind load_engine; `cache` says which cache file to map or to pack into.
//   ExecuTorch: the XNNPACK backend's load-time options weight_cache_enabled + packed_cache_path (both modes).
//   LiteRT: the CPU options' weight_cache_file_path (Build) or weight_cache_file_descriptor, read-only (Use), so the
//           delegate can never rewrite a cache file it fails to load.
std::unique_ptr<Engine> load_executorch(const Artifact& artifact, const char* name, const CacheRequest& cache = {});
std::unique_ptr<Engine> load_litert(const Artifact& artifact, const char* name, int threads, const CacheRequest& cache = {});

// False when the ExecuTorch the runner was built against has no load-time backend options (before 1.5): its
// artifacts then always load without a weight cache.
bool executorch_weight_cache_supported();

// Drops the resident pages of every mapping of `path` in this process (madvise MADV_DONTNEED); returns the bytes of
// the mappings advised. Every engine load_engine returns does this after loading and after its first call.
size_t drop_file_pages(const std::string& path);

// Shared by the backends' checks: "[1,64,256]".
std::string dims(const std::vector<int64_t>& shape);

}  // namespace edgegen
