"""The `tools` CLI and the runtime pieces behind it (tiny model builder, inference)."""
