// See weight_cache.h.
#include "weight_cache.h"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "engine.h"
#include "errors.h"

namespace edgegen {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string without_trailing_slashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

const char* machine() {
#if defined(__aarch64__)
  return "arm64";
#elif defined(__x86_64__)
  return "x86_64";
#elif defined(__arm__)
  return "arm";
#elif defined(__i386__)
  return "x86";
#else
  return "cpu";
#endif
}

// 8 hex digits of FNV-1a over the first "flags" (x86) / "Features" (arm) line of /proc/cpuinfo: the ISA extensions
// XNNPACK picks its micro-kernels (and so its packed layouts) from. "00000000" when there is no such line.
const std::string& cpu_tag() {
  static const std::string tag = [] {
    std::ifstream f("/proc/cpuinfo");
    std::string line, features;
    while (std::getline(f, line)) {
      if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) {
        const size_t colon = line.find(':');
        if (colon != std::string::npos) features = line.substr(colon + 1);
        break;
      }
    }
    uint32_t h = 2166136261u;
    for (unsigned char c : features) h = (h ^ c) * 16777619u;
    char buf[9];
    std::snprintf(buf, sizeof(buf), "%08x", features.empty() ? 0u : h);
    return std::string(buf);
  }();
  return tag;
}

void warn(const WeightCache& wc, const std::string& message) {
  if (wc.verbose) std::fprintf(stderr, "edgegen-runner: warning: %s\n", message.c_str());
}

bool regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Removes `file` unless another process holds a lock on it (ExecuTorch keeps one while it maps its cache file).
void remove_unless_locked(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    ::unlink(file.c_str());
    ::flock(fd, LOCK_UN);
  }
  ::close(fd);
}

// Removes <file>.tmp-<pid> files whose process is gone (a crashed build).
void remove_stale_temps(const std::string& file) {
  const size_t slash = file.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : file.substr(0, slash);
  const std::string prefix = file.substr(slash + 1) + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (end == nullptr || *end != '\0' || pid <= 0) continue;
    if (pid == long(::getpid()) || (::kill(pid_t(pid), 0) != 0 && errno == ESRCH)) ::unlink((dir + "/" + name).c_str());
  }
  ::closedir(d);
}

// Reads `n` bytes at `offset`; false on a short read.
bool read_at(int fd, void* out, size_t n, uint64_t offset) {
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd, static_cast<char*>(out) + done, n - done, off_t(offset + done));
    if (got <= 0) return false;
    done += size_t(got);
  }
  return true;
}

template <typename T>
T le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // both formats are little-endian, as are the runner's targets
  return v;
}

// Removes the temporary file of a build unless released (the rename happened).
struct TempFile {
  std::string path;
  ~TempFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

const char* cache_use_name(CacheUse use) {
  switch (use) {
    case CacheUse::Hit: return "hit";
    case CacheUse::Built: return "built";
    default: return "off";
  }
}

std::string default_weight_cache_dir() {
  if (!env("EDGEGEN_WEIGHT_CACHE").empty()) return without_trailing_slashes(env("EDGEGEN_WEIGHT_CACHE"));
  if (!env("XDG_CACHE_HOME").empty()) return without_trailing_slashes(env("XDG_CACHE_HOME")) + "/edgegen/xnnpack";
  const std::string home = without_trailing_slashes(env("HOME"));
  if (!home.empty() && home != "/") return home + "/.cache/edgegen/xnnpack";
  return "/data/local/tmp/edgegen-xnnpack-cache";  // Android's shell: no HOME, or HOME=/
}

void prepare_weight_cache_dir(const WeightCache& wc, const std::string& flag) {
  if (!wc.enabled) return;
  const std::string& dir = wc.dir;
  const std::string fix = "; give a writable folder with --weight-cache DIR (or EDGEGEN_WEIGHT_CACHE), or run with --no-weight-cache";
  if (dir.empty()) throw InputError(flag + " is empty" + fix);
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      throw InputError("cannot create the weight cache folder " + dir + " (" + flag + "): " + part + ": " + std::strerror(errno) + fix);
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw InputError("the weight cache folder " + dir + " (" + flag + ") is not a directory" + fix);
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw InputError("the weight cache folder " + dir + " (" + flag + ") is not writable: " + std::strerror(errno) + fix);
  }
}

