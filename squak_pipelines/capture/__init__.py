"""CDR capture: the drop folder where switches deliver their files."""
