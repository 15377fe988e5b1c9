"""Training and evaluation of FOMM models on your own videos (paper Sec. 3.3 and Sec. 4).

The stages, in the order a user runs them:

* :mod:`~fomm_lab.train.prepare` -- ``fomm-lab prepare-data``: face crops of raw videos written in the official
  dataset layout (``DIR/train/VIDEO``, ``DIR/test/VIDEO``).
* :mod:`~fomm_lab.train.data` -- that layout read as a dataset of frame pairs (``id_sampling``, ``num_repeats``,
  the official augmentations of :mod:`~fomm_lab.train.augment`).
* :mod:`~fomm_lab.train.trainer` -- ``fomm-lab train``: the losses of the paper (:mod:`~fomm_lab.train.losses`,
  :mod:`~fomm_lab.train.vgg`, :mod:`~fomm_lab.train.transforms`, :mod:`~fomm_lab.train.discriminator`), the official
  optimisers and schedule, checkpoints in the official format, one process or many (:mod:`~fomm_lab.train.distributed`).
  One loop for every family (:mod:`~fomm_lab.train.family`): FOMM (:mod:`~fomm_lab.train.fomm`) and the Thin-Plate
  Spline Motion Model with its AVD second stage (:mod:`~fomm_lab.train.tpsmm`).
* :mod:`~fomm_lab.train.evaluate` -- ``fomm-lab reconstruct``: per-video L1 and AKD on the test videos.
* ``fomm-lab animate-pairs`` (inference, not training) lives in :mod:`fomm_lab.pipeline.pairs`.

Import from the modules; this package file imports nothing (no torch at import time).
"""
