"""edgegen: Stable Audio Open Small, from checkpoint to phone.

    import edgegen
    pipe = edgegen.load_pipeline("random:tiny")
    wav = pipe.generate("a dog barking", seconds_total=0.5)     # np.float32 [2, n]
"""

from edgegen.errors import EdgegenError
from edgegen.pipeline import Pipeline, load_pipeline

__version__ = "0.1.0"
__all__ = ["EdgegenError", "Pipeline", "load_pipeline", "__version__"]
