// See pipeline.h. The element-wise sampler math is float32 and must be compiled with -ffp-contract=off so
// each product and sum is rounded separately, exactly as PyTorch/numpy do it.
#include "pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <sys/resource.h>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

#include "errors.h"
#include "sampler.h"

namespace edgegen {
namespace {

using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::runtime::EValue;
using executorch::runtime::Error;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string err(Error e) { return std::string(executorch::runtime::to_string(e)) + " (0x" + [&] {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%x", unsigned(e));
  return std::string(buf);
}() + ")"; }

ScalarType scalar_type(const std::string& dtype) { return dtype == "int32" ? ScalarType::Int : ScalarType::Float; }

std::string dtype_name(ScalarType t) {
  if (t == ScalarType::Float) return "float32";
  if (t == ScalarType::Int) return "int32";
  return "ScalarType " + std::to_string(int(t));
}

std::string dims(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

// Compares the program's MethodMeta with the manifest's declared tensors.
void check_meta(Module& m, const Artifact& a, const char* name) {
  auto meta = m.method_meta("forward");
  if (!meta.ok()) throw RuntimeFailure(std::string(name) + ": " + a.path + " has no 'forward' method: " + err(meta.error()));
  auto check = [&](bool input, size_t i, const TensorSpec& spec) {
    auto info = input ? meta->input_tensor_meta(i) : meta->output_tensor_meta(i);
    std::string what = std::string(name) + (input ? " input " : " output ") + std::to_string(i) + " '" + spec.name + "'";
    if (!info.ok()) throw InputError(what + " is not a tensor in " + a.path + "; the manifest does not match the .pte, re-export the bundle");
    std::vector<int64_t> got(info->sizes().begin(), info->sizes().end());
    if (info->scalar_type() != scalar_type(spec.dtype) || got != spec.shape) {
      throw InputError(what + " is " + dims(got) + " " + dtype_name(info->scalar_type()) + " in " + a.path +
                       " but manifest.json declares " + dims(spec.shape) + " " + spec.dtype + "; re-export the bundle");
    }
  };
  if (meta->num_inputs() != a.inputs.size() || meta->num_outputs() != a.outputs.size()) {
    throw InputError(std::string(name) + ": " + a.path + " takes " + std::to_string(meta->num_inputs()) + " inputs and returns " +
                     std::to_string(meta->num_outputs()) + " outputs, manifest.json declares " + std::to_string(a.inputs.size()) +
                     " and " + std::to_string(a.outputs.size()) + "; re-export the bundle");
  }
  for (size_t i = 0; i < a.inputs.size(); ++i) check(true, i, a.inputs[i]);
  for (size_t i = 0; i < a.outputs.size(); ++i) check(false, i, a.outputs[i]);
}

std::unique_ptr<Module> load_module(const Artifact& a, const char* name) {
  auto m = std::make_unique<Module>(a.path, Module::LoadMode::Mmap);
  Error e = m->load_forward();
  if (e != Error::Ok) {
    throw RuntimeFailure(std::string("ExecuTorch could not load ") + name + " from " + a.path + ": " + err(e) +
                         "; check the runner and the exporter use the same ExecuTorch version");
  }
  check_meta(*m, a, name);
  return m;
}

// A value for the input called `name`: a buffer shaped as the manifest declares it.
struct Feed {
  const char* name;
  const void* data;
};

// Runs forward() with each declared input bound by name (in the artifact's call order, see bundle.h) and copies
// every output out, in return order, because the module's planned memory is reused by the next call.
std::vector<std::vector<float>> run(Module& m, const Artifact& a, const char* name, std::initializer_list<Feed> feeds) {
  std::vector<TensorPtr> tensors;
  std::vector<EValue> values;
  for (const TensorSpec& spec : a.inputs) {
    auto feed = std::find_if(feeds.begin(), feeds.end(), [&](const Feed& f) { return spec.name == f.name; });
    if (feed == feeds.end()) throw InputError(std::string(name) + " input '" + spec.name + "' is not one the runner provides; re-export the bundle");
    std::vector<executorch::aten::SizesType> sizes(spec.shape.begin(), spec.shape.end());
    tensors.push_back(from_blob(const_cast<void*>(feed->data), sizes, scalar_type(spec.dtype)));
    values.emplace_back(tensors.back());
  }
  auto result = m.forward(values);
  if (!result.ok()) throw RuntimeFailure(std::string(name) + " forward() failed: " + err(result.error()));
  std::vector<std::vector<float>> outs;
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    const EValue& v = result->at(i);
    if (!v.isTensor()) throw RuntimeFailure(std::string(name) + " output " + std::to_string(i) + " is not a tensor");
    const auto& t = v.toTensor();
    const float* p = t.const_data_ptr<float>();
    outs.emplace_back(p, p + t.numel());
  }
  return outs;
}

// Non-finite audio is an error, never a file (edgegen.common.check_finite does the same in Python).
void check_finite(const std::vector<float>& audio) {
  const size_t bad = size_t(std::count_if(audio.begin(), audio.end(), [](float v) { return !std::isfinite(v); }));
  if (bad) {
    throw RuntimeFailure("the decoded audio holds " + std::to_string(bad) +
                         " non-finite value(s) (NaN or inf); nothing was written, check the --noise values and the bundle");
  }
}

}  // namespace

std::vector<Window> plan_windows(int64_t length, int64_t window, int64_t overlap) {
  if (length < 1 || overlap < 0 || window <= 2 * overlap) {
    throw InputError("plan_windows: need length >= 1 and window > 2 * overlap >= 0");
  }
  if (length <= window) return {{0, length, 0, length}};
  std::vector<Window> plan{{0, window, 0, window - overlap}};
  while (plan.back().keep_end < length) {
    const int64_t keep_start = plan.back().keep_end, start = keep_start - overlap;
    if (start + window >= length) {
      plan.push_back({length - window, length, keep_start, length});  // the last one shifts left, never pads
    } else {
      plan.push_back({start, start + window, keep_start, start + window - overlap});
    }
  }
  return plan;
}

int64_t frames_to_decode(int64_t samples, int64_t length, int64_t window, int64_t overlap, int64_t hop) {
  return std::min(length, std::max(window, (samples + hop - 1) / hop + overlap));
}

void check_seconds(const Bundle& bundle, double seconds) {
  // Same rule as edgegen.common.check_seconds: finite, at least one sample once rounded, at most max_seconds (+1e-6).
  if (!(seconds > 0.0) || seconds > bundle.max_seconds + 1e-6 || num_samples(seconds, bundle.sample_rate) < 1) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "--seconds %g is out of range: this bundle makes %.2g to %.2f seconds (1 sample to max_seconds)",
                  seconds, 1.0 / bundle.sample_rate, bundle.max_seconds);
    throw InputError(buf);
  }
}

