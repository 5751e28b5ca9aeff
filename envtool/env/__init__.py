"""Python execution environments: interpreter discovery, prefixes, packing (issue #3)."""
