"""Dramatiq broker, actors and middleware: thin edges over evaluator.evaluation."""
