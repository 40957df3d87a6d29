// See engine.h.
#include "engine.h"

#include <sys/mman.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace edgegen {

size_t drop_file_pages(const std::string& path) {
  char real[PATH_MAX];
  if (!realpath(path.c_str(), real)) return 0;
  FILE* maps = std::fopen("/proc/self/maps", "r");
  if (!maps) return 0;
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;
  char line[PATH_MAX + 128];
  while (std::fgets(line, sizeof line, maps)) {
    unsigned long lo = 0, hi = 0;
    char perms[8] = {0};
    int name_at = 0;
    // "lo-hi perms offset dev inode   pathname"
    if (std::sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &name_at) < 3 || name_at == 0) continue;
    char* name = line + name_at;
    name[std::strcspn(name, "\n")] = '\0';
    // read-only mappings only: dropping a written private page would lose the write
    if (perms[1] != 'w' && std::strcmp(name, real) == 0) spans.emplace_back(lo, hi);
  }
  std::fclose(maps);
  size_t dropped = 0;
  for (auto [lo, hi] : spans) {
    if (madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED) == 0) dropped += hi - lo;
  }
  return dropped;
}

namespace {

// The runtimes map the model file and read its weights once, to pack them (XNNPACK) or to check the flatbuffer;
// the read pages then stay resident beside the packed copy (or the weight cache's), so every weight would count
// twice. Their pages are dropped after loading and after the first call (the file stays mapped: anything read
// again faults back in from it; the outputs are unchanged).
class FilePagesDropped final : public Engine {
 public:
  FilePagesDropped(std::unique_ptr<Engine> inner, std::string path) : inner_(std::move(inner)), path_(std::move(path)) {
    drop_file_pages(path_);
  }
  std::vector<std::vector<float>> run(const std::vector<const void*>& inputs) override {
    auto out = inner_->run(inputs);
    if (first_) drop_file_pages(path_);
    first_ = false;
    return out;
  }

 private:
  std::unique_ptr<Engine> inner_;
  std::string path_;
  bool first_ = true;
};

}  // namespace

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
  return std::make_unique<FilePagesDropped>(std::move(loaded.first), artifact.path);
}

std::string dims(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace edgegen