std::string weight_cache_file(const WeightCache& wc, const std::string& backend, const char* name, const Artifact& artifact) {
  if (!wc.enabled || artifact.sha256.size() < 16) return "";
  if (backend == "executorch" && !executorch_weight_cache_supported()) return "";
  // LiteRT 2.3's XNNPACK aborts (SIGABRT) packing FORCE_FP16 weights into a cache file (seen under qemu-aarch64
  // -cpu max): an artifact computed in fp16 loads without one (edgegen.runtime does the same)
  if (backend == "litert" && (artifact.xnnpack_flags & 0x4u)) return "";
  const std::string file = wc.dir + "/" + artifact.sha256.substr(0, 16) + "-" + backend + "-" + name + "-" + machine() + "-" +
                           cpu_tag() + ".xnnpack";
  // LiteRT takes the path inside a quoted option value; ExecuTorch takes at most 255 bytes (temporary suffix included).
  if (file.find_first_of("\"\n\r") != std::string::npos || (backend == "executorch" && file.size() + 24 > 255)) {
    warn(wc, std::string(name) + ": the weight cache path " + file + " is too long or has a quote or newline in it; "
             "running without a weight cache (choose another --weight-cache DIR)");
    return "";
  }
  return file;
}

std::pair<std::unique_ptr<Engine>, CacheUse> load_with_weight_cache(const WeightCache& wc, const std::string& file,
                                                                    const char* name, const CacheLoader& load,
                                                                    bool (*valid)(const std::string& path)) {
  if (file.empty()) return {load({}), CacheUse::Off};
  const std::string what = std::string(name) + ": ";
  if (regular_file(file)) {
    if (valid(file)) {
      std::unique_ptr<Engine> engine;
      try {
        engine = load({CacheRequest::Use, file});
      } catch (const RuntimeFailure& e) {
        warn(wc, what + "loading with the weight cache " + file + " failed (" + e.what() + "); removed it, loading without it");
        remove_unless_locked(file);
        return {load({}), CacheUse::Off};
      }
      if (mapped_by_this_process(file)) return {std::move(engine), CacheUse::Hit};
      // The runtime refused the file (another XNNPACK build, or another process holds it): the artifact is loaded
      // without it; the next run builds a new one unless the file is in use.
      warn(wc, what + "the runtime did not take the weight cache " + file + " (made by another runtime build, or in use); "
                      "running without it");
      remove_unless_locked(file);
      return {std::move(engine), CacheUse::Off};
    }
    warn(wc, what + "the weight cache " + file + " is invalid (truncated, or not this runtime's format); rebuilding it");
  }
  remove_stale_temps(file);
  TempFile tmp{file + ".tmp-" + std::to_string(::getpid())};
  ::unlink(tmp.path.c_str());
  std::unique_ptr<Engine> engine;
  try {
    engine = load({CacheRequest::Build, tmp.path});
  } catch (const RuntimeFailure& e) {
    warn(wc, what + "building the weight cache " + file + " failed (" + e.what() + "); loading without it");
    ::unlink(tmp.path.c_str());
    return {load({}), CacheUse::Off};
  }
  if (!valid(tmp.path)) {
    warn(wc, what + "the runtime wrote no usable weight cache (" + tmp.path + "); running without one");
    return {std::move(engine), CacheUse::Off};
  }
  if (std::rename(tmp.path.c_str(), file.c_str()) != 0) {
    warn(wc, what + "cannot rename " + tmp.path + " to " + file + ": " + std::strerror(errno) + "; the cache is not kept");
    return {std::move(engine), CacheUse::Off};
  }
  tmp.path.clear();  // renamed: nothing to remove
  return {std::move(engine), CacheUse::Built};
}

