package dev.edgegen.demo

import android.media.AudioAttributes
import android.media.AudioFormat
import android.media.AudioTrack
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** Plays the runner's IEEE-float WAV (format tag 3, interleaved) through an AudioTrack in float mode. */
class WavPlayer {
    private var track: AudioTrack? = null

    fun play(wav: File) {
        stop()
        val bytes = ByteBuffer.wrap(wav.readBytes()).order(ByteOrder.LITTLE_ENDIAN)
        require(bytes.getInt(0) == 0x46464952 && bytes.getInt(8) == 0x45564157) { "$wav is not a RIFF/WAVE file" }
        var pos = 12
        var channels = 0
        var rate = 0
        var samples: FloatArray? = null
        while (pos + 8 <= bytes.limit()) {  // walk the chunks: fmt , fact, data
            val id = bytes.getInt(pos)
            val size = bytes.getInt(pos + 4)
            if (id == 0x20746d66) {  // "fmt "
                require(bytes.getShort(pos + 8).toInt() == 3) { "$wav is not float32 PCM" }
                channels = bytes.getShort(pos + 10).toInt()
                rate = bytes.getInt(pos + 12)
            } else if (id == 0x61746164) {  // "data"
                samples = FloatArray(size / 4).also { bytes.position(pos + 8); bytes.asFloatBuffer().get(it) }
            }
            pos += 8 + size + (size and 1)
        }
        val pcm = requireNotNull(samples) { "$wav has no data chunk" }
        val mask = if (channels == 2) AudioFormat.CHANNEL_OUT_STEREO else AudioFormat.CHANNEL_OUT_MONO
        val t = AudioTrack.Builder()
            .setAudioAttributes(AudioAttributes.Builder().setUsage(AudioAttributes.USAGE_MEDIA).build())
            .setAudioFormat(AudioFormat.Builder().setEncoding(AudioFormat.ENCODING_PCM_FLOAT).setSampleRate(rate).setChannelMask(mask).build())
            .setTransferMode(AudioTrack.MODE_STATIC)
            .setBufferSizeInBytes(pcm.size * 4)
            .build()
        t.write(pcm, 0, pcm.size, AudioTrack.WRITE_BLOCKING)
        t.play()
        track = t
    }

    fun stop() {
        track?.run { stop(); release() }
        track = null
    }
}
