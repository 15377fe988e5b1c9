"""The pipeline: photo -> face crop(s) -> driving crop(s) -> animation -> outputs, run by one session.

:class:`~fomm_lab.pipeline.session.Animation` is the only route from a job (:mod:`.job`) to its outputs; the
CLI, the notebook, the live widgets and ``animate-pairs`` all call it. Its stages: :mod:`.check` (everything
that needs no model), :mod:`.prepare` (crops, reference frame), :mod:`.write` (outputs); :mod:`.pairs` runs a
CSV of pairs through it. :class:`~fomm_lab.pipeline.swap.Swap` runs a face swap job (:mod:`.swap`) through the
same stages. Nothing here imports torch until a model is needed.
"""

from .check import CheckedJob, check_job, model_config
from .job import AnimateJob, CropOptions, MotionOptions, OutputOptions, RuntimeOptions
from .prepare import DrivingPlan, Prepared, SourcePlan
from .session import Animation, run_job
from .swap import FaceSwapOptions, FaceSwapResult, Swap, SwapJob, run_swap_job
from .write import AnimateResult

__all__ = [
    "AnimateJob",
    "AnimateResult",
    "Animation",
    "CheckedJob",
    "CropOptions",
    "DrivingPlan",
    "FaceSwapOptions",
    "FaceSwapResult",
    "MotionOptions",
    "OutputOptions",
    "Prepared",
    "RuntimeOptions",
    "SourcePlan",
    "Swap",
    "SwapJob",
    "check_job",
    "model_config",
    "run_job",
    "run_swap_job",
]
