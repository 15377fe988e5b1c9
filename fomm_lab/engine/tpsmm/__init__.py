"""The Thin-Plate Spline Motion Model family (Zhao & Zhang, CVPR 2022): its config layout (:mod:`.config`),
checkpoint reading (:mod:`.checkpoint`) and :class:`~.model.TpsmmModel` / :func:`~.model.load_tpsmm`
(:mod:`.model`). The networks are in :mod:`fomm_lab.engine.nets.tpsmm`."""
