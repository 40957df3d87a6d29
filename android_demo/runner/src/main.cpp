// edgegen-runner: the native equivalent of `edgegen run` for an ExecuTorch or LiteRT bundle (the manifest's backend).
//
//   edgegen-runner --bundle DIR --prompt P --seconds S [--seed N] [--noise FILE.npy] [--threads N]
//                  [--truncate-prompt] [--init-audio FILE.wav [--init-noise-level S] [--vae-noise FILE.npy]]
//                  [--dump DIR] [--weight-cache DIR | --no-weight-cache] -o out.wav
//
// Writes a float32 stereo WAV, prints per-stage timings and, as the last stdout line, one JSON object.
// Errors: one line "edgegen-runner: error: ..." on stderr; exit 2 for bad input/usage, 1 for runtime failures.
// Outputs are written under temporary names and renamed only after everything succeeded; -o must be a regular file
// (or not exist) and no input; NaN or inf in the audio is an error and writes nothing. Like edgegen's Python side, a
// prompt over tokenizer.max_length tokens (EOS included) and --noise holding NaN or inf are refused (exit 2) before
// any model is loaded; --truncate-prompt accepts the cut (a warning line, and "prompt_truncated": true in the JSON).
// --init-audio (audio-to-audio) is read and prepared before any model is loaded too: a bad file is one error line,
// and each change made to it (resampled, cropped, padded, mono duplicated) one "edgegen-runner: note:" line.
// XNNPACK's packed weights are cached per artifact under --weight-cache DIR (weight_cache.h): the first run packs
// and writes them, later runs map them instead of repacking the model's weights (lower peak RSS).
#include <cmath>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <executorch/runtime/platform/platform.h>

#include "errors.h"
#include "litert_api.h"
#include "npy.h"
#include "pipeline.h"
#include "report.h"
#include "tokenizer.h"
#include "wav.h"
#include "weight_cache.h"

namespace {

using namespace edgegen;

constexpr const char* kUsage =
    "usage: edgegen-runner --bundle DIR --prompt P --seconds S [--seed N] [--noise FILE.npy] [--threads N] [--truncate-prompt]\n"
    "                      [--init-audio FILE.wav [--init-noise-level S] [--vae-noise FILE.npy]] [--dump DIR] -o out.wav\n"
    "  --bundle DIR      bundle written by `edgegen export`: manifest.json, spiece.model and 3 .pte (ExecuTorch)\n"
    "                    or 3 .tflite (LiteRT; needs libLiteRt.so, see `edgegen build-runner`); 4 with an encoder\n"
    "  --prompt P        text prompt (may be empty); over tokenizer.max_length tokens (EOS included) is refused\n"
    "  --truncate-prompt keep an over-long prompt's first max_length-1 tokens (and EOS) instead of refusing it\n"
    "  --seconds S       audio length, 0 < S <= manifest max_seconds\n"
    "  --seed N          seed of the portable noise generator (default 0), same numbers as edgegen.noise\n"
    "  --noise FILE.npy  float32 C-order noise of shape [steps, 64, T], finite, instead of --seed\n"
    "  --threads N       CPU threads of the runtime (XNNPACK) (default: the manifest's target.threads)\n"
    "  --init-audio WAV  audio-to-audio: start from this recording (PCM 16/24/32-bit or float WAV), resampled to the\n"
    "                    model's rate, cropped or zero-padded to its length, mono duplicated to stereo; needs a\n"
    "                    bundle with an encoder (`edgegen export --audio-to-audio`)\n"
    "  --init-noise-level S  noise level sampling starts from, 0 < S <= 1 (default 0.5 with --init-audio): small S\n"
    "                    stays close to the init audio, 1 ignores it (text-to-audio's output for the same seed)\n"
    "  --vae-noise FILE.npy  float32 [1, 64, T], finite: the VAE bottleneck's sampling noise for --init-audio;\n"
    "                    default slice `steps` of the seed's noise over steps+1 slices, also with --noise\n"
    "  --dump DIR        write token_ids, attention_mask, conditioning, latents_step{k}, audio, noise as .npy\n"
    "                    (with --init-audio also init_audio [2, N], init_latents and vae_noise [1, 64, T])\n"
    "  -o, --output WAV  float32 WAV to write\n"
    "  --weight-cache DIR  XNNPACK weight cache folder, created if missing (default: $EDGEGEN_WEIGHT_CACHE, else\n"
    "                    $XDG_CACHE_HOME/edgegen/xnnpack, else $HOME/.cache/edgegen/xnnpack, else\n"
    "                    /data/local/tmp/edgegen-xnnpack-cache): the first run of a bundle writes each artifact's\n"
    "                    packed weights there, later runs map them instead of packing the model's weights again\n"
    "  --no-weight-cache pack the weights in memory on every run (no cache files)\n"
    "  --verbose         pass the runtime's own log lines (ExecuTorch, LiteRT) through to stderr, and the weight\n"
    "                    cache's warnings (a cache file that could not be used, rebuilt)\n"
    "Environment: EDGEGEN_LITERT_LIB=PATH  the libLiteRt.so to load for LiteRT bundles\n"
    "             EDGEGEN_WEIGHT_CACHE=DIR the default --weight-cache folder\n";

struct Args {
  std::string bundle, prompt, noise, dump, output, init_audio, vae_noise, init_noise_level;
  std::string weight_cache;  // --weight-cache DIR ("" = the default folder)
  bool no_weight_cache = false;
  double seconds = 0.0;
  double level = 1.0;  // --init-noise-level: 0.5 by default with --init-audio, 1 (text-to-audio) without
  uint64_t seed = 0;
  int threads = 0;  // 0: the manifest's target.threads, else the runtime's default
  bool has_prompt = false, has_seconds = false, truncate_prompt = false;
};

bool g_verbose = false;

// ExecuTorch logs info lines (cpuinfo probing, ...) to stderr; keep stderr to our one error line unless --verbose.
void emit_et_log(et_timestamp_t, et_pal_log_level_t level, const char* filename, const char*, size_t line,
                 const char* message, size_t length) {
  if (g_verbose) std::fprintf(stderr, "%c executorch:%s:%zu] %.*s\n", char(level), filename, line, int(length), message);
}

double parse_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno != 0) throw InputError(flag + " expects a number, got '" + v + "'");
  return d;
}

