// Text -> audio with the three artifacts of a bundle, ExecuTorch or LiteRT (the runner library's main API), and
// audio -> audio with a fourth, the VAE encoder (edgegen.pipeline.Pipeline.generate's `init_audio` branch).
//
//   tokens  = Tokenizer(prompt)                                   ids, mask [1, L] int32
//   cross, glob = text_encoder(ids, mask, [seconds])              [1, L+1, C], [1, C]
//   x = noise[0]; for i < steps:                                  x [1, D, T]
//       v = dit(x, [t_i], cross, glob); denoised = x - t_i * v
//       x = (1 - t_{i+1}) * denoised + t_{i+1} * noise[i+1]   (x = denoised on the last step)
//   audio = decoder(x)[:, :, :n], n = min(num_samples(seconds, sample_rate), N)   [channels, n], nearest sample
//   (NaN or inf in the audio is an error: RuntimeFailure, nothing is handed to on_chunk)
//   (schema 2, overlapped windows: decoder(x[:, :, start:end]) per window of plan_windows(), the kept frames
//    concatenated; same windows as edgegen.streaming.decode_stream, so the audio matches `edgegen run` exactly)
//   (schema 3, stateful: state = 0; for c < stateful_calls(n): audio, state = decoder(x[:, :, cW:(c+1)W] zero-padded
//    to W frames, [cW, T], state); audio[0] is whole-decode sample cW*hop - delay, the part inside [0, n) is kept
//    (the first calls may keep nothing); edgegen.streaming.decode_stateful, the same calls)
//
// Audio-to-audio at noise level S in (0, 1] (init_audio prepared by prepare_init_audio, wav.h):
//   mean, std = encoder(init_audio)                               [1, D, T] each (std = softplus(scale) + 1e-4)
//   init = mean + std * vae_noise                                 vae_noise [1, D, T]: slice `steps` of
//                                                                 gaussian_noise(seed) over steps+1 slices
//   x = init * (1 - S) + noise[0] * S, then the loop above on pingpong_schedule(..., S), which starts at t = S
//   (S = 1: x = noise[0] and the text-to-audio schedule, so the output is text-to-audio's, sample for sample)
//
// Usage:
//   edgegen::Pipeline p(edgegen::load_bundle(dir), /*threads=*/4);
//   edgegen::Generation g = p.generate({"rain on a tin roof", 5.0});
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bundle.h"
#include "engine.h"
#include "tokenizer.h"