bool valid_litert_cache(const std::string& path) {
  // XNNPackCacheHeader v4 (tflite/delegates/xnnpack/weight_cache.h, LiteRT 2.2-2.3): u64 version (4),
  // u64 buffer_list_offset, u64 buffer_list_size, u8 stale (set by a run that missed entries), padded to 32 bytes;
  // the buffer list (a flatbuffer) ends the file. The runtime also checks XNNPACK's micro-kernel fingerprints.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  uint8_t h[32];
  const bool ok = ::fstat(fd, &st) == 0 && st.st_size >= off_t(sizeof(h)) && read_at(fd, h, sizeof(h), 0);
  ::close(fd);
  if (!ok) return false;
  const uint64_t size = uint64_t(st.st_size), version = le<uint64_t>(h), offset = le<uint64_t>(h + 8),
                 list_size = le<uint64_t>(h + 16);
  return version == 4 && h[24] == 0 && offset >= sizeof(h) && offset < size && list_size == size - offset;
}

bool valid_executorch_cache(const std::string& path) {
  // XNNWeightsCache (backends/xnnpack/runtime/XNNWeightsCache.cpp): packed data, then the index
  // ([u32 name_len][name][u64 file_offset][u64 data_size][u32 seed] per entry), then the footer
  // [u64 index_start][u32 entry_count][u32 magic "XPWC"][u32 version 2]. Same checks as its load_packed_cache.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  uint8_t f[20];
  bool ok = ::fstat(fd, &st) == 0 && st.st_size >= 20 && read_at(fd, f, sizeof(f), uint64_t(st.st_size) - 20);
  std::vector<uint8_t> index;
  const uint64_t size = ok ? uint64_t(st.st_size) : 0, index_start = ok ? le<uint64_t>(f) : 0;
  const uint32_t entries = ok ? le<uint32_t>(f + 8) : 0;
  ok = ok && le<uint32_t>(f + 12) == 0x58505743u && le<uint32_t>(f + 16) == 2 && entries > 0 && index_start < size - 20;
  if (ok) {
    index.resize(size_t(size - 20 - index_start));
    ok = read_at(fd, index.data(), index.size(), index_start);
  }
  ::close(fd);
  if (!ok) return false;
  const uint8_t* p = index.data();
  const uint8_t* end = p + index.size();
  for (uint32_t i = 0; i < entries; ++i) {
    if (end - p < 4) return false;
    const uint32_t name_len = le<uint32_t>(p);
    p += 4;
    if (uint64_t(end - p) < uint64_t(name_len) + 20) return false;
    p += name_len;
    const uint64_t offset = le<uint64_t>(p), bytes = le<uint64_t>(p + 8);
    p += 20;
    if (offset >= index_start || bytes > index_start - offset) return false;
  }
  return true;
}

bool mapped_by_this_process(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  char* real = ::realpath(path.c_str(), nullptr);
  const std::string real_path = real ? real : path;
  std::free(real);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // address perms offset dev(major:minor, hex) inode pathname
    std::istringstream in(line);
    std::string addr, perms, offset, dev, mapped;
    unsigned long long inode = 0;
    if (!(in >> addr >> perms >> offset >> dev >> inode)) continue;
    std::getline(in >> std::ws, mapped);
    unsigned major_no = 0, minor_no = 0;
    const bool same_dev = std::sscanf(dev.c_str(), "%x:%x", &major_no, &minor_no) == 2 && major_no == major(st.st_dev) &&
                          minor_no == minor(st.st_dev);
    if ((same_dev && inode == (unsigned long long)st.st_ino) || (!mapped.empty() && mapped == real_path)) return true;
  }
  return false;
}

CacheUse summarize(const std::vector<std::pair<std::string, CacheUse>>& uses) {
  CacheUse out = CacheUse::Off;
  for (const auto& u : uses) {
    if (u.second == CacheUse::Built) return CacheUse::Built;
    if (u.second == CacheUse::Hit) out = CacheUse::Hit;
  }
  return out;
}

}  // namespace edgegen
