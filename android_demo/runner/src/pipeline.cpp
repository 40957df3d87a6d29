// See pipeline.h. The element-wise sampler math is float32 and must be compiled with -ffp-contract=off so
// each product and sum is rounded separately, exactly as PyTorch/numpy do it.
#include "pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <sys/resource.h>

#include <executorch/runtime/platform/runtime.h>

#include "errors.h"
#include "sampler.h"
#include "threadpool.h"

namespace edgegen {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A value for the input called `name`: a buffer shaped as the manifest declares it.
struct Feed {
  const char* name;
  const void* data;
};

// Runs the artifact with each declared input bound by name, in the artifact's call order (see bundle.h).
std::vector<std::vector<float>> run(Engine& e, const Artifact& a, const char* name, std::initializer_list<Feed> feeds) {
  std::vector<const void*> inputs;
  for (const TensorSpec& spec : a.inputs) {
    auto feed = std::find_if(feeds.begin(), feeds.end(), [&](const Feed& f) { return spec.name == f.name; });
    if (feed == feeds.end()) throw InputError(std::string(name) + " input '" + spec.name + "' is not one the runner provides; re-export the bundle");
    inputs.push_back(feed->data);
  }
  return e.run(inputs);
}

// NaN or inf in a stage's output stops the generation there (edgegen's BundlePipeline does the same).
void check_finite_latents(const std::vector<float>& v, const char* what) {
  const size_t bad = size_t(std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); }));
  if (bad) {
    throw RuntimeFailure(std::string(what) + " hold " + std::to_string(bad) +
                         " non-finite value(s) (NaN or inf); nothing was written, check the init audio and the bundle");
  }
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

