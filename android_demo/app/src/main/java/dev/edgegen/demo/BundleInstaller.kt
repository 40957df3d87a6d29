package dev.edgegen.demo

import android.content.Context
import java.io.File

/**
 * Copies the bundle packaged under assets/bundle/ to filesDir/bundle on first start: ExecuTorch loads
 * (mmaps) .pte files from a real path and cannot read them from inside the APK.
 *
 * The copy is redone when the packaged manifest.json differs from the installed one (new APK, new bundle);
 * files are written under a temporary directory that is renamed into place only when complete.
 */
object BundleInstaller {
    private const val ASSET_DIR = "bundle"

    fun install(context: Context): File {
        val target = File(context.filesDir, ASSET_DIR)
        val packaged = context.assets.open("$ASSET_DIR/manifest.json").use { it.readBytes() }
        val installed = File(target, "manifest.json")
        if (installed.isFile && installed.readBytes().contentEquals(packaged)) return target

        val staging = File(context.filesDir, "$ASSET_DIR.tmp").apply { deleteRecursively(); mkdirs() }
        val names = context.assets.list(ASSET_DIR).orEmpty()
        require(names.contains("manifest.json")) { "assets/$ASSET_DIR has no manifest.json; copy an `edgegen export` bundle there" }
        for (name in names) {
            context.assets.open("$ASSET_DIR/$name").use { input ->
                File(staging, name).outputStream().use { output -> input.copyTo(output, 1 shl 20) }
            }
        }
        target.deleteRecursively()
        check(staging.renameTo(target)) { "could not move $staging to $target" }
        return target
    }
}
