"""Pipelines around the commands: the stage runner, the demo, recipe overlays for CPU smoke runs."""
