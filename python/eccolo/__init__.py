"""eccolo: explain transformer language models as Ecco does, in C and CUDA.

``import eccolo as ecco`` runs an Ecco 0.1.2 notebook::

    import eccolo as ecco
    lm = ecco.from_pretrained('distilgpt2', activations=True)
    output = lm.generate(text, generate=35, attribution=['grad_x_input'])
    output.primary_attributions()
    nmf = output.run_nmf(n_components=10)
    nmf.explore()

Results are numpy arrays (views of the library's memory), views are the
self-contained pages of ``eccolo report`` shown inline, and runs save to and
load from the command line's run directories. The neuron-level analyses
(CCA, SVCCA, PWCCA, CKA) will live in ``eccolo.analysis``.
"""
from . import _lib
from ._lib import (DeviceError, Error, FileError, FileFormatError, InputError, OutOfMemoryError,
                   UnsupportedError)
from .lm import LM, demo_model, from_pretrained
from .output import NMF, OutputSeq, load
from .views import View

__version__ = _lib.text(_lib.lib.ecc_version())


def build_info():
    """One line: the library's build type and whether (for which GPUs) the CUDA backend is in."""
    return _lib.text(_lib.lib.ecc_build_info())


__all__ = ["from_pretrained", "load", "LM", "OutputSeq", "NMF", "View", "demo_model", "build_info", "Error",
           "InputError", "FileFormatError", "FileError", "OutOfMemoryError", "UnsupportedError", "DeviceError"]
