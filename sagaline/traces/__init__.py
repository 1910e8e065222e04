"""Receiving and printing traces: an OTLP receiver for local runs, span trees and saga timelines.
Not in the image."""
