"""Is a difference real? The statistics (`statistics`), the report folder (`report`), its HTML page (`page`) and
pictures (`plots`) of `tools compare`."""
