// The LiteRT engine: libLiteRt.so's C API (litert_api.h), the model compiled for the CPU accelerator (XNNPACK)
// once, with persistent 64-byte-aligned host buffers for its signature's inputs and outputs; see engine.h.
//
// Tensors are matched by name: each manifest input to the signature input of the same name, each manifest output
// to the signature output of the same name, else to `output_<i>` (what the converter names unnamed outputs;
// edgegen/runtime.py litert_output_keys applies the same rule).
//
// Weight cache: the CPU options payload (TOML, identifier "xnnpack") also takes weight_cache_file_path = "PATH" and
// weight_cache_file_descriptor = FD (litert/runtime/litert_cpu_options.cc). The XNNPACK delegate, created when the
// model is compiled, maps a valid file, else truncates it and packs into it, one build step per delegated
// partition, each ending with the file's index and header written; so the file is complete once
// CreateCompiledModel returns. A cache to use is handed over as a read-only descriptor (the delegate owns and closes
// it): if the delegate rejects the file it cannot truncate it and goes on without a cache.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "engine.h"
#include "errors.h"
#include "litert_api.h"

namespace edgegen {
namespace {

namespace lr = edgegen::litert;

lr::Environment environment() {
  static lr::Environment env = [] {
    lr::Environment e = nullptr;
    lr::check(lr::api().CreateEnvironment(0, nullptr, &e), "creating the LiteRT environment");
    return e;
  }();
  return env;  // one per process, never destroyed (compiled models may outlive any one engine)
}

int element_type(const std::string& dtype) { return dtype == "int32" ? lr::kElementInt32 : lr::kElementFloat32; }

std::string element_name(int t) {
  if (t == lr::kElementFloat32) return "float32";
  if (t == lr::kElementInt32) return "int32";
  return "LiteRT element type " + std::to_string(t);
}

// One signature tensor's host buffer.
struct Slot {
  lr::TensorBuffer buffer = nullptr;
  void* data = nullptr;
  size_t bytes = 0;
};

class LiteRtEngine final : public Engine {
 public:
  LiteRtEngine(const Artifact& a, const char* name, int threads, const CacheRequest& cache)
      : artifact_(a), name_(name), api_(lr::api()) {
    lr::Quiet quiet;
    lr::Environment env = environment();
    if (api_.CreateModelFromFile(env, a.path.c_str(), &model_) != 0 || model_ == nullptr) {
      throw RuntimeFailure("LiteRT could not load " + name_ + " from " + a.path +
                           " (not a .tflite flatbuffer, or one this LiteRT cannot read); re-export the bundle");
    }
    lr::ParamIndex n_sig = 0;
    lr::check(api_.GetNumModelSignatures(model_, &n_sig), name_ + ": reading the signatures of " + a.path);
    if (n_sig < 1) throw InputError(name_ + ": " + a.path + " has no signature; re-export the bundle with `edgegen export`");
    lr::Signature sig = nullptr;
    lr::check(api_.GetModelSignature(model_, 0, &sig), name_ + ": reading the signature of " + a.path);
    bind(sig);
    compile(env, threads, cache);
  }

  ~LiteRtEngine() override {
    lr::Quiet quiet;  // the XNNPACK delegate may log on its way out (e.g. marking a cache file that missed as stale)
    for (auto* slots : {&inputs_, &outputs_}) {
      for (Slot& s : *slots) {
        if (s.buffer) api_.DestroyTensorBuffer(s.buffer);
        std::free(s.data);
      }
    }
    if (compiled_) api_.DestroyCompiledModel(compiled_);
    if (model_) api_.DestroyModel(model_);
  }

