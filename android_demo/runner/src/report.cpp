// See report.h.
#include "report.h"

#include <cctype>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include "json.h"

namespace edgegen {
namespace {

double audio_seconds(const Bundle& b, const Generation& g) { return double(g.frames) / double(b.sample_rate); }

std::string cache_components(const std::vector<std::pair<std::string, CacheUse>>& uses) {
  std::string out = "{";
  for (size_t i = 0; i < uses.size(); ++i) {
    out += (i ? ", " : "") + json_quote(uses[i].first) + ": " + json_quote(cache_use_name(uses[i].second));
  }
  return out + "}";
}

// The int8 dot-product features of this CPU, named as `edgegen bench` names them (edgegen/bench.py
// INT8_DOT_PRODUCT), from /proc/cpuinfo's "flags" (x86) or "Features" (Arm) lines; empty where there are none.
std::string int8_dot_product_json() {
  static const char* const kNames[] = {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sme2"};
  std::set<std::string> have;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key;
    for (char c : line.substr(0, colon)) {
      if (!std::isspace(static_cast<unsigned char>(c))) key += char(std::tolower(static_cast<unsigned char>(c)));
    }
    if (key != "flags" && key != "features") continue;
    std::istringstream words(line.substr(colon + 1));
    for (std::string w; words >> w;) have.insert(w);
  }
  std::string out = "[";
  for (const char* name : kNames) {
    if (have.count(name)) out += (out.size() > 1 ? ", " : "") + json_quote(name);
  }
  return out + "]";
}

}  // namespace

std::string report_json(const Bundle& b, const Generation& g, double load_s, int threads,
                        const std::vector<std::pair<std::string, CacheUse>>& weight_cache) {
  const double dit_s = std::accumulate(g.dit_step_s.begin(), g.dit_step_s.end(), 0.0);
  std::string steps = "[";
  for (size_t i = 0; i < g.dit_step_s.size(); ++i) steps += (i ? ", " : "") + json_number(g.dit_step_s[i]);
  steps += "]";
  return std::string("{") +
         "\"e2e_s\": " + json_number(g.e2e_s) +
         ", \"peak_rss_mb\": " + json_number(peak_rss_mb()) +
         ", \"weight_cache\": " + json_quote(cache_use_name(summarize(weight_cache))) +
         ", \"weight_cache_components\": " + cache_components(weight_cache) +
         ", \"time_to_first_audio_s\": " + json_number(g.time_to_first_audio_s) +
         ", \"rtf\": " + json_number(g.e2e_s / audio_seconds(b, g)) +
         ", \"stages\": {\"load\": " + json_number(load_s) +
         (g.audio_to_audio ? ", \"encoder\": " + json_number(g.encoder_s) : std::string()) +  // audio-to-audio only
         ", \"text_encoder\": " + json_number(g.text_encoder_s) +
         ", \"dit\": " + json_number(dit_s) + ", \"decoder\": " + json_number(g.decoder_s) + "}" +
         ", \"dit_step_s\": " + steps +
         ", \"decoder_calls\": " + std::to_string(g.decoder_calls) +
         ", \"decoded_latent_frames\": " + std::to_string(g.decoded_latent_frames) +
         ", \"threads\": " + std::to_string(threads) +
         ", \"int8_dot_product\": " + int8_dot_product_json() +
         ", \"precision\": {\"text_encoder\": " + json_quote(b.text_encoder.precision) +
         ", \"dit\": " + json_quote(b.dit.precision) + ", \"decoder\": " + json_quote(b.decoder.precision) +
         (g.audio_to_audio ? ", \"encoder\": " + json_quote(b.encoder.precision) : std::string()) + "}" +
         ", \"steps\": " + std::to_string(b.steps) +
         ", \"seconds\": " + json_number(g.seconds) +
         ", \"frames\": " + std::to_string(g.frames) +
         ", \"sample_rate\": " + std::to_string(b.sample_rate) +
         ", \"prompt_tokens\": " + std::to_string(g.tokens.count) +
         ", \"prompt_truncated\": " + (g.tokens.truncated ? "true" : "false") +
         ", \"init_noise_level\": " + json_number(g.init_noise_level) +
         ", \"recipe\": " + json_quote(b.recipe) +
         ", \"runner\": \"native\", \"backend\": " + json_quote(b.backend) + "}";
}

std::string report_text(const Bundle& b, const Generation& g, double load_s, int threads,
                        const std::vector<std::pair<std::string, CacheUse>>& weight_cache) {
  const double dit_s = std::accumulate(g.dit_step_s.begin(), g.dit_step_s.end(), 0.0);
  char enc[64] = "";
  if (g.audio_to_audio) std::snprintf(enc, sizeof(enc), "encoder       %9.4f s  (S = %g)\n", g.encoder_s, g.init_noise_level);
  char buf[640];
  std::snprintf(buf, sizeof(buf),
                "load          %9.4f s\n"
                "%s"
                "text_encoder  %9.4f s\n"
                "dit           %9.4f s  (%d steps, %.4f s/step)\n"
                "decoder       %9.4f s  (%d call%s)\n"
                "first audio   %9.4f s\n"
                "e2e           %9.4f s  (rtf %.3f, %d threads, %.3f s of audio)\n",
                load_s, enc, g.text_encoder_s, dit_s, b.steps, dit_s / b.steps, g.decoder_s, g.decoder_calls,
                g.decoder_calls == 1 ? "" : "s, streamed", g.time_to_first_audio_s, g.e2e_s,
                g.e2e_s / audio_seconds(b, g), threads, audio_seconds(b, g));
  std::string text = buf;
  text += std::string("weight cache  ") + cache_use_name(summarize(weight_cache));
  for (size_t i = 0; i < weight_cache.size(); ++i) {
    text += (i ? ", " : " (") + weight_cache[i].first + " " + cache_use_name(weight_cache[i].second);
  }
  return text + (weight_cache.empty() ? "\n" : ")\n");
}

}  // namespace edgegen
