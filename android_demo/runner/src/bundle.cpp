// Manifest parsing and artifact verification; see bundle.h.
#include "bundle.h"

#include <cmath>
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
    TensorSpec s{r.string(e, "name", p + ".name"), r.string(e, "dtype", p + ".dtype"), {}};
    const Json& shape = r.array(e, "shape", p + ".shape");
    for (size_t d = 0; d < shape.array.size(); ++d) {
      const Json& dim = shape.array[d];
      if (dim.type != Json::Type::Number || dim.number != std::floor(dim.number) || dim.number < 1) r.fail(p + ".shape", "must hold positive integers");
      s.shape.push_back(int64_t(dim.number));
    }
    specs.push_back(std::move(s));
  }
  return specs;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

// Checks one declared tensor against the bundle contract.
void expect(const Reader& r, const std::vector<TensorSpec>& specs, size_t i, const std::string& path, const char* dtype,
            const std::vector<int64_t>& shape) {
  std::string p = path + "[" + std::to_string(i) + "]";
  if (specs[i].dtype != dtype) r.fail(p + ".dtype", "is '" + specs[i].dtype + "', the runner needs '" + dtype + "'");
  if (specs[i].shape != shape) r.fail(p + ".shape", "is " + shape_str(specs[i].shape) + ", expected " + shape_str(shape));
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

Artifact artifact(const Reader& r, const Json& artifacts, const std::string& dir, const std::string& name,
                  size_t n_in, size_t n_out) {
  std::string p = "artifacts." + name;
  const Json& a = r.object(artifacts, name, p);
  std::string file = r.string(a, "file", p + ".file");
  if (file.empty() || file.find('/') != std::string::npos) r.fail(p + ".file", "must be a plain file name inside the bundle");
  Artifact art{dir + "/" + file, tensor_specs(r, a, "inputs", p + ".inputs"), tensor_specs(r, a, "outputs", p + ".outputs")};
  if (art.inputs.size() != n_in) r.fail(p + ".inputs", "must list " + std::to_string(n_in) + " tensors");
  if (art.outputs.size() != n_out) r.fail(p + ".outputs", "must list " + std::to_string(n_out) + " tensors");
  std::string sha = r.string(a, "sha256", p + ".sha256");
  int64_t size = r.integer(a, "size", p + ".size");
  struct stat st;
  if (::stat(art.path.c_str(), &st) != 0) {
    throw InputError("bundle artifact " + art.path + " is missing; copy the whole bundle directory (manifest.json, spiece.model, 3 .pte files)");
  }
  verify_file(art.path, size, sha);
  return art;
}

}  // namespace