int64_t stateful_calls(int64_t samples, int64_t window, int64_t hop, int64_t delay) {
  const int64_t frames = (samples + delay + hop - 1) / hop;
  return (frames + window - 1) / window;
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

void check_init_noise_level(double level, const std::string& given) {
  if (!(std::isfinite(level) && level > 0.0 && level <= 1.0)) {
    throw InputError("--init-noise-level " + given + " is out of range: give S with 0 < S <= 1 "
                     "(small S stays close to the init audio, 1 ignores it)");
  }
}

double peak_rss_mb() {
  // VmHWM is this program's own high-water mark; getrusage's ru_maxrss carries the parent's across fork + exec, so
  // a runner started by a large process (Python, a test harness) would report the parent's peak.
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kb = -1;
    while (std::fgets(line, sizeof line, f)) {
      if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    }
    std::fclose(f);
    if (kb >= 0) return double(kb) / 1024.0;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux and Android
}

Pipeline::Pipeline(Bundle bundle, int threads, bool audio_to_audio, const WeightCache& cache)
    : bundle_(std::move(bundle)), tokenizer_(bundle_.tokenizer_path, bundle_.max_length, bundle_.eos_id, bundle_.pad_id),
      threads_(threads) {
  if (audio_to_audio && !bundle_.has_encoder()) throw InputError(kNoEncoder);
  if (bundle_.backend == "executorch") {
    executorch::runtime::runtime_init();
    if (threads > 0) set_num_threads(threads);  // one process-wide pool
    threads_ = num_threads();
  }
  auto load = [&](const Artifact& a, const char* name) {
    CacheUse use = CacheUse::Off;
    auto engine = load_engine(bundle_.backend, a, name, threads, cache, &use);
    weight_cache_.emplace_back(name, use);
    return engine;
  };
  text_encoder_ = load(bundle_.text_encoder, "text_encoder");
  dit_ = load(bundle_.dit, "dit");
  decoder_ = load(bundle_.decoder, "decoder");
  if (audio_to_audio) encoder_ = load(bundle_.encoder, "encoder");
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
  const bool a2a = !req.init_audio.empty();
  const double level = req.init_noise_level;
  check_init_noise_level(level, std::to_string(level));
  if (!a2a && level != 1.0) throw InputError("--init-noise-level needs --init-audio FILE (audio-to-audio)");
  if (a2a && !encoder_) {
    throw InputError(b.has_encoder() ? "init audio given to a Pipeline made without audio_to_audio; construct it with audio_to_audio = true"
                                     : kNoEncoder);
  }
  const size_t audio_count = size_t(b.channels) * size_t(b.init_audio_length());
  if (a2a && req.init_audio.size() != audio_count) {
    throw InputError("init audio has " + std::to_string(req.init_audio.size()) + " values, expected [" + std::to_string(b.channels) +
                     ", " + std::to_string(b.init_audio_length()) + "]; prepare it with prepare_init_audio");
  }
  if (!req.vae_noise.empty() && (!a2a || req.vae_noise.size() != latent)) {
    throw InputError("vae noise has " + std::to_string(req.vae_noise.size()) + " values, expected [1, " + std::to_string(b.latent_channels) +
                     ", " + std::to_string(b.latent_length) + "] and init audio");
  }
  const auto start = std::chrono::steady_clock::now();
  Generation g;
  g.audio_to_audio = a2a;
  g.init_noise_level = level;
  // One draw of steps (+1 for audio-to-audio) slices: the generator is counter-based, so the chain's `steps` slices
  // are text-to-audio's numbers and slice `steps` is the VAE noise (edgegen.sampler.init_vae_noise).
  const bool draw_vae = a2a && req.vae_noise.empty();
  std::vector<float> drawn;
  if (req.noise.empty() || draw_vae) drawn = gaussian_noise(req.seed, noise_count + (draw_vae ? latent : 0));
  g.noise = req.noise.empty() ? std::vector<float>(drawn.begin(), drawn.begin() + ptrdiff_t(noise_count)) : req.noise;
  if (a2a) g.vae_noise = draw_vae ? std::vector<float>(drawn.begin() + ptrdiff_t(noise_count), drawn.end()) : req.vae_noise;
  const std::vector<float> t = pingpong_schedule(b.steps, b.logsnr_max, b.logsnr_min, level);

  std::vector<float> x(g.noise.begin(), g.noise.begin() + ptrdiff_t(latent));  // [1, D, T]
  auto t0 = std::chrono::steady_clock::now();
  if (a2a) {
    auto enc = run(*encoder_, b.encoder, "encoder", {{"audio", req.init_audio.data()}});
    const std::vector<float>& mean = enc[b.encoder.output("latent_mean")];
    const std::vector<float>& stdev = enc[b.encoder.output("latent_std")];
    g.init_latents.resize(latent);
    for (size_t j = 0; j < latent; ++j) g.init_latents[j] = mean[j] + stdev[j] * g.vae_noise[j];
    check_finite_latents(g.init_latents, "the encoder's latents (mean + std * vae noise)");
    // Python: init[0] * (1 - level) + noise[0] * level, torch rounding each Python-float factor to float32 first.
    const float keep = float(1.0 - level), noise_level = float(level);
    for (size_t j = 0; j < latent; ++j) x[j] = g.init_latents[j] * keep + x[j] * noise_level;
    g.encoder_s = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
  }
  g.tokens = tokenizer_.encode(req.prompt);
  const float seconds_total = float(req.seconds);
  auto cond = run(*text_encoder_, b.text_encoder, "text_encoder",
                  {{"token_ids", g.tokens.ids.data()}, {"attention_mask", g.tokens.mask.data()}, {"seconds_total", &seconds_total}});
  g.cross_attn_cond = std::move(cond[b.text_encoder.output("cross_attn_cond")]);
  g.global_cond = std::move(cond[b.text_encoder.output("global_cond")]);
  g.text_encoder_s = seconds_since(t0);

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
  std::vector<float> chunk;
  int64_t written = 0;
  // Copies audio[c, from:from+take] (audio planar [channels, n]) to g.audio at `written` and hands it on.
  auto emit = [&](const float* audio, int64_t n, int64_t from, int64_t take) {
    chunk.resize(size_t(b.channels * take));
    for (int c = 0; c < b.channels; ++c) {
      const float* src = audio + size_t(c) * size_t(n) + size_t(from);
      std::copy(src, src + take, chunk.begin() + ptrdiff_t(size_t(c) * size_t(take)));
    }
    check_finite(chunk);  // before on_chunk can write it anywhere
    for (int c = 0; c < b.channels; ++c) {
      std::copy(chunk.begin() + ptrdiff_t(size_t(c) * size_t(take)), chunk.begin() + ptrdiff_t(size_t(c + 1) * size_t(take)),
                g.audio.begin() + ptrdiff_t(size_t(c) * size_t(g.frames) + size_t(written)));
    }
    written += take;
    if (written == take) g.time_to_first_audio_s = seconds_since(start);  // the first non-empty chunk
    if (req.on_chunk) req.on_chunk(chunk, take);
  };
  const int64_t D = b.latent_channels;
  if (b.stream.stateful) {
    // Schema 3: windows back to back, state carried; audio[0] of call c is whole-decode sample c*W*hop - delay.
    const int64_t W = b.stream.window, span = W * b.stream.hop;
    const int64_t calls = stateful_calls(g.frames, W, b.stream.hop, b.stream.delay);
    const size_t audio_out = b.decoder.output("audio"), state_out = b.decoder.output("next_state");
    std::vector<float> window_latents(size_t(D * W)), state(size_t(b.stream.state_size), 0.0f);
    for (int64_t c = 0; c < calls; ++c) {
      const int64_t from = std::min(c * W, T), to = std::min((c + 1) * W, T);  // frames past T stay zero
      std::fill(window_latents.begin(), window_latents.end(), 0.0f);
      for (int64_t d = 0; d < D; ++d) {
        std::copy(x.begin() + ptrdiff_t(d * T + from), x.begin() + ptrdiff_t(d * T + to), window_latents.begin() + ptrdiff_t(d * W));
      }
      const float position[2] = {float(c * W), float(T)};
      auto out = run(*decoder_, b.decoder, "decoder", {{"latents", window_latents.data()}, {"position", position}, {"state", state.data()}});
      ++g.decoder_calls;
      g.decoded_latent_frames += W;
      state = std::move(out[state_out]);
      const int64_t lo = c * span - b.stream.delay;  // whole-decode index of audio[..., 0]
      const int64_t a = std::max<int64_t>(lo, 0), e = std::min(lo + span, g.frames);
      if (e > a) emit(out[audio_out].data(), span, a - lo, e - a);
    }
  } else if (b.stream.window > 0) {
    // Schema 2: overlapping windows, the kept frames of each.
    const int64_t hop = b.stream.hop;
    std::vector<float> window_latents;
    const int64_t frames = frames_to_decode(g.frames, T, b.stream.window, b.stream.overlap, hop);
    for (const Window& w : plan_windows(frames, b.stream.window, b.stream.overlap)) {
      if (written >= g.frames) break;
      const int64_t n_in = w.end - w.start;
      window_latents.resize(size_t(D * n_in));  // x[:, start:end] as a contiguous [1, D, window] buffer
      for (int64_t d = 0; d < D; ++d) {
        std::copy(x.begin() + ptrdiff_t(d * T + w.start), x.begin() + ptrdiff_t(d * T + w.end), window_latents.begin() + ptrdiff_t(d * n_in));
      }
      auto audio = run(*decoder_, b.decoder, "decoder", {{"latents", window_latents.data()}});  // [1, channels, n_in * hop]
      ++g.decoder_calls;
      g.decoded_latent_frames += n_in;
      const int64_t take = std::min((w.keep_end - w.keep_start) * hop, g.frames - written);
      if (take > 0) emit(audio[0].data(), n_in * hop, (w.keep_start - w.start) * hop, take);
    }
  } else {
    // Schema 1: the whole sequence in one call, its first `frames` samples.
    auto audio = run(*decoder_, b.decoder, "decoder", {{"latents", x.data()}});  // [1, channels, N]
    g.decoder_calls = 1;
    g.decoded_latent_frames = T;
    emit(audio[0].data(), b.audio_length, 0, g.frames);
  }
  g.decoder_s = seconds_since(t0);
  g.e2e_s = seconds_since(start);
  return g;
}

}  // namespace edgegen
