// See engine.h.
#include "engine.h"

namespace edgegen {

std::unique_ptr<Engine> load_engine(const std::string& backend, const Artifact& artifact, const char* name, int threads) {
  if (backend == "litert") return load_litert(artifact, name, threads);
  return load_executorch(artifact, name);  // load_bundle() accepted only these two
}

std::string dims(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace edgegen
