"""Performance a kernel author can trust: what a timing measures, and how far it is from the hardware.

timing.py    the device-time mode (torch.profiler device activity; CUDA graph replay) beside the
             call-time latency of `devices.time_fn`, and the last-level-cache flush between repetitions
peaks.py     the device's measured peaks (copy bandwidth, GEMM FLOP/s per dtype), cached per device
roofline.py  roofline_pct of a case from its bytes/flops model and the peaks; memory- or compute-bound
measure.py   the timing stage of one case (both modes, both adapters, --repeat, cache state)
figures.py   per-cell figures: geomeans in both modes, fast_p, roofline distribution, noise
"""
