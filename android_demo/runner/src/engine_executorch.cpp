// The ExecuTorch engine (Module API, mmap-loaded .pte); see engine.h.
//
// Weight cache (ExecuTorch >= 1.5, backends/xnnpack/runtime/XNNPACKBackend.cpp): the XNNPACK backend reads the
// per-program load-time options weight_cache_enabled and packed_cache_path ("XnnpackBackend" in the
// LoadBackendOptionsMap given to load_method). With a path it maps the file's packed weights when its index is
// valid; else it truncates the file and packs into it (MAP_SHARED), and its finalize_for_runtime writes the index
// before init returns, so the file is complete once load_forward() is. It keys entries by the constants' names
// in the program's named data and flocks the file while it uses it.
#include <cstdio>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#if __has_include(<executorch/runtime/backend/backend_options_map.h>)
#include <executorch/runtime/backend/backend_options_map.h>
#include <executorch/runtime/backend/options.h>
#define EDGEGEN_ET_WEIGHT_CACHE 1
#else
#define EDGEGEN_ET_WEIGHT_CACHE 0
#endif

#include "engine.h"
#include "errors.h"

namespace edgegen {
namespace {

using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::runtime::EValue;
using executorch::runtime::Error;

std::string err(Error e) {
  char code[16];
  std::snprintf(code, sizeof(code), "0x%x", unsigned(e));
  return std::string(executorch::runtime::to_string(e)) + " (" + code + ")";
}

ScalarType scalar_type(const std::string& dtype) { return dtype == "int32" ? ScalarType::Int : ScalarType::Float; }

std::string dtype_name(ScalarType t) {
  if (t == ScalarType::Float) return "float32";
  if (t == ScalarType::Int) return "int32";
  return "ScalarType " + std::to_string(int(t));
}

class ExecuTorchEngine final : public Engine {
 public:
  ExecuTorchEngine(const Artifact& a, const char* name, const CacheRequest& cache)
      : artifact_(a), name_(name), module_(a.path, Module::LoadMode::Mmap) {
    Error e = load(cache);
    if (e != Error::Ok) {
      throw RuntimeFailure("ExecuTorch could not load " + name_ + " from " + a.path + ": " + err(e) +
                           "; check the runner and the exporter use the same ExecuTorch version");
    }
    check_meta();
  }

  // Copies every output out, because the module's planned memory is reused by the next call.
  std::vector<std::vector<float>> run(const std::vector<const void*>& inputs) override {
    std::vector<TensorPtr> tensors;
    std::vector<EValue> values;
    for (size_t i = 0; i < artifact_.inputs.size(); ++i) {
      const TensorSpec& spec = artifact_.inputs[i];
      std::vector<executorch::aten::SizesType> sizes(spec.shape.begin(), spec.shape.end());
      tensors.push_back(from_blob(const_cast<void*>(inputs[i]), sizes, scalar_type(spec.dtype)));
      values.emplace_back(tensors.back());
    }
    auto result = module_.forward(values);
    if (!result.ok()) throw RuntimeFailure(name_ + " forward() failed: " + err(result.error()));
    std::vector<std::vector<float>> outs;
    for (size_t i = 0; i < artifact_.outputs.size(); ++i) {
      const EValue& v = result->at(i);
      if (!v.isTensor()) throw RuntimeFailure(name_ + " output " + std::to_string(i) + " is not a tensor");
      const auto& t = v.toTensor();
      const float* p = t.const_data_ptr<float>();
      outs.emplace_back(p, p + t.numel());
    }
    return outs;
  }

 private:
  Error load(const CacheRequest& cache) {
#if EDGEGEN_ET_WEIGHT_CACHE
    if (cache.mode != CacheRequest::None) {
      executorch::runtime::BackendOptions<2> xnnpack;
      xnnpack.set_option("weight_cache_enabled", true);
      xnnpack.set_option("packed_cache_path", cache.path.c_str());  // < 256 bytes, see weight_cache_file()
      executorch::runtime::LoadBackendOptionsMap options;
      options.set_options("XnnpackBackend", xnnpack.view());
      return module_.load_forward(nullptr, nullptr, &options);  // the options are read during this call only
    }
#else
    (void)cache;
#endif
    return module_.load_forward();
  }

  // Compares the program's MethodMeta with the manifest's declared tensors.
  void check_meta() {
    const Artifact& a = artifact_;
    auto meta = module_.method_meta("forward");
    if (!meta.ok()) throw RuntimeFailure(name_ + ": " + a.path + " has no 'forward' method: " + err(meta.error()));
    if (meta->num_inputs() != a.inputs.size() || meta->num_outputs() != a.outputs.size()) {
      throw InputError(name_ + ": " + a.path + " takes " + std::to_string(meta->num_inputs()) + " inputs and returns " +
                       std::to_string(meta->num_outputs()) + " outputs, manifest.json declares " + std::to_string(a.inputs.size()) +
                       " and " + std::to_string(a.outputs.size()) + "; re-export the bundle");
    }
    auto check = [&](bool input, size_t i, const TensorSpec& spec) {
      auto info = input ? meta->input_tensor_meta(i) : meta->output_tensor_meta(i);
      std::string what = name_ + (input ? " input " : " output ") + std::to_string(i) + " '" + spec.name + "'";
      if (!info.ok()) throw InputError(what + " is not a tensor in " + a.path + "; the manifest does not match the .pte, re-export the bundle");
      std::vector<int64_t> got(info->sizes().begin(), info->sizes().end());
      if (info->scalar_type() != scalar_type(spec.dtype) || got != spec.shape) {
        throw InputError(what + " is " + dims(got) + " " + dtype_name(info->scalar_type()) + " in " + a.path +
                         " but manifest.json declares " + dims(spec.shape) + " " + spec.dtype + "; re-export the bundle");
      }
    };
    for (size_t i = 0; i < a.inputs.size(); ++i) check(true, i, a.inputs[i]);
    for (size_t i = 0; i < a.outputs.size(); ++i) check(false, i, a.outputs[i]);
  }

  Artifact artifact_;
  std::string name_;
  Module module_;
};

}  // namespace

std::unique_ptr<Engine> load_executorch(const Artifact& artifact, const char* name, const CacheRequest& cache) {
  return std::make_unique<ExecuTorchEngine>(artifact, name, cache);
}

bool executorch_weight_cache_supported() { return EDGEGEN_ET_WEIGHT_CACHE != 0; }

}  // namespace edgegen
