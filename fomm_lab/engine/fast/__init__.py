"""Exact speed rewrites of the engine's networks and the backends that run them: fused blocks and Winograd
convolutions (:mod:`.fuse`), the inference variants per precision (:mod:`.variants`), ONNX export (:mod:`.onnx`)
and OpenVINO (:mod:`.openvino`). The networks as the papers define them are in :mod:`fomm_lab.engine.nets`, which
never imports this package.

This package file imports nothing, so that :mod:`.backends` can be read without loading torch.
"""
