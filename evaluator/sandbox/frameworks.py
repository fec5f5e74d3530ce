"""The frameworks a bundle may name, and the image that serves each."""

from __future__ import annotations

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
