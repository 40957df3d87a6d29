// edgegen demo: one screen over libedgegen_jni.so (android_demo/runner + src/main/cpp/edgegen_jni.cpp).
//
// Required Gradle properties (gradle.properties or -P):
//   edgegen.executorchDir  `cmake --install` prefix of an arm64-v8a ExecuTorch build (has lib/cmake/ExecuTorch)
//   edgegen.spmDir         static SentencePiece for arm64-v8a (include/, lib/libsentencepiece.a), e.g. the one
//                          `edgegen build-runner --target android-arm64` leaves in ~/.cache/edgegen
// The bundle is packaged from src/main/assets/bundle/ (copy an `edgegen export` directory there).
plugins {
    id("com.android.application") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.1.0"
}

fun requiredProperty(name: String): String =
    (findProperty(name) as String?) ?: throw GradleException("set -P$name=... (see android_demo/README.md)")

android {
    namespace = "dev.edgegen.demo"
    compileSdk = 35
    ndkVersion = "27.2.12479018"

    defaultConfig {
        applicationId = "dev.edgegen.demo"
        minSdk = 28
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        ndk { abiFilters += "arm64-v8a" }
        externalNativeBuild {
            cmake {
                arguments += listOf(
                    "-Dexecutorch_DIR=${requiredProperty("edgegen.executorchDir")}/lib/cmake/ExecuTorch",
                    "-DEDGEGEN_SPM_ROOT=${requiredProperty("edgegen.spmDir")}",
                    "-DANDROID_PLATFORM=android-28",
                    "-DCMAKE_BUILD_TYPE=Release",
                )
            }
        }
    }
    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.31.6"
        }
    }
    // .pte/.tflite files are mmapped from filesDir after the first-start copy; storing them uncompressed makes the copy fast.
    androidResources { noCompress += listOf("pte", "tflite", "model", "json") }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}