long long parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0) {
    errno = 0;
    unsigned long long u = std::strtoull(v.c_str(), &end, 10);  // seeds up to 2^64-1
    if (v.empty() || *end != '\0' || errno != 0 || v[0] == '-') throw InputError(flag + " expects an integer, got '" + v + "'");
    return static_cast<long long>(u);
  }
  return n;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--verbose") {
      g_verbose = true;
      litert::set_verbose(true);
      continue;
    }
    if (flag == "--truncate-prompt") {
      a.truncate_prompt = true;
      continue;
    }
    if (flag == "--no-weight-cache") {
      a.no_weight_cache = true;
      continue;
    }
    size_t eq = flag.find('=');
    if (flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else {
      if (i + 1 >= argc) throw InputError(flag + " needs a value (see --help)");
      value = argv[++i];
    }
    if (flag == "--bundle") a.bundle = value;
    else if (flag == "--prompt") { a.prompt = value; a.has_prompt = true; }
    else if (flag == "--seconds") { a.seconds = parse_double(flag, value); a.has_seconds = true; }
    else if (flag == "--seed") a.seed = static_cast<uint64_t>(parse_int(flag, value));  // mod 2^64, like Python
    else if (flag == "--noise") a.noise = value;
    else if (flag == "--threads") {
      long long n = parse_int(flag, value);
      if (n < 1 || n > 256) throw InputError("--threads must be in 1..256, got " + value);
      a.threads = int(n);
    }
    else if (flag == "--dump") a.dump = value;
    else if (flag == "--init-audio") a.init_audio = value;
    else if (flag == "--init-noise-level") a.init_noise_level = value;
    else if (flag == "--vae-noise") a.vae_noise = value;
    else if (flag == "--weight-cache") {
      if (value.empty()) throw InputError("--weight-cache expects a folder, got ''; use --no-weight-cache to turn the cache off");
      a.weight_cache = value;
    }
    else if (flag == "-o" || flag == "--output") a.output = value;
    else throw InputError("unknown option " + flag + " (see --help)");
  }
  if (a.bundle.empty()) throw InputError("--bundle DIR is required (see --help)");
  if (!a.has_prompt) throw InputError("--prompt is required (use --prompt '' for an empty prompt)");
  if (!a.has_seconds) throw InputError("--seconds is required");
  if (a.output.empty()) throw InputError("-o out.wav is required");
  if (a.no_weight_cache && !a.weight_cache.empty()) throw InputError("--weight-cache DIR and --no-weight-cache exclude each other; give one");
  if (a.init_audio.empty() && !a.init_noise_level.empty()) {
    throw InputError("--init-noise-level needs --init-audio FILE.wav (audio-to-audio); without it the runner makes text-to-audio");
  }
  if (a.init_audio.empty() && !a.vae_noise.empty()) throw InputError("--vae-noise needs --init-audio FILE.wav (audio-to-audio)");
  if (!a.init_audio.empty()) {
    a.level = a.init_noise_level.empty() ? 0.5 : parse_double("--init-noise-level", a.init_noise_level);
    check_init_noise_level(a.level, a.init_noise_level.empty() ? "0.5" : a.init_noise_level);
  }
  return a;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return "[" + s + "]";
}

