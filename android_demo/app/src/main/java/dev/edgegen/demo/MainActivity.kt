package dev.edgegen.demo

import android.app.Activity
import android.os.Bundle
import android.widget.Button
import android.widget.EditText
import android.widget.SeekBar
import android.widget.TextView
import org.json.JSONObject
import java.io.File
import java.util.concurrent.Executors

/**
 * The demo's only screen: prompt, duration (0.5 s steps up to the bundle's max_seconds), Generate, Play,
 * and the per-stage timings the native runner reports. All native work runs on one background thread.
 */
class MainActivity : Activity() {
    private val worker = Executors.newSingleThreadExecutor()
    private val player = WavPlayer()
    private var runner: NativeRunner? = null
    private var maxSeconds = 11.0
    private var loaded = ""

    private lateinit var prompt: EditText
    private lateinit var secondsBar: SeekBar
    private lateinit var secondsLabel: TextView
    private lateinit var generate: Button
    private lateinit var play: Button
    private lateinit var timings: TextView

    private val wav by lazy { File(filesDir, "last.wav") }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        prompt = findViewById(R.id.prompt)
        secondsBar = findViewById(R.id.seconds)
        secondsLabel = findViewById(R.id.seconds_label)
        generate = findViewById(R.id.generate)
        play = findViewById(R.id.play)
        timings = findViewById(R.id.timings)

        secondsBar.setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(bar: SeekBar, progress: Int, fromUser: Boolean) = showSeconds()
            override fun onStartTrackingTouch(bar: SeekBar) {}
            override fun onStopTrackingTouch(bar: SeekBar) {}
        })
        generate.setOnClickListener { onGenerate() }
        play.setOnClickListener { player.play(wav) }

        worker.execute {
            val result = runCatching {
                val dir = BundleInstaller.install(this)
                // Everything about the bundle comes from its manifest: length, runtime, threads, recipe.
                val manifest = JSONObject(File(dir, "manifest.json").readText())
                maxSeconds = manifest.getDouble("max_seconds")
                val threads = manifest.optJSONObject("target")?.optInt("threads", 0) ?: 0
                loaded = "%s bundle, recipe %s, %d threads, up to %.1f s".format(
                    manifest.getString("backend"), manifest.getJSONObject("recipe").getString("name"), threads, maxSeconds)
                NativeRunner.load(dir, threads)
            }
            runOnUiThread {
                result.onSuccess {
                    runner = it
                    secondsBar.max = maxOf((maxSeconds * 2).toInt() - 1, 0)  // progress p -> (p + 1) * 0.5 s, capped at max_seconds
                    secondsBar.progress = minOf(9, secondsBar.max)
                    showSeconds()
                    generate.isEnabled = true
                    timings.text = "Loaded: $loaded"
                }.onFailure { timings.text = "Could not load the bundle:\n${it.message}" }
            }
        }
    }

    private fun seconds(): Double = minOf((secondsBar.progress + 1) * 0.5, maxSeconds)

    private fun showSeconds() {
        secondsLabel.text = "Duration: %.1f s".format(seconds())
    }

    private fun onGenerate() {
        val r = runner ?: return
        val text = prompt.text.toString()
        val secs = seconds()
        generate.isEnabled = false
        play.isEnabled = false
        timings.text = "Generating…"
        worker.execute {
            val result = runCatching { JSONObject(r.generate(text, secs, System.nanoTime(), wav)) }
            runOnUiThread {
                generate.isEnabled = true
                result.onSuccess {
                    play.isEnabled = true
                    timings.text = format(it)
                }.onFailure { timings.text = "Generation failed:\n${it.message}" }
            }
        }
    }

    private fun format(report: JSONObject): String {
        val stages = report.getJSONObject("stages")
        val steps = report.getJSONArray("dit_step_s")
        return buildString {
            appendLine("load          %7.3f s".format(stages.getDouble("load")))
            appendLine("text_encoder  %7.3f s".format(stages.getDouble("text_encoder")))
            appendLine("dit           %7.3f s  (%d steps, %.3f s/step)".format(stages.getDouble("dit"), steps.length(), stages.getDouble("dit") / steps.length()))
            appendLine("decoder       %7.3f s".format(stages.getDouble("decoder")))
            appendLine("total         %7.3f s  (rtf %.2f, %d threads)".format(report.getDouble("e2e_s"), report.getDouble("rtf"), report.getInt("threads")))
            append("peak RSS      %7.1f MB".format(report.getDouble("peak_rss_mb")))
        }
    }

    override fun onDestroy() {
        player.stop()
        worker.execute { runner?.close() }
        worker.shutdown()
        super.onDestroy()
    }
}
