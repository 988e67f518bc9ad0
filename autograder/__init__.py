"""The kit's autograder: sandboxed grading of notebooks against the reference (see DESIGN.md)."""