void make_dirs(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos == path.size() || path[pos] == '/') {
      std::string part = path.substr(0, pos);
      if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) throw RuntimeFailure("cannot create directory " + part + ": " + std::strerror(errno));
    }
  }
}

// Collects outputs under temporary names; commit() renames them all, the destructor removes leftovers.
class Outputs {
 public:
  std::string tmp(const std::string& final_path) {
    std::string t = final_path + ".tmp-" + std::to_string(::getpid());
    files_.push_back({t, final_path});
    return t;
  }
  void commit() {
    for (auto& f : files_) {
      if (std::rename(f.first.c_str(), f.second.c_str()) != 0) throw RuntimeFailure("cannot rename " + f.first + " to " + f.second + ": " + std::strerror(errno));
    }
    files_.clear();
  }
  ~Outputs() {
    for (auto& f : files_) std::remove(f.first.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::string>> files_;
};

// -o must name a regular file (or nothing yet) in an existing directory, and none of the `inputs` (what -> path):
// the WAV replaces it by rename, so writing over the noise file or a bundle file would destroy an input.
void check_output(const std::string& out, const std::vector<std::pair<std::string, std::string>>& inputs) {
  struct stat st;
  if (::stat(out.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      throw InputError("-o " + out + " exists and is not a regular file (a directory, device or FIFO); give the path of a .wav file");
    }
    for (const auto& in : inputs) {
      struct stat si;
      if (::stat(in.second.c_str(), &si) == 0 && si.st_dev == st.st_dev && si.st_ino == st.st_ino) {
        throw InputError("-o " + out + " is the same file as " + in.first + " " + in.second + "; write the WAV somewhere else");
      }
    }
    return;
  }
  const size_t slash = out.find_last_of('/');
  const std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : out.substr(0, slash));
  if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw InputError("-o " + out + ": the directory " + parent + " does not exist; create it first");
  }
}

// A float32 .npy of exactly `want` (e.g. [steps, 64, T]) holding only finite values, or InputError naming `flag`.
std::vector<float> read_noise_file(const std::string& flag, const std::string& path, const std::vector<int64_t>& want, const char* dims) {
  NpyArray noise = read_npy_f32(path);
  if (noise.shape != want) {
    throw InputError(flag + " " + path + " has shape " + shape_text(noise.shape) + ", this bundle needs " + shape_text(want) + " (" + dims + ")");
  }
  size_t bad = 0;
  for (float v : noise.data) bad += std::isfinite(v) ? 0 : 1;
  if (bad) {
    throw InputError(flag + " " + path + " holds " + std::to_string(bad) + " non-finite value(s) (NaN or inf); give finite float32 noise");
  }
  return std::move(noise.data);
}

void write_dumps(Outputs& out, const std::string& dir, const Bundle& b, const Generation& g, const Request& req) {
  make_dirs(dir);
  const int64_t L = b.max_length, D = b.latent_channels, T = b.latent_length;
  const int64_t C = int64_t(g.global_cond.size());
  write_npy_i32(out.tmp(dir + "/token_ids.npy"), {1, L}, g.tokens.ids.data());
  write_npy_i32(out.tmp(dir + "/attention_mask.npy"), {1, L}, g.tokens.mask.data());
  write_npy_f32(out.tmp(dir + "/cross_attn_cond.npy"), {1, L + 1, C}, g.cross_attn_cond.data());
  write_npy_f32(out.tmp(dir + "/global_cond.npy"), {1, C}, g.global_cond.data());
  for (size_t k = 0; k < g.latents.size(); ++k) {
    write_npy_f32(out.tmp(dir + "/latents_step" + std::to_string(k) + ".npy"), {1, D, T}, g.latents[k].data());
  }
  write_npy_f32(out.tmp(dir + "/audio.npy"), {b.channels, g.frames}, g.audio.data());
  write_npy_f32(out.tmp(dir + "/noise.npy"), {b.steps, D, T}, g.noise.data());
  if (g.audio_to_audio) {
    write_npy_f32(out.tmp(dir + "/init_audio.npy"), {b.channels, b.init_audio_length()}, req.init_audio.data());
    write_npy_f32(out.tmp(dir + "/init_latents.npy"), {1, D, T}, g.init_latents.data());
    write_npy_f32(out.tmp(dir + "/vae_noise.npy"), {1, D, T}, g.vae_noise.data());
  }
}