double peak_rss_mb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux and Android
}

Pipeline::Pipeline(Bundle bundle)
    : bundle_(std::move(bundle)), tokenizer_(bundle_.tokenizer_path, bundle_.max_length, bundle_.eos_id, bundle_.pad_id) {
  executorch::runtime::runtime_init();
  text_encoder_ = load_module(bundle_.text_encoder, "text_encoder");
  dit_ = load_module(bundle_.dit, "dit");
  decoder_ = load_module(bundle_.decoder, "decoder");
}

Pipeline::~Pipeline() = default;

Generation Pipeline::generate(const Request& req) {
  const Bundle& b = bundle_;
  check_seconds(b, req.seconds);
  const size_t latent = size_t(b.latent_channels * b.latent_length);  // D * T
  const size_t noise_count = size_t(b.steps) * latent;
  if (!req.noise.empty() && req.noise.size() != noise_count) {
    throw InputError("noise has " + std::to_string(req.noise.size()) + " values, expected [" + std::to_string(b.steps) + ", " +
                     std::to_string(b.latent_channels) + ", " + std::to_string(b.latent_length) + "]");
  }
  const auto start = std::chrono::steady_clock::now();
  Generation g;
  g.noise = req.noise.empty() ? gaussian_noise(req.seed, noise_count) : req.noise;
  const std::vector<float> t = pingpong_schedule(b.steps, b.logsnr_max, b.logsnr_min);

  auto t0 = std::chrono::steady_clock::now();
  g.tokens = tokenizer_.encode(req.prompt);
  const float seconds_total = float(req.seconds);
  auto cond = run(*text_encoder_, b.text_encoder, "text_encoder",
                  {{"token_ids", g.tokens.ids.data()}, {"attention_mask", g.tokens.mask.data()}, {"seconds_total", &seconds_total}});
  g.cross_attn_cond = std::move(cond[b.text_encoder.output("cross_attn_cond")]);
  g.global_cond = std::move(cond[b.text_encoder.output("global_cond")]);
  g.text_encoder_s = seconds_since(t0);

  std::vector<float> x(g.noise.begin(), g.noise.begin() + latent);  // [1, D, T]
  for (int i = 0; i < b.steps; ++i) {
    t0 = std::chrono::steady_clock::now();
    const float ti = t[size_t(i)];
    auto v = run(*dit_, b.dit, "dit", {{"x", x.data()}, {"t", &ti}, {"cross_attn_cond", g.cross_attn_cond.data()}, {"global_cond", g.global_cond.data()}});
    const float* vp = v[0].data();
    if (i + 1 < b.steps) {
      const float tn = t[size_t(i) + 1];
      const float keep = 1.0f - tn;
      const float* nz = g.noise.data() + size_t(i + 1) * latent;
      for (size_t j = 0; j < latent; ++j) {
        float denoised = x[j] - ti * vp[j];
        x[j] = keep * denoised + tn * nz[j];
      }
    } else {
      for (size_t j = 0; j < latent; ++j) x[j] = x[j] - ti * vp[j];
    }
    g.dit_step_s.push_back(seconds_since(t0));
    if (req.keep_intermediates) g.latents.push_back(x);
  }

  t0 = std::chrono::steady_clock::now();
  g.seconds = req.seconds;
  g.frames = std::min(num_samples(req.seconds, b.sample_rate), b.audio_length);
  g.audio.resize(size_t(b.channels) * size_t(g.frames));
  const int64_t T = b.latent_length;
  std::vector<Window> plan;
  if (b.stream.window > 0) {
    plan = plan_windows(frames_to_decode(g.frames, T, b.stream.window, b.stream.overlap, b.stream.hop), b.stream.window, b.stream.overlap);
  } else {
    plan = {{0, T, 0, T}};
  }
  const int64_t hop = b.audio_length / T;
  std::vector<float> window_latents, chunk;
  int64_t written = 0;
  for (const Window& w : plan) {
    if (written >= g.frames) break;
    const int64_t n_in = w.end - w.start;
    const float* in = x.data();
    if (b.stream.window > 0) {  // copy x[:, start:end] into a contiguous [1, D, window] buffer
      window_latents.resize(size_t(b.latent_channels * n_in));
      for (int64_t d = 0; d < b.latent_channels; ++d) {
        std::copy(x.begin() + ptrdiff_t(d * T + w.start), x.begin() + ptrdiff_t(d * T + w.end), window_latents.begin() + ptrdiff_t(d * n_in));
      }
      in = window_latents.data();
    }
    auto audio = run(*decoder_, b.decoder, "decoder", {{"latents", in}});  // [1, channels, n_in * hop]
    ++g.decoder_calls;
    const int64_t keep_from = (w.keep_start - w.start) * hop;
    const int64_t take = std::min((w.keep_end - w.keep_start) * hop, g.frames - written);
    chunk.resize(size_t(b.channels * take));
    for (int c = 0; c < b.channels; ++c) {
      const float* src = audio[0].data() + size_t(c) * size_t(n_in * hop) + size_t(keep_from);
      std::copy(src, src + take, g.audio.begin() + ptrdiff_t(size_t(c) * size_t(g.frames) + size_t(written)));
      std::copy(src, src + take, chunk.begin() + ptrdiff_t(size_t(c) * size_t(take)));
    }
    check_finite(chunk);  // before on_chunk can write it anywhere
    written += take;
    if (g.decoder_calls == 1) g.time_to_first_audio_s = seconds_since(start);
    if (req.on_chunk) req.on_chunk(chunk, take);
  }
  g.decoder_s = seconds_since(t0);
  g.e2e_s = seconds_since(start);
  return g;
}

}  // namespace edgegen
