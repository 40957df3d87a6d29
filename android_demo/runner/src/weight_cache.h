// XNNPACK weight cache: the packed weights of each artifact kept in a file, so a run after the first maps them from
// there and never reads (or keeps resident) the model's own weight pages. Both backends pack through XNNPACK, so
// without a cache the process holds the weights twice (mmapped model + packed copy, LiteRT for the whole run,
// ExecuTorch while loading); with a cache hit it holds the packed copy only, mapped read-only from the cache file.
//
//   <dir>/<sha16>-<backend>-<component>-<arch>-<cpu>.xnnpack
//     sha16      the first 16 hex digits of the artifact's sha256 (manifest.json): XNNPACK does not notice a changed
//                model, so another export never meets this file
//     arch, cpu  the machine (x86_64, arm64) and 8 hex digits of a hash of its CPU feature flags (/proc/cpuinfo):
//                XNNPACK packs for the micro-kernels of this CPU
//
// A missing or invalid file (truncated, not this runtime's format) is built: the runtime packs into
// <file>.tmp-<pid> while the model loads, and the runner renames it into place only after the load succeeded, so a
// crashed or concurrent run never leaves a half-written file under the final name (concurrent builders each write
// their own temporary file; the last rename wins, both are complete). A file that looks valid but that the runtime
// does not take (another XNNPACK build) leaves the artifact loaded without a cache and is removed, so the next run
// builds it again; a load that fails with the cache is retried without it. Either way generation goes on, with one
// "edgegen-runner: warning:" line on stderr under --verbose only.
//
//   WeightCache wc = weight_cache_options(enabled, dir);   // dir "" = default_weight_cache_dir()
//   prepare_weight_cache_dir(wc);                           // InputError when it cannot be created
//   std::string file = weight_cache_file(wc, bundle.backend, "dit", bundle.dit);
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bundle.h"

namespace edgegen {

class Engine;

struct WeightCache {
  bool enabled = false;
  std::string dir;
  bool verbose = false;  // print the fall-back warnings (stderr stays empty otherwise)
};

// How one artifact's packed weights were obtained this run.
enum class CacheUse { Off, Hit, Built };
const char* cache_use_name(CacheUse use);  // "off" | "hit" | "built"

// $EDGEGEN_WEIGHT_CACHE if set, else $XDG_CACHE_HOME/edgegen/xnnpack, else $HOME/.cache/edgegen/xnnpack, else (no
// HOME, or HOME=/ as in Android's shell) /data/local/tmp/edgegen-xnnpack-cache.
std::string default_weight_cache_dir();

// Creates wc.dir (and its parents) when wc.enabled and checks it is a writable directory; InputError naming the
// folder, the reason and the fix otherwise. `flag` names where the folder came from, for the message.
void prepare_weight_cache_dir(const WeightCache& wc, const std::string& flag);

// The cache file of `artifact` (component `name`, e.g. "dit"), or "" when the cache is off.
std::string weight_cache_file(const WeightCache& wc, const std::string& backend, const char* name, const Artifact& artifact);

// What a backend is asked to do with the cache when loading an artifact.
struct CacheRequest {
  enum Mode { None, Use, Build } mode = None;
  std::string path;  // Use: a complete cache file to map; Build: the (temporary) file to pack into
};

// Loads an artifact through `load` with its cache file `file` ("" = off), following the rules at the top of this
// file; `valid` checks a file's format before it is used. Returns the engine and what the cache did.
using CacheLoader = std::function<std::unique_ptr<Engine>(const CacheRequest&)>;
std::pair<std::unique_ptr<Engine>, CacheUse> load_with_weight_cache(const WeightCache& wc, const std::string& file,
                                                                    const char* name, const CacheLoader& load,
                                                                    bool (*valid)(const std::string& path));

// Format checks of the two runtimes' cache files (sizes, header/footer, index bounds: what a truncated or foreign
// file fails). Neither reads the packed data.
// Both are the formats of the runtimes the runner is built for (LiteRT 2.3.0: header v4; ExecuTorch 1.5: "XPWC" v2);
// another format only makes every run rebuild the cache.
bool valid_litert_cache(const std::string& path);      // TFLite XNNPACK delegate (MMapWeightCacheProvider)
bool valid_executorch_cache(const std::string& path);  // ExecuTorch XNNPACK backend (XNNWeightsCache)

// True when this process has `path` (by device and inode) mapped, i.e. the runtime uses the cache file.
bool mapped_by_this_process(const std::string& path);

// One summary value for the JSON report: "built" when any artifact was (re)built, else "hit" when any was mapped
// from a cache, else "off".
CacheUse summarize(const std::vector<std::pair<std::string, CacheUse>>& uses);

}  // namespace edgegen
