// Manifest parsing and artifact verification; see bundle.h.
#include "bundle.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "errors.h"
#include "json.h"
#include "sha256.h"

namespace edgegen {
namespace {

constexpr const char* kFix = "; re-export the bundle with `edgegen export`";

struct Reader {
  std::string where;  // "manifest.json"

  [[noreturn]] void fail(const std::string& key, const std::string& why, const char* fix = kFix) const {
    throw InputError(where + ": '" + key + "' " + why + fix);
  }
  const Json& get(const Json& obj, const std::string& key, const std::string& path, Json::Type type, const char* tname) const {
    const Json* v = obj.find(key);
    if (!v) fail(path, "is missing");
    if (v->type != type) fail(path, std::string("must be ") + tname);
    return *v;
  }
  const Json& object(const Json& o, const std::string& k, const std::string& p) const { return get(o, k, p, Json::Type::Object, "an object"); }
  const Json& array(const Json& o, const std::string& k, const std::string& p) const { return get(o, k, p, Json::Type::Array, "an array"); }
  std::string string(const Json& o, const std::string& k, const std::string& p) const { return get(o, k, p, Json::Type::String, "a string").string; }
  double number(const Json& o, const std::string& k, const std::string& p) const { return get(o, k, p, Json::Type::Number, "a number").number; }
  int64_t integer(const Json& o, const std::string& k, const std::string& p) const {
    double v = number(o, k, p);
    if (v != std::floor(v) || std::fabs(v) > 9e15) fail(p, "must be an integer");
    return int64_t(v);
  }
};

std::vector<TensorSpec> tensor_specs(const Reader& r, const Json& art, const std::string& key, const std::string& path) {
  std::vector<TensorSpec> specs;
  const Json& list = r.array(art, key, path);
  for (size_t i = 0; i < list.array.size(); ++i) {
    const Json& e = list.array[i];
    std::string p = path + "[" + std::to_string(i) + "]";
    if (e.type != Json::Type::Object) r.fail(p, "must be an object");
    TensorSpec s{r.string(e, "name", p + ".name"), r.string(e, "dtype", p + ".dtype"), {}, i};
    const Json& shape = r.array(e, "shape", p + ".shape");
    for (size_t d = 0; d < shape.array.size(); ++d) {
      const Json& dim = shape.array[d];
      if (dim.type != Json::Type::Number || dim.number != std::floor(dim.number) || dim.number < 1) r.fail(p + ".shape", "must hold positive integers");
      s.shape.push_back(int64_t(dim.number));
    }
    for (size_t j = 0; j < specs.size(); ++j) {
      if (specs[j].name == s.name) r.fail(p + ".name", "repeats '" + s.name + "' (also " + path + "[" + std::to_string(j) + "])");
    }
    specs.push_back(std::move(s));
  }
  return specs;
}

// The inputs in call order: by each input's `index` when the manifest gives them, else in list order (manifests
// written before `index` existed). edgegen/runtime.py (call_order) applies the same rule.
std::vector<TensorSpec> call_order(const Reader& r, const Json& art, std::vector<TensorSpec> listed, const std::string& path) {
  const Json& list = r.array(art, "inputs", path);
  size_t with_index = 0;
  for (const Json& e : list.array) with_index += e.find("index") ? 1 : 0;
  if (with_index == 0) return listed;
  const size_t n = listed.size();
  if (with_index != n) r.fail(path, "gives an 'index' to some inputs but not to all; every input needs one");
  std::vector<TensorSpec> ordered(n);
  std::vector<bool> taken(n, false);
  for (size_t i = 0; i < n; ++i) {
    std::string p = path + "[" + std::to_string(i) + "].index";
    int64_t k = r.integer(list.array[i], "index", p);
    if (k < 0 || k >= int64_t(n)) r.fail(p, "is " + std::to_string(k) + ", must be in 0.." + std::to_string(n - 1));
    if (taken[size_t(k)]) r.fail(p, "is " + std::to_string(k) + ", which another input already has");
    taken[size_t(k)] = true;
    ordered[size_t(k)] = std::move(listed[i]);
  }
  return ordered;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

// The declared tensors must be exactly `names` (in any order: they are bound by name).
void expect_names(const Reader& r, const std::vector<TensorSpec>& specs, const std::string& path, const std::vector<std::string>& names) {
  bool ok = specs.size() == names.size();
  for (const std::string& n : names) {
    ok = ok && std::any_of(specs.begin(), specs.end(), [&](const TensorSpec& s) { return s.name == n; });
  }
  if (!ok) {
    std::vector<std::string> got;
    for (const TensorSpec& s : specs) got.push_back(s.name);
    r.fail(path, "names [" + join(got) + "], the runner needs exactly [" + join(names) + "]");
  }
}

// Checks the tensor called `name` against the bundle contract.
const TensorSpec& expect(const Reader& r, const std::vector<TensorSpec>& specs, const std::string& path, const char* name,
                         const char* dtype, const std::vector<int64_t>& shape) {
  auto it = std::find_if(specs.begin(), specs.end(), [&](const TensorSpec& s) { return s.name == name; });
  if (it == specs.end()) r.fail(path, std::string("has no tensor named '") + name + "'");
  std::string p = path + "[" + std::to_string(it->listed) + "]";
  if (it->dtype != dtype) r.fail(p + ".dtype", "is '" + it->dtype + "', the runner needs '" + dtype + "'");
  if (it->shape != shape) r.fail(p + ".shape", "is " + shape_str(it->shape) + ", expected " + shape_str(shape));
  return *it;
}

// Size (when >= 0) and sha256 (when non-empty) of an existing file against the manifest.
void verify_file(const std::string& path, int64_t size, const std::string& sha) {
  struct stat st;
  if (size >= 0 && ::stat(path.c_str(), &st) == 0 && int64_t(st.st_size) != size) {
    throw InputError(path + " is " + std::to_string(st.st_size) + " bytes but manifest.json says " + std::to_string(size) +
                     "; the file is truncated or from another export, copy the bundle again");
  }
  if (sha.empty()) return;
  std::string got = sha256_file(path);
  if (got != sha) {
    throw InputError(path + " has sha256 " + got + " but manifest.json says " + sha + "; the file is corrupt or from another export, copy the bundle again");
  }
}

// The artifact's flatbuffer file identifier (bytes 4..8) must be the backend's: "TFL3" for LiteRT, "ET.." for
// ExecuTorch, so a manifest whose backend does not match its files is refused before a runtime reads them.
void verify_format(const std::string& path, const std::string& backend) {
  char head[8] = {};
  std::ifstream f(path, std::ios::binary);
  f.read(head, sizeof(head));
  const bool tflite = f.gcount() == 8 && std::memcmp(head + 4, "TFL3", 4) == 0;
  const bool pte = f.gcount() == 8 && std::memcmp(head + 4, "ET", 2) == 0;
  if (backend == "litert" ? !tflite : !pte) {
    const char* found = tflite ? "a LiteRT .tflite model" : pte ? "an ExecuTorch .pte program" : "neither a .tflite nor a .pte file";
    throw InputError(path + " is " + found + " but manifest.json says backend '" + backend +
                     "'; the manifest does not match its files, re-export the bundle");
  }
}

// The canonical path (symlinks resolved), or "" with `err` set to errno.
std::string real_path(const std::string& path, int& err) {
  char* p = ::realpath(path.c_str(), nullptr);
  err = p ? 0 : errno;
  if (!p) return "";
  std::string out(p);
  std::free(p);
  return out;
}

// `dir`/`file` for the manifest entry `key`, refused unless it lies inside the bundle: `file` is a plain file name
// (no '/', '\\', "." or "..": the same rule as edgegen.bundle.plain_file_name) and its real path (symlinks
// resolved) is below the bundle's real path `real_dir`. Reads no file content. A file that does not exist gets
// `missing` as its error.
std::string inside_bundle(const Reader& r, const std::string& dir, const std::string& real_dir, const std::string& file,
                          const std::string& key, const std::string& missing) {
  if (file.empty() || file == "." || file == ".." || file.find_first_of(std::string("/\\\0", 3)) != std::string::npos) {
    r.fail(key, "is '" + file + "', which is not a plain file name inside the bundle directory (no '/', '\\', '..' or absolute path)");
  }
  std::string path = dir + "/" + file;
  int err = 0;
  std::string real = real_path(path, err);
  if (real.empty()) {
    if (err == ENOENT || err == ENOTDIR) throw InputError(missing);
    throw InputError("cannot resolve " + path + " (" + std::strerror(err) + "); check the bundle directory is readable");
  }
  const std::string prefix = real_dir == "/" ? real_dir : real_dir + "/";
  if (real.compare(0, prefix.size(), prefix) != 0 || real.size() == prefix.size()) {
    r.fail(key, "is '" + file + "', which resolves to " + real + ", outside the bundle directory " + real_dir + " (a symlink leads out)",
           "; copy the file into the bundle instead of linking to it");
  }
  return path;
}

// /proc/cpuinfo shows Arm's fp16 arithmetic (FEAT_FP16: fphp and asimdhp), which XNNPACK computes fp16 in.
bool fp16_arithmetic() {
  std::ifstream in("/proc/cpuinfo");
  bool fphp = false, asimdhp = false;
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(std::remove_if(key.begin(), key.end(), [](unsigned char c) { return std::isspace(c); }), key.end());
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (key != "flags" && key != "features") continue;
    std::istringstream words(line.substr(colon + 1));
    for (std::string w; words >> w;) {
      fphp = fphp || w == "fphp";
      asimdhp = asimdhp || w == "asimdhp";
    }
  }
  return fphp && asimdhp;
}

// The XNNPACK flag names a target profile may list, with LiteRT's bit values (edgegen/xnnpack.py FLAG_BITS).
uint32_t flag_bit(const Reader& r, const std::string& name, const std::string& path) {
  static const std::pair<const char*, uint32_t> kBits[] = {
      {"QS8", 0x1}, {"QU8", 0x2}, {"FORCE_FP16", 0x4}, {"DYNAMIC_FULLY_CONNECTED", 0x8}, {"VARIABLE_OPERATORS", 0x10},
      {"TRANSIENT_INDIRECTION_BUFFER", 0x20}, {"ENABLE_LATEST_OPERATORS", 0x40}, {"ENABLE_SUBGRAPH_RESHAPING", 0x80},
      {"SLOW_CONSISTENT_ARITHMETIC", 0x200}, {"DISABLE_SUBGRAPH_RESHAPING", 0x400}};
  for (const auto& [n, bit] : kBits) {
    if (name == n) return bit;
  }
  r.fail(path, "names an unknown XNNPACK flag '" + name + "'");
}

// Sets each artifact's flags and precision from the manifest's target (fp16_compute, xnnpack_flags) and its
// schemes, as edgegen.xnnpack.litert_settings does; ExecuTorch artifacts carry their precision from export.
void apply_profile(const Reader& r, const Json& m, const Json& arts, Bundle& b) {
  const Json* target = m.find("target");
  if (!target || target->type != Json::Type::Object) return;
  const Json* fp16_compute = target->find("fp16_compute");
  const bool fp16 = fp16_compute && fp16_compute->type == Json::Type::Bool && fp16_compute->boolean;
  uint32_t flags = 0;
  bool listed = false;
  if (const Json* names = target->find("xnnpack_flags"); names && names->type == Json::Type::Array) {
    for (size_t i = 0; i < names->array.size(); ++i) {
      const std::string p = "target.xnnpack_flags[" + std::to_string(i) + "]";
      if (names->array[i].type != Json::Type::String) r.fail(p, "must be a string");
      flags |= flag_bit(r, names->array[i].string, p);
      listed = true;
    }
  }
  const bool here = fp16 && fp16_arithmetic();
  std::pair<const char*, Artifact*> all[] = {{"text_encoder", &b.text_encoder}, {"dit", &b.dit},
                                             {"decoder", &b.decoder}, {"encoder", &b.encoder}};
  for (auto& [name, art] : all) {
    const Json* a = arts.find(name);
    if (!a) continue;
    const Json* schemes = a->find("schemes");
    const bool asks_fp16 = fp16 && schemes && schemes->type == Json::Type::Object && schemes->find("fp16");
    art->has_flags = listed || (asks_fp16 && here);
    art->xnnpack_flags = flags | ((asks_fp16 && here) ? 0x4u : 0u);
    art->precision = asks_fp16 && (here || b.backend == "executorch") ? "fp16" : "fp32";
  }
}

Artifact artifact(const Reader& r, const Json& artifacts, const std::string& dir, const std::string& real_dir, const std::string& name,
                  int64_t& size, std::string& sha) {
  std::string p = "artifacts." + name;
  const Json& a = r.object(artifacts, name, p);
  std::string file = r.string(a, "file", p + ".file");
  Artifact art;
  art.inputs = call_order(r, a, tensor_specs(r, a, "inputs", p + ".inputs"), p + ".inputs");
  art.outputs = tensor_specs(r, a, "outputs", p + ".outputs");
  sha = r.string(a, "sha256", p + ".sha256");
  art.sha256 = sha;
  size = r.integer(a, "size", p + ".size");
  art.path = inside_bundle(r, dir, real_dir, file, p + ".file",
                           "bundle artifact " + dir + "/" + file + " is missing; copy the whole bundle directory (manifest.json, spiece.model and every artifact file it lists)");
  return art;
}

}  // namespace

Bundle load_bundle(const std::string& dir_in) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::string manifest_path = dir + "/manifest.json";
  // Like edgegen.bundle.read_manifest: manifest.json itself must be a file of the bundle, never a symlink (even one
  // that resolves inside; the bundle folder itself may be reached through a symlink).
  struct stat lst;
  if (::lstat(manifest_path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    throw InputError(manifest_path + " is a symlink; a bundle's manifest.json must be a regular file in its folder: copy the bundle instead of linking");
  }
  std::ifstream in(manifest_path, std::ios::binary);
  if (!in) throw InputError(manifest_path + " not found; --bundle must be a directory written by `edgegen export`");
  std::stringstream ss;
  ss << in.rdbuf();
  Reader r{manifest_path};
  Json m = parse_json(ss.str(), manifest_path);
  if (m.type != Json::Type::Object) r.fail("(root)", "must be an object");
  int err = 0;
  const std::string real_dir = real_path(dir, err);
  if (real_dir.empty()) throw InputError("cannot resolve the bundle directory " + dir + " (" + std::strerror(err) + "); check --bundle");

  int64_t schema = r.integer(m, "schema_version", "schema_version");
  if (schema < 1 || schema > 3) r.fail("schema_version", "is " + std::to_string(schema) + " but this runner reads versions 1, 2 and 3", "; rebuild the runner (`edgegen build-runner`) from the edgegen that exported the bundle");
  std::string backend = r.string(m, "backend", "backend");
  if (backend != "executorch" && backend != "litert") {
    r.fail("backend", "is '" + backend + "'", "; this runner runs 'executorch' and 'litert' bundles, export one with either backend");
  }

  Bundle b;
  b.dir = dir;
  b.backend = backend;
  if (const Json* target = m.find("target"); target && target->type == Json::Type::Object && target->find("threads")) {
    const Json* t = target->find("threads");
    if (t->type != Json::Type::Null) {  // null: the target leaves the thread count to the runtime
      b.target_threads = int(r.integer(*target, "threads", "target.threads"));
      if (b.target_threads < 1 || b.target_threads > 256) r.fail("target.threads", "must be in 1..256 or null");
    }
  }
  const Json& recipe = r.object(m, "recipe", "recipe");
  b.recipe = r.string(recipe, "name", "recipe.name");
  b.sample_rate = int(r.integer(m, "sample_rate", "sample_rate"));
  b.channels = int(r.integer(m, "channels", "channels"));
  b.latent_length = r.integer(m, "latent_length", "latent_length");
  b.max_seconds = r.number(m, "max_seconds", "max_seconds");
  if (b.sample_rate <= 0 || b.channels <= 0 || b.latent_length <= 0 || !(b.max_seconds > 0) || !std::isfinite(b.max_seconds)) r.fail("sample_rate/channels/latent_length/max_seconds", "must be positive");

  const Json& sampler = r.object(m, "sampler", "sampler");
  std::string type = r.string(sampler, "type", "sampler.type");
  if (type != "pingpong") r.fail("sampler.type", "is '" + type + "'; the runner implements only 'pingpong'");
  b.steps = int(r.integer(sampler, "steps", "sampler.steps"));
  if (b.steps < 1 || b.steps > 1000) r.fail("sampler.steps", "must be in 1..1000");
  b.logsnr_max = r.number(sampler, "logsnr_max", "sampler.logsnr_max");
  b.logsnr_min = r.number(sampler, "logsnr_min", "sampler.logsnr_min");

  // Every file the manifest names is resolved (and refused when it lies outside the bundle) before any is read.
  const Json& tok = r.object(m, "tokenizer", "tokenizer");
  std::string tok_file = r.string(tok, "file", "tokenizer.file");
  b.max_length = int(r.integer(tok, "max_length", "tokenizer.max_length"));
  b.eos_id = int(r.integer(tok, "eos_id", "tokenizer.eos_id"));
  b.pad_id = int(r.integer(tok, "pad_id", "tokenizer.pad_id"));
  if (b.max_length < 1) r.fail("tokenizer.max_length", "must be >= 1");
  const int64_t tok_size = tok.find("size") ? r.integer(tok, "size", "tokenizer.size") : -1;
  const std::string tok_sha = tok.find("sha256") ? r.string(tok, "sha256", "tokenizer.sha256") : "";
  b.tokenizer_path = inside_bundle(r, dir, real_dir, tok_file, "tokenizer.file",
                                   "tokenizer " + dir + "/" + tok_file + " is missing; copy the whole bundle directory");

  const Json& arts = r.object(m, "artifacts", "artifacts");
  int64_t size[4] = {-1, -1, -1, -1};
  std::string sha[4];
  b.text_encoder = artifact(r, arts, dir, real_dir, "text_encoder", size[0], sha[0]);
  b.dit = artifact(r, arts, dir, real_dir, "dit", size[1], sha[1]);
  b.decoder = artifact(r, arts, dir, real_dir, "decoder", size[2], sha[2]);
  if (arts.find("encoder")) b.encoder = artifact(r, arts, dir, real_dir, "encoder", size[3], sha[3]);

  // The contract in bundle.h, by name: L and T come from the manifest, C, D and N from the declared shapes.
  const int64_t L = b.max_length, T = b.latent_length;
  const auto& te = b.text_encoder;
  const std::string te_in = "artifacts.text_encoder.inputs", te_out = "artifacts.text_encoder.outputs";
  expect_names(r, te.inputs, te_in, {"token_ids", "attention_mask", "seconds_total"});
  expect_names(r, te.outputs, te_out, {"cross_attn_cond", "global_cond"});
  expect(r, te.inputs, te_in, "token_ids", "int32", {1, L});
  expect(r, te.inputs, te_in, "attention_mask", "int32", {1, L});
  expect(r, te.inputs, te_in, "seconds_total", "float32", {1});
  const TensorSpec& cross = te.outputs[te.output("cross_attn_cond")];
  if (cross.shape.size() != 3) r.fail(te_out + "[" + std::to_string(cross.listed) + "].shape", "must be [1, L+1, C]");
  const int64_t C = cross.shape[2];
  expect(r, te.outputs, te_out, "cross_attn_cond", "float32", {1, L + 1, C});
  expect(r, te.outputs, te_out, "global_cond", "float32", {1, C});

  const std::string dit_in = "artifacts.dit.inputs", dit_out = "artifacts.dit.outputs";
  expect_names(r, b.dit.inputs, dit_in, {"x", "t", "cross_attn_cond", "global_cond"});
  expect_names(r, b.dit.outputs, dit_out, {"v"});
  const TensorSpec& x = b.dit.input("x");
  if (x.shape.size() != 3) r.fail(dit_in + "[" + std::to_string(x.listed) + "].shape", "must be [1, D, T]");
  b.latent_channels = x.shape[1];
  const std::vector<int64_t> latent = {1, b.latent_channels, T};
  expect(r, b.dit.inputs, dit_in, "x", "float32", latent);
  expect(r, b.dit.inputs, dit_in, "t", "float32", {1});
  expect(r, b.dit.inputs, dit_in, "cross_attn_cond", "float32", {1, L + 1, C});
  expect(r, b.dit.inputs, dit_in, "global_cond", "float32", {1, C});
  expect(r, b.dit.outputs, dit_out, "v", "float32", latent);

  const std::string dec_in = "artifacts.decoder.inputs", dec_out = "artifacts.decoder.outputs";
  const Json* stream = m.find("decoder_stream");
  if ((stream != nullptr) != (schema >= 2)) r.fail("decoder_stream", "must be present exactly when schema_version is 2 or 3");
  if (stream && schema == 3) {
    // Stateful (edgegen.streaming.decode_stateful): windows back to back, the state carried between calls.
    const Json& s = r.object(m, "decoder_stream", "decoder_stream");
    if (!s.find("mode") && s.find("overlap")) {
      r.fail("decoder_stream", "has the overlapped-window fields of schema 2 (window, overlap, hop); schema_version 3 needs "
             "mode \"stateful\", window, hop, delay and state_size");
    }
    const std::string mode = r.string(s, "mode", "decoder_stream.mode");
    if (mode != "stateful") r.fail("decoder_stream.mode", "is '" + mode + "', this runner reads only 'stateful' (schema 3)");
    b.stream.stateful = true;
    b.stream.window = r.integer(s, "window", "decoder_stream.window");
    b.stream.hop = r.integer(s, "hop", "decoder_stream.hop");
    b.stream.delay = r.integer(s, "delay", "decoder_stream.delay");
    b.stream.state_size = r.integer(s, "state_size", "decoder_stream.state_size");
    constexpr int64_t kMax = int64_t(1) << 31;  // keeps every product below (T, window, hop, delay) far from overflow
    if (b.stream.window < 1 || b.stream.window > kMax) r.fail("decoder_stream.window", "must be in 1..2^31");
    if (b.stream.hop < 1 || b.stream.hop > kMax) r.fail("decoder_stream.hop", "must be in 1..2^31");
    if (b.stream.delay < 0 || b.stream.delay > kMax) r.fail("decoder_stream.delay", "must be in 0..2^31");
    if (b.stream.state_size < 1 || b.stream.state_size > kMax) r.fail("decoder_stream.state_size", "must be in 1..2^31");
    if (T > kMax) r.fail("latent_length", "must be at most 2^31 for a streamed decoder");
    expect_names(r, b.decoder.inputs, dec_in, {"latents", "position", "state"});
    expect_names(r, b.decoder.outputs, dec_out, {"audio", "next_state"});
    expect(r, b.decoder.inputs, dec_in, "latents", "float32", {1, b.latent_channels, b.stream.window});
    expect(r, b.decoder.inputs, dec_in, "position", "float32", {2});
    expect(r, b.decoder.inputs, dec_in, "state", "float32", {1, b.stream.state_size});
    expect(r, b.decoder.outputs, dec_out, "audio", "float32", {1, b.channels, b.stream.window * b.stream.hop});
    expect(r, b.decoder.outputs, dec_out, "next_state", "float32", {1, b.stream.state_size});
    b.audio_length = T * b.stream.hop;
  } else if (stream) {
    const Json& s = r.object(m, "decoder_stream", "decoder_stream");
    if (s.find("mode")) r.fail("decoder_stream.mode", "is given, but a stateful decoder_stream needs schema_version 3");
    b.stream.window = r.integer(s, "window", "decoder_stream.window");
    b.stream.overlap = r.integer(s, "overlap", "decoder_stream.overlap");
    b.stream.hop = r.integer(s, "hop", "decoder_stream.hop");
    if (b.stream.overlap < 0 || b.stream.hop < 1 || b.stream.window <= 2 * b.stream.overlap || b.stream.window > T) {
      r.fail("decoder_stream", "must have 2 * overlap < window <= latent_length and hop >= 1");
    }
    expect_names(r, b.decoder.inputs, dec_in, {"latents"});
    expect_names(r, b.decoder.outputs, dec_out, {"audio"});
    expect(r, b.decoder.inputs, dec_in, "latents", "float32", {1, b.latent_channels, b.stream.window});
    expect(r, b.decoder.outputs, dec_out, "audio", "float32", {1, b.channels, b.stream.window * b.stream.hop});
    b.audio_length = T * b.stream.hop;
  } else {
    expect_names(r, b.decoder.inputs, dec_in, {"latents"});
    expect_names(r, b.decoder.outputs, dec_out, {"audio"});
    expect(r, b.decoder.inputs, dec_in, "latents", "float32", latent);
    if (b.decoder.outputs[0].shape.size() != 3) r.fail(dec_out + "[0].shape", "must be [1, channels, N]");
    b.audio_length = b.decoder.outputs[0].shape[2];
    expect(r, b.decoder.outputs, dec_out, "audio", "float32", {1, b.channels, b.audio_length});
  }
  if (b.has_encoder()) {
    // The encoder takes the whole sequence: T * hop samples, the decoder's full output (streamed or not).
    const std::string enc_in = "artifacts.encoder.inputs", enc_out = "artifacts.encoder.outputs";
    expect_names(r, b.encoder.inputs, enc_in, {"audio"});
    expect_names(r, b.encoder.outputs, enc_out, {"latent_mean", "latent_std"});
    expect(r, b.encoder.inputs, enc_in, "audio", "float32", {1, b.channels, b.init_audio_length()});
    expect(r, b.encoder.outputs, enc_out, "latent_mean", "float32", latent);
    expect(r, b.encoder.outputs, enc_out, "latent_std", "float32", latent);
  }
  if (num_samples(b.max_seconds, b.sample_rate) > b.audio_length) {
    r.fail("max_seconds", "exceeds the decoder's " + std::to_string(b.audio_length) + " samples at " + std::to_string(b.sample_rate) + " Hz");
  }
  apply_profile(r, m, arts, b);

  // Only now read the files: tokenizer and artifacts, each against its manifest size and sha256.
  verify_file(b.tokenizer_path, tok_size, tok_sha);
  const Artifact* all[4] = {&b.text_encoder, &b.dit, &b.decoder, &b.encoder};
  for (int i = 0; i < 4; ++i) {
    if (all[i]->path.empty()) continue;  // no encoder
    verify_file(all[i]->path, size[i], sha[i]);
    verify_format(all[i]->path, b.backend);
  }
  return b;
}

const TensorSpec& Artifact::input(const std::string& name) const {
  for (const TensorSpec& s : inputs) {
    if (s.name == name) return s;
  }
  throw InputError(path + ": manifest.json declares no input named '" + name + "'; re-export the bundle");
}

size_t Artifact::output(const std::string& name) const {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].name == name) return i;
  }
  throw InputError(path + ": manifest.json declares no output named '" + name + "'; re-export the bundle");
}

int64_t num_samples(double seconds, int sample_rate) {
  // Nearest sample, ties to even: the same as Python's round() in edgegen.common.num_samples.
  return int64_t(std::nearbyint(seconds * double(sample_rate)));
}

}  // namespace edgegen
