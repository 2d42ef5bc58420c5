"""open-constitution export step: Hugging Face decoder folder -> one ONNX graph + manifest + goldens."""

__version__ = "0.1.0"