namespace edgegen {

struct Request {
  std::string prompt;
  double seconds = 0.0;        // in (0, max_seconds] (+1e-6 slack) and >= 1 sample once rounded, like edgegen's check_seconds
  uint64_t seed = 0;           // used when `noise` is empty
  std::vector<float> noise;    // [steps, D, T] C order, or empty for gaussian_noise(seed)
  bool keep_intermediates = false;  // fill Generation::latents (for --dump)
  // Audio-to-audio (a Pipeline made with audio_to_audio = true): the init audio as prepare_init_audio makes it,
  // [channels, T * hop] planar; empty for text-to-audio.
  std::vector<float> init_audio;
  double init_noise_level = 1.0;  // S in (0, 1]: where sampling starts; 1 (text-to-audio's) ignores the init audio
  std::vector<float> vae_noise;   // [1, D, T] the VAE bottleneck's noise, or empty for the seed's (see above)
  // Called with each decoded chunk as soon as it is ready: planar [channels, frames] (one call for a
  // whole-sequence decoder, one per window for a streamed one; never with frames == 0).
  std::function<void(const std::vector<float>& chunk, int64_t frames)> on_chunk;
};

// Latent frames [start, end) go into the decoder; frames [keep_start, keep_end) of its output are kept.
struct Window {
  int64_t start, end, keep_start, keep_end;
};

// Mirrors edgegen.streaming.plan_windows: windows of exactly `window` frames whose kept spans tile [0, length).
std::vector<Window> plan_windows(int64_t length, int64_t window, int64_t overlap);

// Mirrors edgegen.streaming.frames_to_decode: latent frames needed for the first `samples` output samples.
int64_t frames_to_decode(int64_t samples, int64_t length, int64_t window, int64_t overlap, int64_t hop);

// Mirrors edgegen.streaming.stateful_calls: decoder calls a stateful stream (schema 3) needs for the first
// `samples` output samples, ceil(ceil((samples + delay) / hop) / window).
int64_t stateful_calls(int64_t samples, int64_t window, int64_t hop, int64_t delay);

struct Generation {
  double seconds = 0.0;       // as requested
  int64_t frames = 0;         // num_samples(seconds, sample_rate): the nearest sample
  std::vector<float> audio;   // [channels, frames] planar
  Tokens tokens;
  std::vector<float> cross_attn_cond;  // [1, L+1, C]
  std::vector<float> global_cond;      // [1, C]
  std::vector<float> noise;            // [steps, D, T]
  std::vector<std::vector<float>> latents;  // steps x [1, D, T], x after each step (keep_intermediates)
  bool audio_to_audio = false;
  double init_noise_level = 1.0;       // S (1 for text-to-audio)
  std::vector<float> vae_noise;        // [1, D, T] (audio-to-audio)
  std::vector<float> init_latents;     // [1, D, T] mean + std * vae_noise (audio-to-audio)
  double encoder_s = 0.0;
  double text_encoder_s = 0.0;
  std::vector<double> dit_step_s;
  double decoder_s = 0.0;
  int decoder_calls = 0;               // 1, or the number of windows of a streamed decoder
  int64_t decoded_latent_frames = 0;   // latent frames fed to the decoder: T, the windows' frames (schema 2), or
                                       // decoder_calls * window (schema 3, zero padding included)
  double time_to_first_audio_s = 0.0;  // generate() start -> first non-empty chunk available
  double e2e_s = 0.0;                  // generate() start -> return
};

class Pipeline {
 public:
  // Loads the tokenizer and the three artifacts in the bundle's runtime and checks each one's signature against the
  // manifest. `threads` >= 1 sizes the runtime's CPU threads (ExecuTorch: the process-wide pool; LiteRT: each
  // compiled model); 0 keeps the runtime's default. `audio_to_audio` also loads the encoder (InputError when the
  // bundle has none); text-to-audio leaves it on disk, so its load time and memory stay those of three artifacts.
  // `cache`: the XNNPACK weight cache the artifacts load through (weight_cache.h; default off).
  // Throws InputError (shape/dtype mismatch) or RuntimeFailure (the runtime could not load an artifact).
  explicit Pipeline(Bundle bundle, int threads = 0, bool audio_to_audio = false, const WeightCache& cache = {});
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  const Bundle& bundle() const { return bundle_; }
  // The CPU threads the runtime runs on (what was asked for, or the runtime's default as far as it says).
  int threads() const { return threads_; }
  // What the weight cache did for each loaded artifact, in load order: ("text_encoder", CacheUse::Hit), ...
  const std::vector<std::pair<std::string, CacheUse>>& weight_cache() const { return weight_cache_; }

  // Throws InputError for a bad `seconds`, noise size, init audio size or noise level, RuntimeFailure when a module
  // fails or the audio (or the encoder's latents) is not finite.
  Generation generate(const Request& request);

 private:
  Bundle bundle_;
  Tokenizer tokenizer_;
  int threads_ = 0;
  std::unique_ptr<Engine> text_encoder_, dit_, decoder_, encoder_;  // encoder_: audio_to_audio only
  std::vector<std::pair<std::string, CacheUse>> weight_cache_;
};

// The message for --init-audio (or Request::init_audio) on a bundle exported without the encoder.
constexpr const char* kNoEncoder = "this bundle has no encoder artifact; export it with `edgegen export --audio-to-audio`";

// Throws InputError unless S is finite and 0 < S <= 1 (edgegen.init_audio.check_init_noise_level); `given` is S
// as the user wrote it.
void check_init_noise_level(double level, const std::string& given);

// Throws InputError unless 0 < seconds <= bundle.max_seconds + 1e-6 and seconds rounds to at least one sample.
void check_seconds(const Bundle& bundle, double seconds);

// Peak resident set size of this process in MiB.
double peak_rss_mb();

}  // namespace edgegen
