"""Measurement (`sagaline bench`, `bench relay`, `chaos`) and profiling, on the lab's stack.
Not in the image."""
