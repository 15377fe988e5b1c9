"""The engine: FOMM networks, configs, checkpoints, keypoints and the streaming Animator.

Import from the modules (``fomm_lab.engine.animator`` ...) or from ``fomm_lab``; this package file imports
nothing, so that ``fomm_lab.engine.config`` can be read without loading torch.
"""
