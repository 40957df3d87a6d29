// An edgegen bundle: manifest.json + spiece.model + text_encoder/dit/decoder artifacts, .pte (backend "executorch")
// or .tflite (backend "litert").
//
// load_bundle() checks everything that can be checked without a runtime: schema_version 1, 2 or 3 (2 adds
// `decoder_stream`: the decoder takes [1,D,window] and runs over overlapping windows; 3 makes it stateful, mode
// "stateful": windows back to back with the decoder's state carried between calls, the audio `delay` samples behind;
// see streaming in pipeline.h), backend "executorch" or "litert", target.threads (optional), sampler type, the I/O
// contract below, each artifact's size and sha256, and the tokenizer's size/sha256 when the manifest records them.
// Artifact and tokenizer files must be plain file names that resolve inside the bundle directory (no '/', '..',
// absolute path or symlink leading out), checked before any is read.
//
// Tensors are bound by name. An input's position in the artifact's call is its manifest `index` (written by
// `edgegen export`); a manifest without `index` (older exports) lists inputs in call order. Either every input of
// an artifact has an index or none has, and the indices number them 0..n-1. Outputs are listed in return order.
// edgegen/runtime.py applies the same rule.
//
//   text_encoder: token_ids int32 [1,L], attention_mask int32 [1,L], seconds_total f32 [1]
//                 -> cross_attn_cond f32 [1,L+1,C], global_cond f32 [1,C]
//   dit:          x f32 [1,D,T], t f32 [1], cross_attn_cond [1,L+1,C], global_cond [1,C] -> v f32 [1,D,T]
//   decoder:      latents f32 [1,D,T] -> audio f32 [1,channels,N]      (schema 2: [1,D,W] -> [1,channels,W*hop])
//                 schema 3: latents f32 [1,D,W], position f32 [2], state f32 [1,S]
//                           -> audio f32 [1,channels,W*hop], next_state f32 [1,S]
//   encoder:      audio f32 [1,channels,T*hop] -> latent_mean f32 [1,D,T], latent_std f32 [1,D,T]
//                 (optional, `edgegen export --audio-to-audio`; std = softplus(scale) + 1e-4 inside the artifact)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgegen {

struct TensorSpec {
  std::string name;
  std::string dtype;  // "float32" | "int32"
  std::vector<int64_t> shape;
  size_t listed = 0;  // position in the manifest's list (for messages)
};

struct Artifact {
  std::string path;  // absolute or relative to the working directory: bundle dir + file
  std::string sha256;  // the manifest's (lower-case hex), checked against the file; names its weight cache
  // What the target profile asks of XNNPACK for it (edgegen/xnnpack.py computes the same): LiteRT's delegate flags
  // (the profile's xnnpack_flags, plus FORCE_FP16 for an fp16 artifact on a CPU with fp16 arithmetic; has_flags
  // false: the runtime's defaults) and the float precision it then computes in ("fp32" | "fp16").
  bool has_flags = false;
  uint32_t xnnpack_flags = 0;
  std::string precision = "fp32";
  std::vector<TensorSpec> inputs;   // in the order forward() takes them (sorted by `index`)
  std::vector<TensorSpec> outputs;  // in the order forward() returns them

  // The declared input / the position of the output called `name`; throws InputError when there is none.
  const TensorSpec& input(const std::string& name) const;
  size_t output(const std::string& name) const;
};

// A streamed decoder, `hop` samples per latent frame; window == 0: whole-sequence decoder (schema 1).
// Schema 2 (overlapping): windows of `window` latent frames, each kept frame >= `overlap` frames from any window edge
// that is not a sequence edge. Schema 3 (stateful): windows of `window` frames back to back (zeros past the
// sequence), the decoder's `state_size`-float state carried from call to call, its output stream the whole decode
// delayed by `delay` samples.
struct DecoderStream {
  int64_t window = 0;
  int64_t overlap = 0;  // schema 2
  int64_t hop = 0;
  bool stateful = false;  // schema 3
  int64_t delay = 0;       // schema 3
  int64_t state_size = 0;  // schema 3
};

struct Bundle {
  std::string dir;
  std::string backend;   // "executorch" | "litert"
  int target_threads = 0;  // manifest target.threads: the default thread count (0: the runtime's choice)
  std::string recipe;  // recipe.name, for reports
  int sample_rate = 0;
  int channels = 0;
  int64_t latent_length = 0;   // T
  int64_t latent_channels = 0; // D (64)
  int64_t audio_length = 0;    // N, samples per channel of the whole sequence (T * hop when streamed, 2 or 3)
  DecoderStream stream;
  double max_seconds = 0.0;
  int steps = 0;
  double logsnr_max = 0.0;
  double logsnr_min = 0.0;
  std::string tokenizer_path;
  int max_length = 0;  // L
  int eos_id = 0;
  int pad_id = 0;
  Artifact text_encoder, dit, decoder;
  Artifact encoder;  // audio-to-audio only; path empty when the manifest has no artifacts.encoder

  bool has_encoder() const { return !encoder.path.empty(); }
  // Samples per channel the encoder takes: T * hop (hop: decoder_stream.hop, schema 2 or 3, else N / T), as
  // edgegen's Pipeline uses latent_length * vae.hop; what prepare_init_audio makes.
  int64_t init_audio_length() const { return latent_length * (stream.window > 0 ? stream.hop : audio_length / latent_length); }
};

// Samples in `seconds` of audio: the nearest integer, ties to even (0.7 s at 44.1 kHz is 30870), the same rule
// as edgegen.common.num_samples (Python's round()). Assumes the default rounding mode (round to nearest).
int64_t num_samples(double seconds, int sample_rate);

// Reads and validates `dir`; throws InputError with a message that says what is wrong and how to fix it.
Bundle load_bundle(const std::string& dir);

}  // namespace edgegen