int run(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  const auto load_start = std::chrono::steady_clock::now();
  Bundle bundle = load_bundle(args.bundle);
  const bool a2a = !args.init_audio.empty();
  if (a2a && !bundle.has_encoder()) throw InputError(kNoEncoder);
  std::vector<std::pair<std::string, std::string>> inputs = {
      {"the manifest", bundle.dir + "/manifest.json"}, {"the tokenizer", bundle.tokenizer_path},
      {"the text encoder", bundle.text_encoder.path}, {"the DiT", bundle.dit.path}, {"the decoder", bundle.decoder.path}};
  if (bundle.has_encoder()) inputs.push_back({"the encoder", bundle.encoder.path});
  if (!args.noise.empty()) inputs.push_back({"--noise", args.noise});
  if (a2a) inputs.push_back({"--init-audio", args.init_audio});
  if (!args.vae_noise.empty()) inputs.push_back({"--vae-noise", args.vae_noise});
  check_output(args.output, inputs);
  check_seconds(bundle, args.seconds);
  Request req;
  req.prompt = args.prompt;
  req.seconds = args.seconds;
  req.seed = args.seed;
  req.keep_intermediates = !args.dump.empty();
  if (!args.noise.empty()) {
    req.noise = read_noise_file("--noise", args.noise, {bundle.steps, bundle.latent_channels, bundle.latent_length},
                                "steps, latent channels, latent length");
  }
  std::vector<std::string> notes;
  if (a2a) {
    req.init_noise_level = args.level;
    if (!args.vae_noise.empty()) {
      req.vae_noise = read_noise_file("--vae-noise", args.vae_noise, {1, bundle.latent_channels, bundle.latent_length},
                                      "1, latent channels, latent length");
    }
    InitAudio prepared = prepare_init_audio(read_wav(args.init_audio, "--init-audio " + args.init_audio), bundle.sample_rate,
                                            bundle.channels, bundle.init_audio_length());
    req.init_audio = std::move(prepared.planar);
    notes = std::move(prepared.notes);
  }
  // The prompt's length is checked before any model is loaded (a tokenizer of its own: spiece.model loads in ms).
  Tokenizer(bundle.tokenizer_path, bundle.max_length, bundle.eos_id, bundle.pad_id).fit(args.prompt, args.truncate_prompt);
  WeightCache cache;
  cache.enabled = !args.no_weight_cache;
  cache.verbose = g_verbose;
  if (cache.enabled) {
    cache.dir = args.weight_cache.empty() ? default_weight_cache_dir() : args.weight_cache;
    while (cache.dir.size() > 1 && cache.dir.back() == '/') cache.dir.pop_back();
    const bool from_env = args.weight_cache.empty() && std::getenv("EDGEGEN_WEIGHT_CACHE") && *std::getenv("EDGEGEN_WEIGHT_CACHE");
    prepare_weight_cache_dir(cache, args.weight_cache.empty() ? (from_env ? "EDGEGEN_WEIGHT_CACHE" : "the default --weight-cache")
                                                              : "--weight-cache");
  }
  // Notes only once every input is accepted, so a refused run prints its one error line and nothing else.
  for (const std::string& note : notes) std::fprintf(stderr, "edgegen-runner: note: %s\n", note.c_str());
  const int threads = args.threads > 0 ? args.threads : bundle.target_threads;
  Pipeline pipeline(std::move(bundle), threads, a2a, cache);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();

  Generation g = pipeline.generate(req);
  if (g.tokens.truncated) {  // only with --truncate-prompt: fit() refused it otherwise
    std::fprintf(stderr, "edgegen-runner: warning: the prompt is %d tokens and this model takes at most %d (EOS included); kept its first %d tokens (--truncate-prompt)\n",
                 g.tokens.count, pipeline.bundle().max_length, pipeline.bundle().max_length - 1);
  }
  const Bundle& b = pipeline.bundle();
  Outputs out;
  write_wav_f32(out.tmp(args.output), g.audio, b.channels, g.frames, b.sample_rate);
  if (!args.dump.empty()) write_dumps(out, args.dump, b, g, req);
  out.commit();

  std::fputs(report_text(b, g, load_s, pipeline.threads(), pipeline.weight_cache()).c_str(), stdout);
  std::printf("wrote %s (%d ch, %lld frames, %d Hz float32)\n", args.output.c_str(), b.channels, (long long)g.frames, b.sample_rate);
  std::printf("%s\n", report_json(b, g, load_s, pipeline.threads(), pipeline.weight_cache()).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  executorch::runtime::register_pal(executorch::runtime::PalImpl::create(emit_et_log, __FILE__));
  try {
    return run(argc, argv);
  } catch (const edgegen::InputError& e) {
    std::fprintf(stderr, "edgegen-runner: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgegen-runner: error: %s\n", e.what());
    return 1;
  }
}
