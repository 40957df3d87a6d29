"""edgegen: Stable Audio Open Small, from checkpoint to phone.

    import edgegen
    pipe = edgegen.load_pipeline("random:tiny")
    wav = pipe.generate(edgegen.GenerateRequest("a dog barking", seconds=0.5))     # np.float32 [2, n]

`Pipeline` and `load_pipeline` (the PyTorch reference) load on first use, so running a LiteRT bundle
(`edgegen.bundle_pipeline`) never imports torch.
"""

from edgegen.errors import EdgegenError

__version__ = "0.1.0"
__all__ = ["EdgegenError", "GenerateRequest", "Pipeline", "load_pipeline", "__version__"]


def __getattr__(name: str):
    if name in ("Pipeline", "load_pipeline"):
        from edgegen import pipeline

        return getattr(pipeline, name)
    if name == "GenerateRequest":  # numpy only (a bundle's runtime path)
        from edgegen.request import GenerateRequest

        return GenerateRequest
    raise AttributeError(f"module 'edgegen' has no attribute {name!r}")
