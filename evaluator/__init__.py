"""Serverless-style batch evaluator for ML models."""

__version__ = "0.1.0"
