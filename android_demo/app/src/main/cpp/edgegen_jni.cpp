// JNI bridge: dev.edgegen.demo.NativeRunner <-> edgegen::Pipeline (android_demo/runner).
//
//   nativeLoad(bundleDir: String, threads: Int): Long        verifies + loads the bundle (ExecuTorch or LiteRT, as its
//                                                            manifest says; threads <= 0: the manifest's target.threads)
//   nativeGenerate(handle, prompt, seconds, seed, wavPath): String   writes a float32 WAV, returns the JSON report
//   nativeRelease(handle)
//
// InputError -> java.lang.IllegalArgumentException, anything else -> java.lang.RuntimeException, with the
// runner's one-sentence message. Compiled on the host in CI against the JDK's jni.h (tests/test_runner.py).
#include <jni.h>

#include <chrono>
#include <memory>
#include <string>

#include "errors.h"
#include "pipeline.h"
#include "report.h"
#include "wav.h"

namespace {

struct Handle {
  std::unique_ptr<edgegen::Pipeline> pipeline;
  double load_s = 0.0;
};

std::string to_string(JNIEnv* env, jstring s) {
  if (s == nullptr) return "";
  const char* chars = env->GetStringUTFChars(s, nullptr);
  std::string out(chars ? chars : "");
  if (chars) env->ReleaseStringUTFChars(s, chars);
  return out;
}

void throw_java(JNIEnv* env, const char* cls, const std::string& message) {
  jclass c = env->FindClass(cls);
  if (c != nullptr) env->ThrowNew(c, message.c_str());
}

// Runs `fn`, translating C++ exceptions into pending Java exceptions; returns `fallback` on error.
template <typename T, typename Fn>
T guarded(JNIEnv* env, T fallback, Fn fn) {
  try {
    return fn();
  } catch (const edgegen::InputError& e) {
    throw_java(env, "java/lang/IllegalArgumentException", e.what());
  } catch (const std::exception& e) {
    throw_java(env, "java/lang/RuntimeException", e.what());
  }
  return fallback;
}

}  // namespace

extern "C" JNIEXPORT jlong JNICALL Java_dev_edgegen_demo_NativeRunner_nativeLoad(JNIEnv* env, jclass, jstring bundle_dir, jint threads) {
  return guarded<jlong>(env, 0, [&] {
    const auto start = std::chrono::steady_clock::now();
    auto handle = std::make_unique<Handle>();
    edgegen::Bundle bundle = edgegen::load_bundle(to_string(env, bundle_dir));
    const int n = threads > 0 ? int(threads) : bundle.target_threads;
    handle->pipeline = std::make_unique<edgegen::Pipeline>(std::move(bundle), n);
    handle->load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return reinterpret_cast<jlong>(handle.release());
  });
}

extern "C" JNIEXPORT jstring JNICALL Java_dev_edgegen_demo_NativeRunner_nativeGenerate(JNIEnv* env, jclass, jlong ptr, jstring prompt,
                                                                                       jdouble seconds, jlong seed, jstring wav_path) {
  return guarded<jstring>(env, nullptr, [&] {
    auto* handle = reinterpret_cast<Handle*>(ptr);
    if (handle == nullptr) throw edgegen::InputError("NativeRunner was released; call load() again");
    edgegen::Request request;
    request.prompt = to_string(env, prompt);
    request.seconds = double(seconds);
    request.seed = static_cast<uint64_t>(seed);
    edgegen::Generation g = handle->pipeline->generate(request);
    const edgegen::Bundle& b = handle->pipeline->bundle();
    edgegen::write_wav_f32(to_string(env, wav_path), g.audio, b.channels, g.frames, b.sample_rate);
    std::string json = edgegen::report_json(b, g, handle->load_s, handle->pipeline->threads());
    return env->NewStringUTF(json.c_str());
  });
}

extern "C" JNIEXPORT void JNICALL Java_dev_edgegen_demo_NativeRunner_nativeRelease(JNIEnv*, jclass, jlong ptr) {
  delete reinterpret_cast<Handle*>(ptr);
}
