"""Exporters. ``tflite`` holds the int8 conversion and the TFLM runner they share."""
