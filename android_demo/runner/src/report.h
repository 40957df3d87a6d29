// The one-line JSON benchmark record shared by the CLI and the JNI bridge (same keys as `edgegen bench`):
// {"e2e_s", "peak_rss_mb", "time_to_first_audio_s", "rtf", "stages": {"load", "text_encoder", "dit", "decoder"},
//  "dit_step_s": [...], "threads", "steps", "seconds", "frames", "sample_rate", "init_noise_level", "recipe",
//  "runner": "native", "backend": "executorch"}
// Audio-to-audio adds "encoder" to "stages" (before "text_encoder": it runs first); "init_noise_level" is S, 1 for
// text-to-audio.
#pragma once

#include <string>

#include "pipeline.h"

namespace edgegen {

// rtf = e2e_s / seconds of audio produced; `load_s` is bundle verification + module loading.
std::string report_json(const Bundle& bundle, const Generation& g, double load_s, int threads);

// Human-readable per-stage lines (each ends with '\n').
std::string report_text(const Bundle& bundle, const Generation& g, double load_s, int threads);

}  // namespace edgegen
