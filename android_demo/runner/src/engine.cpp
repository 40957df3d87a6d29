// See engine.h.
#include "engine.h"

namespace edgegen {

std::unique_ptr<Engine> load_engine(const std::string& backend, const Artifact& artifact, const char* name, int threads,
                                    const WeightCache& cache, CacheUse* use) {
  const bool litert = backend == "litert";  // else "executorch": load_bundle() accepted only these two
  auto loaded = load_with_weight_cache(
      cache, weight_cache_file(cache, backend, name, artifact), name,
      [&](const CacheRequest& request) {
        return litert ? load_litert(artifact, name, threads, request) : load_executorch(artifact, name, request);
      },
      litert ? valid_litert_cache : valid_executorch_cache);
  if (use) *use = loaded.second;
  return std::move(loaded.first);
}

std::string dims(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace edgegen
