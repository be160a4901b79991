"""The C library through ctypes: loading libeccolo, the declarations of the
functions used (include/eccolo.h), errors as Python exceptions, and tensors
as numpy arrays that view the library's memory.

Nothing here knows the layout of ecc_config or ecc_options: options are set
by name (ecc_options_set) and sizes read through functions, so that the C
structs can change without breaking the binding. The two structs mirrored
below (ecc_tensor_info, ecc_nmf_request, ecc_request) belong to this API.
"""
import ctypes
import os

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join(_HERE, "_native")  # what pip install puts beside the package


# ---- errors -----------------------------------------------------------------------

class Error(Exception):
    """An error of the eccolo library; ``status`` is its ecc_status code.
    Each also derives from the builtin exception a Python user expects."""
    status = 0


class InputError(Error, ValueError):
    """Bad input: arguments, prompt, options (ECC_ERR_INPUT)."""
    status = 1


class FileFormatError(Error, OSError):
    """A file is malformed, truncated or inconsistent (ECC_ERR_FORMAT)."""
    status = 2


class FileError(Error, OSError):
    """A file could not be opened, read or written (ECC_ERR_IO)."""
    status = 3


class OutOfMemoryError(Error, MemoryError):
    """An allocation failed or would exceed a limit; the message says what
    would fit (ECC_ERR_NOMEM)."""
    status = 4


class UnsupportedError(Error, ValueError):
    """Valid, but not something eccolo does (yet) (ECC_ERR_UNSUPPORTED)."""
    status = 5


class DeviceError(Error, RuntimeError):
    """The requested device is missing or failed (ECC_ERR_DEVICE)."""
    status = 6


_ERRORS = {c.status: c for c in (InputError, FileFormatError, FileError, OutOfMemoryError, UnsupportedError,
                                 DeviceError)}


def error(status, message=None):
    """The exception for a failed call, with the library's one-line message."""
    if message is None:
        message = (lib.ecc_last_error() or b"").decode("utf-8", "replace")
    return _ERRORS.get(status, Error)(message)


def check(status):
    if status != 0:
        raise error(status)


def check_path(status, path):
    """check() for a call given PATH: when the library calls it bad input
    because PATH does not exist, the error is a FileError (an OSError), with
    the same message."""
    if status == InputError.status and path is not None and not os.path.exists(path):
        raise FileError((lib.ecc_last_error() or b"").decode("utf-8", "replace"))
    check(status)


# ---- loading ------------------------------------------------------------------------

def _candidates():
    env = os.environ.get("ECCOLO_LIBRARY")
    if env:
        yield env
    yield os.path.join(NATIVE, "libeccolo.so")
    # a clone: python/eccolo beside build/ (tools/setup.sh) or build-dev/
    root = os.path.dirname(os.path.dirname(_HERE))
    for b in ("build", "build-dev"):
        yield os.path.join(root, b, "libeccolo.so")


def _load():
    tried = []
    for path in _candidates():
        if os.path.exists(path):
            return ctypes.CDLL(path), path
        tried.append(path)
    raise ImportError("eccolo: the C library libeccolo.so was not found (looked at %s): install the package with "
                      "'pip install .' from a clone, or set ECCOLO_LIBRARY" % ", ".join(tried))


lib, LIBRARY_PATH = _load()

P = ctypes.c_void_p
S = ctypes.c_char_p
I = ctypes.c_int
I32P = ctypes.POINTER(ctypes.c_int32)


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", S), ("dtype", S), ("ndim", I), ("shape", ctypes.c_int64 * 8), ("data", P),
                ("nbytes", ctypes.c_size_t)]


class NmfRequest(ctypes.Structure):
    _fields_ = [("n_components", I), ("layer_from", I), ("layer_to", I), ("init", S), ("solver", S),
                ("max_iter", I), ("tol", ctypes.c_double), ("seed", ctypes.c_uint64), ("device", I),
                ("threads", I)]


class Request(ctypes.Structure):
    _fields_ = [("prompt", I32P), ("n_prompt", I), ("continuation", I32P), ("n_continuation", I),
                ("max_new_tokens", I)]


