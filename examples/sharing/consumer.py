"""Python consumer, run as a program in the space: reads the C producer's
"samples" as a numpy array in place, changes it, and frees it.

usage (inside a space only): python consumer.py
"""
import os

import numpy

import sameprocess

view = sameprocess.wait_for("samples", timeout=10)
samples = numpy.frombuffer(view, dtype=numpy.float64)  # no copy: the C program's memory
print(f"consumer (pid {os.getpid()}): {samples.size} samples at {samples.ctypes.data:#x}, "
      f"mean {samples.mean():.4f}, min {samples.min():.4f}, max {samples.max():.4f}")
samples -= samples.mean()  # in place, in the shared heap
print(f"consumer: centred in place, mean now {samples.mean():.2e}")
del samples
sameprocess.unpublish("samples")
sameprocess.free(view)  # the producer exited long ago; any program may free its blocks
view.release()
print("consumer: unpublished and freed")