Bundle load_bundle(const std::string& dir_in) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::string manifest_path = dir + "/manifest.json";
  std::ifstream in(manifest_path, std::ios::binary);
  if (!in) throw InputError(manifest_path + " not found; --bundle must be a directory written by `edgegen export`");
  std::stringstream ss;
  ss << in.rdbuf();
  Reader r{manifest_path};
  Json m = parse_json(ss.str(), manifest_path);
  if (m.type != Json::Type::Object) r.fail("(root)", "must be an object");

  int64_t schema = r.integer(m, "schema_version", "schema_version");
  if (schema != 1 && schema != 2) r.fail("schema_version", "is " + std::to_string(schema) + " but this runner reads versions 1 and 2", "; rebuild the runner (`edgegen build-runner`) from the edgegen that exported the bundle");
  std::string backend = r.string(m, "backend", "backend");
  if (backend != "executorch") r.fail("backend", "is '" + backend + "'", "; this runner only runs ExecuTorch bundles, export one with the executorch backend");

  Bundle b;
  b.dir = dir;
  const Json& recipe = r.object(m, "recipe", "recipe");
  b.recipe = r.string(recipe, "name", "recipe.name");
  b.sample_rate = int(r.integer(m, "sample_rate", "sample_rate"));
  b.channels = int(r.integer(m, "channels", "channels"));
  b.latent_length = r.integer(m, "latent_length", "latent_length");
  b.max_seconds = r.number(m, "max_seconds", "max_seconds");
  if (b.sample_rate <= 0 || b.channels <= 0 || b.latent_length <= 0 || !(b.max_seconds > 0)) r.fail("sample_rate/channels/latent_length/max_seconds", "must be positive");

  const Json& sampler = r.object(m, "sampler", "sampler");
  std::string type = r.string(sampler, "type", "sampler.type");
  if (type != "pingpong") r.fail("sampler.type", "is '" + type + "'; the runner implements only 'pingpong'");
  b.steps = int(r.integer(sampler, "steps", "sampler.steps"));
  if (b.steps < 1 || b.steps > 1000) r.fail("sampler.steps", "must be in 1..1000");
  b.logsnr_max = r.number(sampler, "logsnr_max", "sampler.logsnr_max");
  b.logsnr_min = r.number(sampler, "logsnr_min", "sampler.logsnr_min");

  const Json& tok = r.object(m, "tokenizer", "tokenizer");
  std::string tok_file = r.string(tok, "file", "tokenizer.file");
  b.tokenizer_path = dir + "/" + tok_file;
  b.max_length = int(r.integer(tok, "max_length", "tokenizer.max_length"));
  b.eos_id = int(r.integer(tok, "eos_id", "tokenizer.eos_id"));
  b.pad_id = int(r.integer(tok, "pad_id", "tokenizer.pad_id"));
  if (b.max_length < 1) r.fail("tokenizer.max_length", "must be >= 1");
  struct stat st;
  if (::stat(b.tokenizer_path.c_str(), &st) != 0) throw InputError("tokenizer " + b.tokenizer_path + " is missing; copy the whole bundle directory");
  verify_file(b.tokenizer_path, tok.find("size") ? r.integer(tok, "size", "tokenizer.size") : -1,
              tok.find("sha256") ? r.string(tok, "sha256", "tokenizer.sha256") : "");

  const Json& arts = r.object(m, "artifacts", "artifacts");
  b.text_encoder = artifact(r, arts, dir, "text_encoder", 3, 2);
  b.dit = artifact(r, arts, dir, "dit", 4, 1);
  b.decoder = artifact(r, arts, dir, "decoder", 1, 1);

  // The contract in bundle.h: L and T come from the manifest, C, D and N from the declared shapes.
  const int64_t L = b.max_length, T = b.latent_length;
  const auto& te = b.text_encoder;
  expect(r, te.inputs, 0, "artifacts.text_encoder.inputs", "int32", {1, L});
  expect(r, te.inputs, 1, "artifacts.text_encoder.inputs", "int32", {1, L});
  expect(r, te.inputs, 2, "artifacts.text_encoder.inputs", "float32", {1});
  if (te.outputs[0].shape.size() != 3) r.fail("artifacts.text_encoder.outputs[0].shape", "must be [1, L+1, C]");
  const int64_t C = te.outputs[0].shape[2];
  expect(r, te.outputs, 0, "artifacts.text_encoder.outputs", "float32", {1, L + 1, C});
  expect(r, te.outputs, 1, "artifacts.text_encoder.outputs", "float32", {1, C});
  if (b.dit.inputs[0].shape.size() != 3) r.fail("artifacts.dit.inputs[0].shape", "must be [1, D, T]");
  b.latent_channels = b.dit.inputs[0].shape[1];
  const std::vector<int64_t> latent = {1, b.latent_channels, T};
  expect(r, b.dit.inputs, 0, "artifacts.dit.inputs", "float32", latent);
  expect(r, b.dit.inputs, 1, "artifacts.dit.inputs", "float32", {1});
  expect(r, b.dit.inputs, 2, "artifacts.dit.inputs", "float32", {1, L + 1, C});
  expect(r, b.dit.inputs, 3, "artifacts.dit.inputs", "float32", {1, C});
  expect(r, b.dit.outputs, 0, "artifacts.dit.outputs", "float32", latent);
  const Json* stream = m.find("decoder_stream");
  if ((stream != nullptr) != (schema == 2)) r.fail("decoder_stream", "must be present exactly when schema_version is 2");
  if (stream) {
    const Json& s = r.object(m, "decoder_stream", "decoder_stream");
    b.stream.window = r.integer(s, "window", "decoder_stream.window");
    b.stream.overlap = r.integer(s, "overlap", "decoder_stream.overlap");
    b.stream.hop = r.integer(s, "hop", "decoder_stream.hop");
    if (b.stream.overlap < 0 || b.stream.hop < 1 || b.stream.window <= 2 * b.stream.overlap || b.stream.window > T) {
      r.fail("decoder_stream", "must have 2 * overlap < window <= latent_length and hop >= 1");
    }
    expect(r, b.decoder.inputs, 0, "artifacts.decoder.inputs", "float32", {1, b.latent_channels, b.stream.window});
    expect(r, b.decoder.outputs, 0, "artifacts.decoder.outputs", "float32", {1, b.channels, b.stream.window * b.stream.hop});
    b.audio_length = T * b.stream.hop;
  } else {
    expect(r, b.decoder.inputs, 0, "artifacts.decoder.inputs", "float32", latent);
    if (b.decoder.outputs[0].shape.size() != 3) r.fail("artifacts.decoder.outputs[0].shape", "must be [1, channels, N]");
    b.audio_length = b.decoder.outputs[0].shape[2];
    expect(r, b.decoder.outputs, 0, "artifacts.decoder.outputs", "float32", {1, b.channels, b.audio_length});
  }
  if (int64_t(b.max_seconds * b.sample_rate) > b.audio_length) {
    r.fail("max_seconds", "exceeds the decoder's " + std::to_string(b.audio_length) + " samples at " + std::to_string(b.sample_rate) + " Hz");
  }
  return b;
}

}  // namespace edgegen
