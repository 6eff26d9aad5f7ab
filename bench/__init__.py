"""syncd's benchmark: what a sync cycle costs as the work grows. See bench/README.md.

Not part of the installed package; run it from the repository root with `python -m bench`.
"""
