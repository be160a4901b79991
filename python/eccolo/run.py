"""A run of the C library (ecc_run) as a Python object: its description
(run.json's content), its named tensors as numpy arrays that view the run's
memory, merging explanations computed later, saving, the report page, and
NMF factors (ecc_factors)."""
import ctypes
import json

from . import _lib
from ._lib import lib


class Run:
    """Owns an ecc_run; arrays from tensor() keep it alive."""

    def __init__(self, ptr):
        self._h = _lib.Handle(ptr, lib.ecc_run_free)
        self._arrays = {}
        self._json = None

    @property
    def ptr(self):
        return self._h.ptr

    @classmethod
    def load(cls, path):
        p = ctypes.c_void_p()
        _lib.check_path(lib.ecc_run_load(ctypes.byref(p), _lib.enc(str(path))), str(path))
        return cls(p.value)

    @property
    def T(self):
        return lib.ecc_run_n_tokens(self.ptr)

    @property
    def n_input(self):
        return lib.ecc_run_n_input(self.ptr)

    def info(self):
        """The description: run.json's content (with the tensors' index)."""
        if self._json is None:
            s = lib.ecc_run_json(self.ptr)
            if s is None:
                raise _lib.error(1)
            self._json = json.loads(s.decode("utf-8"))
        return self._json

    def names(self):
        t = _lib.TensorInfo()
        out = []
        for i in range(lib.ecc_run_n_tensors(self.ptr)):
            _lib.check(lib.ecc_run_tensor_at(self.ptr, i, ctypes.byref(t)))
            out.append(_lib.text(t.name))
        return out

    def has(self, name):
        return name in self.names()

    def tensor(self, name):
        """The tensor NAME as a read-only numpy array over the run's memory
        (no copy); None when the run has no such tensor."""
        if name not in self._arrays:
            t = _lib.TensorInfo()
            if lib.ecc_run_find_tensor(self.ptr, _lib.enc(name), ctypes.byref(t)) != 0:
                return None
            self._arrays[name] = _lib.array(self._h, t)
        return self._arrays[name]

    def merge(self, other):
        """Move the tensors OTHER computed (over the same tokens) that this run
        lacks into it."""
        _lib.check(lib.ecc_run_merge(self.ptr, other.ptr))
        self._json = None

    def save(self, path):
        _lib.check(lib.ecc_run_save(self.ptr, _lib.enc(str(path))))

    def report_html(self, factors=None, show=None):
        out = ctypes.c_void_p()
        n = ctypes.c_size_t()
        _lib.check(lib.ecc_run_report_html(ctypes.byref(out), ctypes.byref(n), self.ptr,
                                           factors.ptr if factors is not None else None,
                                           _lib.enc(json.dumps(show)) if show else None))
        try:
            return ctypes.string_at(out.value, n.value).decode("utf-8")
        finally:
            lib.ecc_free(out)


class Factors:
    """Owns an ecc_factors: NMF factors [K, T_total], loadings [K, F'],
    offsets [runs + 1] and their settings."""

    def __init__(self, ptr):
        self._h = _lib.Handle(ptr, lib.ecc_factors_free)
        self._arrays = {}

    @property
    def ptr(self):
        return self._h.ptr

    @classmethod
    def compute(cls, runs, n_components=10, from_layer=None, to_layer=None, init="random", solver="mu",
                max_iter=500, tol=1e-4, seed=0, device="auto", threads=None):
        q = _lib.NmfRequest()
        lib.ecc_nmf_request_default(ctypes.byref(q))
        q.n_components = int(n_components)
        q.layer_from = -1 if from_layer is None else int(from_layer)
        q.layer_to = -1 if to_layer is None else int(to_layer)
        init_b, solver_b = _lib.enc(init), _lib.enc(solver)  # kept alive through the call
        q.init, q.solver = init_b, solver_b
        q.max_iter, q.tol, q.seed = int(max_iter), float(tol), int(seed)
        if device not in _lib.DEVICES:
            raise _lib.InputError("device must be 'auto', 'cpu' or 'cuda' (got %r)" % (device,))
        q.device = _lib.DEVICES[device]
        q.threads = int(threads or 0)
        ptrs = (ctypes.c_void_p * len(runs))(*[r.ptr for r in runs])
        p = ctypes.c_void_p()
        _lib.check(lib.ecc_nmf_compute(ctypes.byref(p), ptrs, len(runs), ctypes.byref(q)))
        return cls(p.value)

    @classmethod
    def load(cls, path):
        p = ctypes.c_void_p()
        _lib.check(lib.ecc_factors_load(ctypes.byref(p), _lib.enc(str(path))))
        return cls(p.value)

    def tensor(self, name):
        if name not in self._arrays:
            t = _lib.TensorInfo()
            _lib.check(lib.ecc_factors_tensor(self.ptr, _lib.enc(name), ctypes.byref(t)))
            self._arrays[name] = _lib.array(self._h, t)
        return self._arrays[name]

    def meta(self, key):
        return _lib.text(lib.ecc_factors_meta(self.ptr, _lib.enc(key)))

    def save(self, path):
        _lib.check(lib.ecc_factors_save(self.ptr, _lib.enc(str(path))))
