package dev.edgegen.demo

import java.io.File

/**
 * Kotlin face of libedgegen_jni.so: one loaded bundle (3 artifacts + tokenizer), ExecuTorch or LiteRT as its
 * manifest says (LiteRT needs libLiteRt.so for Android in the APK's native libraries, see android_demo/README.md).
 *
 * `generate` writes a float32 stereo WAV and returns the runner's JSON report (same keys as
 * `edgegen bench`: e2e_s, stages.{load,text_encoder,dit,decoder}, dit_step_s, rtf, ...).
 * Errors arrive as IllegalArgumentException (bad bundle/arguments) or RuntimeException.
 */
class NativeRunner private constructor(private var handle: Long) : AutoCloseable {

    fun generate(prompt: String, seconds: Double, seed: Long, wav: File): String {
        check(handle != 0L) { "NativeRunner is closed" }
        return nativeGenerate(handle, prompt, seconds, seed, wav.absolutePath)
    }

    override fun close() {
        if (handle != 0L) nativeRelease(handle)
        handle = 0L
    }

    companion object {
        init {
            System.loadLibrary("edgegen_jni")
        }

        /** Verifies (sha256) and loads the bundle in [bundleDir]; [threads] <= 0: the manifest's target.threads. */
        fun load(bundleDir: File, threads: Int = 0): NativeRunner = NativeRunner(nativeLoad(bundleDir.absolutePath, threads))

        @JvmStatic private external fun nativeLoad(bundleDir: String, threads: Int): Long
        @JvmStatic private external fun nativeGenerate(handle: Long, prompt: String, seconds: Double, seed: Long, wavPath: String): String
        @JvmStatic private external fun nativeRelease(handle: Long)
    }
}
