// The one-line JSON benchmark record shared by the CLI and the JNI bridge (same keys as `edgegen bench`):
// {"e2e_s", "peak_rss_mb", "time_to_first_audio_s", "rtf", "stages": {"load", "text_encoder", "dit", "decoder"},
//  "dit_step_s": [...], "decoder_calls", "decoded_latent_frames", "threads", "steps", "seconds", "frames",
//  "sample_rate", "init_noise_level", "recipe", "runner": "native", "backend": "executorch"}
// Audio-to-audio adds "encoder" to "stages" (before "text_encoder": it runs first); "init_noise_level" is S, 1 for
// text-to-audio.
// "int8_dot_product": the CPU's int8 dot-product features from /proc/cpuinfo, as `edgegen bench` names them
// (e.g. ["avx512_vnni"], ["asimddp", "i8mm"]; [] where int8 kernels are not faster than fp32).
// "precision": each artifact's float precision as it ran: {"text_encoder": "fp32", "dit": "fp32", "decoder":
// "fp16"} ("fp16" where the profile asks for it and the CPU has fp16 arithmetic, or an ExecuTorch artifact exported
// in half).
// "weight_cache": "hit" | "built" | "off" sums up the XNNPACK weight cache over the loaded artifacts (weight_cache.h
// summarize: "built" if any was packed into a new cache file, else "hit" if any was mapped from one, else "off"), and
// "weight_cache_components" gives each artifact's: {"text_encoder": "hit", "dit": "hit", "decoder": "hit"}.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "pipeline.h"

namespace edgegen {

// rtf = e2e_s / seconds of audio produced; `load_s` is bundle verification + module loading; `weight_cache`:
// Pipeline::weight_cache() (empty: "off").
std::string report_json(const Bundle& bundle, const Generation& g, double load_s, int threads,
                        const std::vector<std::pair<std::string, CacheUse>>& weight_cache = {});

// Human-readable per-stage lines (each ends with '\n').
std::string report_text(const Bundle& bundle, const Generation& g, double load_s, int threads,
                        const std::vector<std::pair<std::string, CacheUse>>& weight_cache = {});

}  // namespace edgegen