  std::vector<std::vector<float>> run(const std::vector<const void*>& inputs) override {
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Slot& s = inputs_[input_slot_[i]];
      std::memcpy(s.data, inputs[i], s.bytes);
    }
    std::vector<lr::TensorBuffer> in(inputs_.size()), out(outputs_.size());
    std::transform(inputs_.begin(), inputs_.end(), in.begin(), [](const Slot& s) { return s.buffer; });
    std::transform(outputs_.begin(), outputs_.end(), out.begin(), [](const Slot& s) { return s.buffer; });
    {
      lr::Quiet quiet;
      lr::check(api_.RunCompiledModel(compiled_, 0, in.size(), in.data(), out.size(), out.data()), name_ + " run");
    }
    std::vector<std::vector<float>> result;
    for (size_t slot : output_slot_) {
      const Slot& s = outputs_[slot];
      void* host = nullptr;
      lr::check(api_.LockTensorBuffer(s.buffer, &host, lr::kLockRead), name_ + ": reading an output");
      const float* p = static_cast<const float*>(host);
      result.emplace_back(p, p + s.bytes / sizeof(float));
      lr::check(api_.UnlockTensorBuffer(s.buffer), name_ + ": releasing an output");
    }
    return result;
  }

 private:
  // Maps manifest tensors to signature tensors and checks their types; allocates the host buffers.
  void bind(lr::Signature sig) {
    const Artifact& a = artifact_;
    lr::ParamIndex n_in = 0, n_out = 0;
    lr::check(api_.GetNumSignatureInputs(sig, &n_in), name_ + ": reading the inputs of " + a.path);
    lr::check(api_.GetNumSignatureOutputs(sig, &n_out), name_ + ": reading the outputs of " + a.path);
    if (n_in != a.inputs.size() || n_out != a.outputs.size()) {
      throw InputError(name_ + ": " + a.path + " takes " + std::to_string(n_in) + " inputs and returns " + std::to_string(n_out) +
                       " outputs, manifest.json declares " + std::to_string(a.inputs.size()) + " and " +
                       std::to_string(a.outputs.size()) + "; re-export the bundle");
    }
    std::vector<std::string> in_names(n_in), out_names(n_out);
    for (lr::ParamIndex k = 0; k < n_in; ++k) in_names[k] = name_of(api_.GetSignatureInputName, sig, k);
    for (lr::ParamIndex k = 0; k < n_out; ++k) out_names[k] = name_of(api_.GetSignatureOutputName, sig, k);
    inputs_.resize(n_in);
    outputs_.resize(n_out);
    for (size_t i = 0; i < a.inputs.size(); ++i) {
      const TensorSpec& spec = a.inputs[i];
      auto it = std::find(in_names.begin(), in_names.end(), spec.name);
      if (it == in_names.end()) {
        throw InputError(name_ + " input '" + spec.name + "' is not an input of " + a.path + " (it has " + joined(in_names) +
                         "); the manifest does not match the .tflite, re-export the bundle");
      }
      const size_t k = size_t(it - in_names.begin());
      input_slot_.push_back(k);
      lr::Tensor t = nullptr;
      lr::check(api_.GetSignatureInputTensorByIndex(sig, k, &t), name_ + ": reading input '" + spec.name + "'");
      inputs_[k] = allocate(t, spec, true, i);
    }
    for (size_t j = 0; j < a.outputs.size(); ++j) {
      const TensorSpec& spec = a.outputs[j];
      auto it = std::find(out_names.begin(), out_names.end(), spec.name);
      if (it == out_names.end()) it = std::find(out_names.begin(), out_names.end(), "output_" + std::to_string(j));
      if (it == out_names.end()) {
        throw InputError(name_ + " output '" + spec.name + "' cannot be matched to the outputs of " + a.path + " (" +
                         joined(out_names) + "); re-export the bundle");
      }
      const size_t k = size_t(it - out_names.begin());
      output_slot_.push_back(k);
      lr::Tensor t = nullptr;
      lr::check(api_.GetSignatureOutputTensorByIndex(sig, k, &t), name_ + ": reading output '" + spec.name + "'");
      outputs_[k] = allocate(t, spec, false, j);
    }
  }

