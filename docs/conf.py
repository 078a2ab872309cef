"""Sphinx configuration for the prefork documentation."""

project = "prefork"
author = "the prefork developers"
copyright = "2026, the prefork developers"
release = "0.1.0"

extensions = []
# No intersphinx: the docs build offline, so standard-library names are written
# as literals and every cross-reference points inside this project.
nitpicky = True
default_role = "literal"
html_theme = "alabaster"
exclude_patterns = ["_build"]
