"""The frameworks a bundle may name, the image that serves each, and the images' names.

Pure data and string functions (no Docker SDK): the bundle validator and the API's
contract read it as well as the sandbox.
"""

from __future__ import annotations

from evaluator.config import Config
from evaluator.errors import FrameworkUnsupported

# Manifest framework -> the image that serves it (evaluator/images/<name>/Dockerfile).
# xgboost and lightgbm models are served by the scikit-learn image, which carries both.
IMAGE_FOR_FRAMEWORK = {
    "sklearn": "sklearn",
    "xgboost": "sklearn",
    "lightgbm": "sklearn",
    "onnx": "onnx",
    "pytorch": "pytorch",
    "tensorflow": "tensorflow",
}
FRAMEWORKS = tuple(IMAGE_FOR_FRAMEWORK)
# Every image folder, in build order: the base first.
IMAGES = ("base", "sklearn", "onnx", "pytorch", "tensorflow")


def image_of(framework: str) -> str:
    """Return the image folder that serves a manifest framework."""
    if framework in IMAGES:
        return framework
    try:
        return IMAGE_FOR_FRAMEWORK[framework]
    except KeyError:
        raise FrameworkUnsupported(
            f"framework {framework!r} is not supported; use one of {', '.join(sorted(FRAMEWORKS))}"
        ) from None


def image_name(framework: str, config: Config) -> str:
    """Return the runnable image name, e.g. evaluator-sklearn for xgboost."""
    return f"{config.image_prefix}{image_of(framework)}"