  Slot allocate(lr::Tensor tensor, const TensorSpec& spec, bool input, size_t position) {
    lr::RankedTensorType type{};
    const std::string what = name_ + (input ? " input " : " output ") + std::to_string(position) + " '" + spec.name + "'";
    lr::check(api_.GetRankedTensorType(tensor, &type), what + ": reading its type");
    std::vector<int64_t> got(type.layout.dimensions, type.layout.dimensions + std::min<int>(int(type.layout.rank), lr::kMaxRank));
    if (type.element_type != element_type(spec.dtype) || got != spec.shape) {
      throw InputError(what + " is " + dims(got) + " " + element_name(type.element_type) + " in " + artifact_.path +
                       " but manifest.json declares " + dims(spec.shape) + " " + spec.dtype + "; re-export the bundle");
    }
    size_t count = 1;
    for (int64_t d : spec.shape) count *= size_t(d);
    Slot s;
    s.bytes = count * 4;  // float32 and int32
    const size_t padded = (s.bytes + lr::kHostAlignment - 1) / lr::kHostAlignment * lr::kHostAlignment;
    s.data = std::aligned_alloc(lr::kHostAlignment, padded);
    if (s.data == nullptr) throw RuntimeFailure(what + ": out of memory for its " + std::to_string(padded) + "-byte buffer");
    std::memset(s.data, 0, padded);
    if (api_.CreateTensorBufferFromHostMemory(&type, s.data, padded, nullptr, &s.buffer) != 0) {
      std::free(s.data);
      throw RuntimeFailure(what + ": LiteRT refused a host buffer for it");
    }
    return s;
  }

  void compile(lr::Environment env, int threads, const CacheRequest& cache) {
    lr::Options options = nullptr;
    lr::check(api_.CreateOptions(&options), name_ + ": creating compilation options");
    struct Guard {
      const lr::Api& api;
      lr::Options o;
      ~Guard() { api.DestroyOptions(o); }
    } guard{api_, options};
    lr::check(api_.SetOptionsHardwareAccelerators(options, lr::kHwAcceleratorCpu), name_ + ": choosing the CPU accelerator");
    std::string toml;
    if (threads > 0) toml += "num_threads = " + std::to_string(threads) + "\n";
    // the target profile's XNNPACK flags, FORCE_FP16 among them for an fp16 artifact (bundle.h Artifact)
    if (artifact_.has_flags) toml += "flags = " + std::to_string(artifact_.xnnpack_flags) + "\n";
    if (cache.mode == CacheRequest::Build) toml += "weight_cache_file_path = \"" + cache.path + "\"\n";
    if (cache.mode == CacheRequest::Use) {
      const int fd = ::open(cache.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw RuntimeFailure(name_ + ": cannot open the weight cache " + cache.path + ": " + std::strerror(errno));
      toml += "weight_cache_file_descriptor = " + std::to_string(fd) + "\n";  // the delegate closes it
    }
    if (!toml.empty()) {
      char* payload = new char[toml.size() + 1];
      std::memcpy(payload, toml.c_str(), toml.size() + 1);
      lr::OpaqueOptions cpu = nullptr;
      if (api_.CreateOpaqueOptions(lr::kCpuOptionsId, payload, [](void* p) { delete[] static_cast<char*>(p); }, &cpu) != 0) {
        delete[] payload;
        throw RuntimeFailure(name_ + ": LiteRT refused the CPU options (" + toml.substr(0, toml.size() - 1) + ")");
      }
      lr::check(api_.AddOpaqueOptions(options, cpu), name_ + ": adding the CPU options");
    }
    if (api_.CreateCompiledModel(env, model_, options, &compiled_) != 0 || compiled_ == nullptr) {
      throw RuntimeFailure("LiteRT could not compile " + name_ + " from " + artifact_.path +
                           " for the CPU; check the bundle was exported with the LiteRT version the runner loads");
    }
  }

  static std::string name_of(lr::Status (*get)(lr::Signature, lr::ParamIndex, const char**), lr::Signature sig, lr::ParamIndex k) {
    const char* n = nullptr;
    lr::check(get(sig, k, &n), "reading a signature tensor name");
    return n ? n : "";
  }

  static std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "'" : ", '") + n + "'";
    return out.empty() ? "none" : out;
  }

  Artifact artifact_;
  std::string name_;
  const lr::Api& api_;
  lr::Model model_ = nullptr;
  lr::CompiledModel compiled_ = nullptr;
  std::vector<Slot> inputs_, outputs_;     // in signature order
  std::vector<size_t> input_slot_;         // manifest call order -> signature input
  std::vector<size_t> output_slot_;        // manifest output order -> signature output
};

}  // namespace

std::unique_ptr<Engine> load_litert(const Artifact& artifact, const char* name, int threads, const CacheRequest& cache) {
  return std::make_unique<LiteRtEngine>(artifact, name, threads, cache);
}

}  // namespace edgegen