def _declare(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_declare("ecc_last_error", S)
_declare("ecc_version", S)
_declare("ecc_build_info", S)
_declare("ecc_free", None, P)
_declare("ecc_default_model", S)
_declare("ecc_model_open", I, ctypes.POINTER(P), S)
_declare("ecc_model_close", None, P)
_declare("ecc_model_dir", S, P)
_declare("ecc_model_id", S, P)
for _n in ("n_layer", "n_head", "n_embd", "n_inner", "n_positions", "vocab_size", "n_tokens"):
    _declare("ecc_model_" + _n, I, P)
_declare("ecc_model_eos_token_id", ctypes.c_int32, P)
_declare("ecc_model_type", S, P)
_declare("ecc_model_dtype", S, P)
_declare("ecc_token_bytes", ctypes.POINTER(ctypes.c_uint8), P, ctypes.c_int32, ctypes.POINTER(ctypes.c_size_t))
_declare("ecc_tokenize", I, P, S, ctypes.c_size_t, ctypes.POINTER(I32P), ctypes.POINTER(I))
_declare("ecc_detokenize", I, P, I32P, I, ctypes.POINTER(P))
_declare("ecc_options_new", P)
_declare("ecc_options_free", None, P)
_declare("ecc_options_set", I, P, S, S)
_declare("ecc_options_set_ids", I, P, S, I32P, I)
_declare("ecc_generate", I, ctypes.POINTER(P), P, I32P, I, P)
_declare("ecc_generate_batch", I, ctypes.POINTER(P), ctypes.POINTER(P), P, ctypes.POINTER(Request), I, P)
_declare("ecc_run_free", None, P)
_declare("ecc_run_n_tokens", I, P)
_declare("ecc_run_n_input", I, P)
_declare("ecc_run_device", S, P)
_declare("ecc_run_notice", S, P)
_declare("ecc_run_add_timing", None, P, S, ctypes.c_double)
_declare("ecc_run_describe", I, P, P, S)
_declare("ecc_run_json", S, P)
_declare("ecc_run_n_tensors", I, P)
_declare("ecc_run_tensor_at", I, P, I, ctypes.POINTER(TensorInfo))
_declare("ecc_run_find_tensor", I, P, S, ctypes.POINTER(TensorInfo))
_declare("ecc_run_merge", I, P, P)
_declare("ecc_run_save", I, P, S)
_declare("ecc_run_load", I, ctypes.POINTER(P), S)
_declare("ecc_nmf_request_default", None, ctypes.POINTER(NmfRequest))
_declare("ecc_nmf_compute", I, ctypes.POINTER(P), ctypes.POINTER(P), I, ctypes.POINTER(NmfRequest))
_declare("ecc_factors_tensor", I, P, S, ctypes.POINTER(TensorInfo))
_declare("ecc_factors_meta", S, P, S)
_declare("ecc_factors_save", I, P, S)
_declare("ecc_factors_load", I, ctypes.POINTER(P), S)
_declare("ecc_factors_free", None, P)
_declare("ecc_run_report_html", I, ctypes.POINTER(P), ctypes.POINTER(ctypes.c_size_t), P, P, S)

DEVICES = {"auto": 0, "cpu": 1, "cuda": 2, "gpu": 2}


def enc(s):
    return None if s is None else os.fsencode(s) if isinstance(s, os.PathLike) else s.encode("utf-8")


def text(b):
    return None if b is None else b.decode("utf-8")


def ids_array(ids):
    """A contiguous int32 array of token ids (a copy when needed)."""
    a = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
    if a.size and (a.min() < 0 or a.max() > np.iinfo(np.int32).max):
        raise InputError("token ids must be from 0 to %d" % np.iinfo(np.int32).max)
    return np.ascontiguousarray(a.astype(np.int32))


def ids_pointer(a):
    return a.ctypes.data_as(I32P) if a.size else None


# ---- handles and arrays -------------------------------------------------------------------

class Handle:
    """Owns a pointer of the library and frees it once, when the last Python
    reference (including numpy arrays that view its memory) goes."""

    def __init__(self, ptr, free):
        self.ptr = ptr
        self._free = free

    def __del__(self):
        if self.ptr and self._free is not None:
            self._free(self.ptr)
            self.ptr = None


_TYPESTR = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "|i1",
            "U8": "|u1", "BOOL": "|b1"}


class _View:
    """Exposes library memory to numpy (__array_interface__), keeping its
    owner alive as the array's base."""

    def __init__(self, owner, iface):
        self.owner = owner
        self.__array_interface__ = iface


def array(owner, info):
    """A read-only numpy array over a tensor's memory (no copy); it keeps
    OWNER (a Handle) alive."""
    dtype = text(info.dtype)
    shape = tuple(int(info.shape[d]) for d in range(info.ndim))
    if dtype not in _TYPESTR:
        raise UnsupportedError("tensor %s has dtype %s, which numpy cannot view" % (text(info.name), dtype))
    if info.nbytes == 0 or not info.data:
        a = np.zeros(shape, dtype=np.dtype(_TYPESTR[dtype]))
    else:
        a = np.asarray(_View(owner, {"data": (info.data, True), "shape": shape, "typestr": _TYPESTR[dtype],
                                     "version": 3}))
    a.flags.writeable = False
    return a
