"""The language model: Ecco's ``LM`` (``from_pretrained``, ``generate``,
``lm(inputs)``, ``lm.tokenizer``) over the C library, plus what Ecco lacks:
forced continuations (``explain``), many prompts at once (``batch``), the
GPU, and the precision of its matrix products."""
import ctypes
import os
import time

import numpy as np

from . import _lib
from ._lib import lib
from .output import OutputSeq
from .run import Run
from .tokenizer import Tokenizer, _as_list

# Ecco's attribution names (and aliases) -> eccolo's methods
ATTRIBUTION_METHODS = {
    "grad_x_input": "grad_x_input",
    "saliency": "gradient",
    "gradient": "gradient",
    "ig": "integrated_gradients",
    "integrated_gradients": "integrated_gradients",
}
# Captum methods Ecco 0.1.2 names but eccolo does not compute
_NOT_COMPUTED = ("deep_lift", "dl", "deep_lift_shap", "dls", "guided_backprop", "gb", "guided_gradcam", "gg",
                 "deconvolution", "deconv", "layer_relevance_propagation", "lrp")
# settings of a call that explanations computed later must share (OutputSeq._recompute)
_SHARED = ("target", "lens", "ig-steps", "mem-budget", "threads", "device", "precision")
# Hugging Face generate() arguments Ecco passes through that change nothing here
_HF_NEUTRAL = ("output_scores", "return_dict_in_generate", "use_cache", "pad_token_id", "attention_mask")


def demo_model():
    """The directory of the embedded demo model (a 5-layer GPT-2 trained on
    Debian's package descriptions; models/demo/MODEL.md)."""
    packaged = os.path.join(_lib.NATIVE, "models", "demo")
    if os.path.isdir(packaged):
        return packaged
    d = lib.ecc_default_model()
    return _lib.text(d) if d else None


def method_name(name):
    """eccolo's name of an attribution method given by Ecco's name or alias."""
    if name in ATTRIBUTION_METHODS:
        return ATTRIBUTION_METHODS[name]
    if name in _NOT_COMPUTED:
        raise _lib.UnsupportedError("attribution '%s': eccolo computes grad_x_input, gradient (saliency) and "
                                    "integrated_gradients (ig)" % name)
    raise _lib.InputError("attribution: unknown method '%s' (use grad_x_input, gradient or saliency, "
                          "integrated_gradients or ig)" % name)


def from_pretrained(hf_model_id=None, model_config=None, activations=False, attention=False, hidden_states=True,
                    activations_layer_nums=None, verbose=True, gpu=True, *, device=None, precision="fp32",
                    threads=None, target="prob", lens="standard", **kwargs):
    """Open a model, as ``ecco.from_pretrained``: a directory in Hugging Face
    layout, or a hub id ("distilgpt2", "openai-community/gpt2") found in the
    local Hugging Face cache (never downloaded); None: the embedded demo
    model.

    Ecco's arguments keep their meaning: ``activations`` captures the MLP
    neuron activations (``activations_layer_nums``: only those layers),
    ``attention`` the attention probabilities, ``hidden_states`` the hidden
    states (and makes rankings() and layer_predictions() available),
    ``gpu=False`` forces the CPU; ``model_config`` (Ecco's description of a
    custom model) is accepted and kept as ``lm.model_config``: eccolo reads
    the architecture from config.json.

    Beyond Ecco: ``device`` ("auto", "cpu", "cuda"; overrides gpu),
    ``precision`` ("fp32", "tf32", "bf16": the GPU's matrix products),
    ``threads`` (CPU threads), ``target`` (the scalar attributions explain:
    "prob" as Ecco 0.1, "logit" as the original Ecco article, "logprob") and
    ``lens`` ("standard" applies the final layer norm to every layer in
    rankings; "raw" reproduces Ecco's numbers)."""
    if kwargs:
        raise TypeError("from_pretrained() got unexpected keyword arguments: %s" % ", ".join(sorted(kwargs)))
    if model_config is not None and model_config.get("type", "causal") != "causal":
        raise _lib.UnsupportedError("model_config type '%s': eccolo explains causal language models (GPT-2 family)"
                                    % model_config.get("type"))
    name = hf_model_id if hf_model_id not in (None, "") else demo_model()
    if name is None:
        raise _lib.InputError("no model given and this build has no demo model: pass a directory or hub id")
    if device is None:
        device = "auto" if gpu else "cpu"
    t0 = time.perf_counter()
    p = ctypes.c_void_p()
    name = os.fspath(name)
    # a path (not a hub id such as "openai-community/gpt2"): absolute, relative to ".", or in a directory that exists
    looks_like_path = os.path.isabs(name) or name.startswith(".") or (
        os.sep in name and os.path.isdir(os.path.dirname(name)))
    _lib.check_path(lib.ecc_model_open(ctypes.byref(p), _lib.enc(name)), name if looks_like_path else None)
    model = _lib.Handle(p.value, lib.ecc_model_close)
    return LM(model, hf_model_id if hf_model_id else name, config=model_config, activations=activations,
              attention=attention, hidden_states=hidden_states, activations_layer_nums=activations_layer_nums,
              verbose=verbose, device=device, precision=precision, threads=threads, target=target, lens=lens,
              load_seconds=time.perf_counter() - t0)


def _random_seed():
    # below 10**15: run.json records any seed exactly, but a loaded run keeps its description's
    # numbers as doubles, which print exactly up to 15 digits
    return int.from_bytes(os.urandom(8), "little") % 10 ** 15


def _sampling(settings, do_sample, temperature, top_k, top_p):
    """Sampling settings as Ecco's generate takes them (top_k 50 when not
    given, as transformers' default); a seed is drawn when none is given."""
    seed = settings.pop("seed", None)
    if not do_sample:
        return
    settings.update({"sample": True, "seed": str(_random_seed() if seed is None else int(seed)),
                     "temperature": repr(float(1.0 if temperature is None else temperature)),
                     "top-k": str(int(50 if top_k is None else top_k)),
                     "top-p": repr(float(1.0 if top_p is None else top_p))})


def _shared(settings):
    return {k: v for k, v in settings.items() if k in _SHARED}


def _layer_range(nums, n_layer):
    """activations_layer_nums -> the range [a, b) captured (None: all)."""
    if nums is None:
        return None
    ls = sorted({int(x) for x in nums})
    if not ls or ls[0] < 0 or ls[-1] >= n_layer:
        raise _lib.InputError("activations_layer_nums must list layers from 0 to %d (got %r)" % (n_layer - 1, nums))
    return ls[0], ls[-1] + 1


class LM:
    """A language model with Ecco's methods. Made by from_pretrained()."""

    def __init__(self, model, model_name, config=None, activations=False, attention=False, hidden_states=True,
                 activations_layer_nums=None, verbose=True, device="auto", precision="fp32", threads=None,
                 target="prob", lens="standard", load_seconds=0.0):
        self._model = model
        self.model_name = model_name
        self.model_config = config
        self.tokenizer = Tokenizer(model)
        self.collect_activations_flag = bool(activations)
        self.collect_activations_layer_nums = None if activations_layer_nums is None else \
            [int(x) for x in activations_layer_nums]
        self.attention_flag = bool(attention)
        self.hidden_states_flag = bool(hidden_states)
        self.verbose = verbose
        if device not in _lib.DEVICES:
            raise _lib.InputError("device must be 'auto', 'cpu' or 'cuda' (got %r)" % (device,))
        self.device = device
        self.precision = precision
        self.threads = threads
        self.target = target
        self.lens = lens
        self._load_seconds = load_seconds
        self.notice = ""
        self._layers = _layer_range(self.collect_activations_layer_nums, self.n_layer)
        # options are checked now, so that a bad one fails here rather than at the first generate()
        self._options({})

    # ---- the model ------------------------------------------------------------------
    @property
    def model_dir(self):
        return _lib.text(lib.ecc_model_dir(self._model.ptr))

    @property
    def n_layer(self):
        return lib.ecc_model_n_layer(self._model.ptr)

    @property
    def config(self):
        """The model's sizes (config.json's names)."""
        m = self._model.ptr
        return {"model_type": _lib.text(lib.ecc_model_type(m)), "n_layer": lib.ecc_model_n_layer(m),
                "n_head": lib.ecc_model_n_head(m), "n_embd": lib.ecc_model_n_embd(m),
                "n_inner": lib.ecc_model_n_inner(m), "n_positions": lib.ecc_model_n_positions(m),
                "vocab_size": lib.ecc_model_vocab_size(m), "eos_token_id": self.tokenizer.eos_token_id,
                "dtype": _lib.text(lib.ecc_model_dtype(m))}

    def __repr__(self):
        c = self.config
        return "<eccolo LM %s: %d layers, width %d, %d heads>" % (self.model_name, c["n_layer"], c["n_embd"],
                                                                  c["n_head"])

    # ---- running ----------------------------------------------------------------------
    def _options(self, settings):
        """An ecc_options handle: the LM's settings, then SETTINGS (name -> value)."""
        o = _lib.Handle(lib.ecc_options_new(), lib.ecc_options_free)
        base = {"device": self.device, "precision": self.precision, "target": self.target, "lens": self.lens}
        if self.threads:
            base["threads"] = str(int(self.threads))
        base.update(settings)
        for k, v in base.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "1" if v else "0"
            _lib.check(lib.ecc_options_set(o.ptr, _lib.enc(k), _lib.enc(str(v))))
        return o

    def _explain_settings(self, methods=(), activations=None, attention=None, hidden_states=None, rankings=False,
                          top_k_layers=None, layers=None):
        act = self.collect_activations_flag if activations is None else activations
        s = {"attribution": ",".join(methods), "activations": act,
             "attention": self.attention_flag if attention is None else attention,
             "hidden-states": self.hidden_states_flag if hidden_states is None else hidden_states,
             "rankings": rankings}
        layers = self._layers if layers is None else layers
        if act and layers is not None:
            s["layers"] = "%d:%d" % layers
        if top_k_layers is not None:
            s["top-k-layers"] = str(int(top_k_layers))
        return s

    def _generate(self, prompt_ids, settings, continuation=None, watch=None, prompt_text=None):
        """One run of the C library, described (a Run)."""
        o = self._options(settings)
        prompt = _lib.ids_array(prompt_ids)
        cont = None if continuation is None else _lib.ids_array(continuation)
        w = None if watch is None else _lib.ids_array(watch)
        if cont is not None:
            _lib.check(lib.ecc_options_set_ids(o.ptr, b"continuation", _lib.ids_pointer(cont), int(cont.size)))
        if w is not None:
            _lib.check(lib.ecc_options_set_ids(o.ptr, b"watch", _lib.ids_pointer(w), int(w.size)))
        p = ctypes.c_void_p()
        _lib.check(lib.ecc_generate(ctypes.byref(p), self._model.ptr, _lib.ids_pointer(prompt), int(prompt.size),
                                    o.ptr))
        run = Run(p.value)
        self._describe(run, prompt_text)
        return run

    def _describe(self, run, prompt_text):
        lib.ecc_run_add_timing(run.ptr, b"load", self._load_seconds)
        _lib.check(lib.ecc_run_describe(run.ptr, self._model.ptr, _lib.enc(prompt_text)))
        # e.g. why device "auto" runs on the CPU: informational (Ecco too uses the CPU silently)
        self.notice = _lib.text(lib.ecc_run_notice(run.ptr))

    def _methods(self, attribution):
        if isinstance(attribution, str):
            attribution = [attribution]
        names = list(attribution or [])
        return names, [method_name(a) for a in names]

    def generate(self, input_str, max_length=8, temperature=None, top_k=None, top_p=None, do_sample=False,
                 attribution=[], generate=None, beam_size=1, **generate_kwargs):
        """Generate a continuation of INPUT_STR and explain it, as Ecco's
        LM.generate: ``generate`` new tokens (or up to ``max_length`` tokens in
        all), greedy or sampled (``do_sample``, ``temperature``, ``top_k`` --
        50 when not given, as transformers' default -- and ``top_p``), and the
        attributions named in ``attribution`` ('grad_x_input', 'saliency' or
        'gradient', 'ig' or 'integrated_gradients').

        Every explanation is computed after generation over the final
        sequence in one batched pass (Ecco runs a forward and a backward per
        token). Extra keyword arguments: ``seed`` (sampling; None draws one,
        recorded in the run), ``stop_at_eos`` (default True), ``ig_steps``,
        ``target``, ``lens``, ``mem_budget`` ("8G"), ``threads``, ``device``,
        ``precision``; Hugging Face's ``output_hidden_states`` and
        ``output_attentions`` switch those captures on."""
        if beam_size != 1:
            raise _lib.UnsupportedError("beam_size %r: eccolo generates greedily or by sampling (beam_size=1)"
                                        % (beam_size,))
        prompt = self.tokenizer.encode(input_str)
        n = len(prompt)
        if generate is not None:
            max_length = n + int(generate)
        if n >= max_length:
            raise _lib.InputError("max_length set to {} while input token has more tokens ({}). Consider increasing "
                                  "max_length".format(max_length, n))
        settings, extra = self._call_settings(generate_kwargs)
        names, methods = self._methods(attribution)
        settings.update(self._explain_settings(methods, **extra))
        settings["max-new-tokens"] = str(max_length - n)
        _sampling(settings, do_sample, temperature, top_k, top_p)
        run = self._generate(prompt, settings, prompt_text=input_str)
        out = OutputSeq(self, run, dict(zip(names, methods)), prompt_text=input_str, settings=_shared(settings))
        if self.verbose:
            out._display_text()
        return out

    def _call_settings(self, kw):
        """eccolo's keyword arguments of generate/explain/batch -> option
        settings, and capture overrides."""
        kw = dict(kw)
        settings, extra = {}, {}
        if "output_hidden_states" in kw:
            extra["hidden_states"] = bool(kw.pop("output_hidden_states"))
        if "output_attentions" in kw:
            extra["attention"] = bool(kw.pop("output_attentions"))
        for k in ("activations", "attention", "hidden_states"):
            if k in kw:
                extra[k] = bool(kw.pop(k))
        names = {"seed": "seed", "ig_steps": "ig-steps", "target": "target", "lens": "lens",
                 "mem_budget": "mem-budget", "threads": "threads", "device": "device", "precision": "precision",
                 "top_k_layers": "top-k-layers"}
        for k, opt in names.items():
            if k in kw:
                v = kw.pop(k)
                if v is not None:
                    settings[opt] = str(v)
        if "stop_at_eos" in kw:
            settings["stop-at-eos"] = bool(kw.pop("stop_at_eos"))
        for k in _HF_NEUTRAL:
            kw.pop(k, None)
        if kw:
            raise TypeError("unexpected keyword arguments: %s (eccolo takes seed, stop_at_eos, ig_steps, target, "
                            "lens, mem_budget, threads, device, precision, top_k_layers)" % ", ".join(sorted(kw)))
        return settings, extra

    def explain(self, text, continuation, attribution=("grad_x_input",), **kwargs):
        """Explain a given continuation of TEXT (forced: teacher forcing)
        instead of a generated one; CONTINUATION is text, or token ids. The
        output is what generate() gives for those tokens, with the
        continuation's log-probabilities under the model (``logprobs``)."""
        prompt = self.tokenizer.encode(text)
        cont = self.tokenizer.encode(continuation) if isinstance(continuation, str) else _as_list(continuation)
        if not cont:
            raise _lib.InputError("explain: the continuation is empty")
        settings, extra = self._call_settings(kwargs)
        settings.pop("seed", None)
        names, methods = self._methods(attribution)
        settings.update(self._explain_settings(methods, **extra))
        run = self._generate(prompt, settings, continuation=cont, prompt_text=text)
        return OutputSeq(self, run, dict(zip(names, methods)), prompt_text=text, settings=_shared(settings))

    def __call__(self, input_tokens):
        """Run the model over given tokens without generating (Ecco's
        ``lm(inputs)``): INPUT_TOKENS is what ``lm.tokenizer(text,
        return_tensors="pt")`` returns (or a dict with input_ids, or ids).
        Captures what the LM was opened with (activations, ...). Several rows
        give a list of outputs."""
        ids = input_tokens["input_ids"] if isinstance(input_tokens, dict) else input_tokens
        if hasattr(ids, "detach"):
            ids = ids.detach().cpu().numpy()
        a = np.asarray(ids)
        rows = [a] if a.ndim <= 1 else list(a)
        outs = []
        for row in rows:
            settings = self._explain_settings(())
            settings["max-new-tokens"] = "0"
            run = self._generate(row, settings)
            outs.append(OutputSeq(self, run, {}))
        return outs[0] if a.ndim <= 1 or len(outs) == 1 else outs

    def batch(self, prompts, generate=8, continuations=None, attribution=[], do_sample=False, temperature=None,
              top_k=None, top_p=None, **kwargs):
        """Several prompts at once (better than a loop: they share every
        matrix product of generation and the backward pass's batches, and
        give the same results as one call each). Each prompt gets ``generate``
        new tokens, or its forced continuation (``continuations``: texts or
        id lists, None entries generate). Returns a list of outputs, in order.
        A request that is not valid raises its error (``.index`` says which)."""
        prompts = list(prompts)
        if continuations is not None and len(continuations) != len(prompts):
            raise _lib.InputError("batch: %d prompts but %d continuations" % (len(prompts), len(continuations)))
        settings, extra = self._call_settings(kwargs)
        names, methods = self._methods(attribution)
        settings.update(self._explain_settings(methods, **extra))
        settings["max-new-tokens"] = str(int(generate))
        _sampling(settings, do_sample, temperature, top_k, top_p)
        o = self._options(settings)
        keep = []
        req = (_lib.Request * max(len(prompts), 1))()
        for i, p in enumerate(prompts):
            pa = _lib.ids_array(self.tokenizer.encode(p) if isinstance(p, str) else _as_list(p))
            keep.append(pa)
            req[i].prompt, req[i].n_prompt, req[i].max_new_tokens = _lib.ids_pointer(pa), int(pa.size), -1
            c = None if continuations is None else continuations[i]
            if c is not None:
                ca = _lib.ids_array(self.tokenizer.encode(c) if isinstance(c, str) else _as_list(c))
                keep.append(ca)
                req[i].continuation, req[i].n_continuation = _lib.ids_pointer(ca), int(ca.size)
        n = len(prompts)
        runs = (ctypes.c_void_p * max(n, 1))()
        errs = (ctypes.c_void_p * max(n, 1))()
        _lib.check(lib.ecc_generate_batch(runs, errs, self._model.ptr, req, n, o.ptr))
        wrapped = [Run(runs[i]) if runs[i] else None for i in range(n)]  # owned from here on
        first = None
        for i in range(n):
            if errs[i]:
                if first is None:
                    first = (i, ctypes.string_at(errs[i]).decode("utf-8", "replace"))
                lib.ecc_free(errs[i])
        if first is not None:
            e = _lib.InputError(first[1])
            e.index = first[0]
            raise e
        outs = []
        for p, run in zip(prompts, wrapped):
            text = p if isinstance(p, str) else None
            self._describe(run, text)
            outs.append(OutputSeq(self, run, dict(zip(names, methods)), prompt_text=text, settings=_shared(settings)))
        return outs

    # ---- explanations computed later over an output's tokens ----------------------
    def _recompute(self, out, settings, watch=None):
        """A forced run over OUT's tokens with SETTINGS (a Run)."""
        ids = out.token_ids[0]
        n = out.n_input_tokens
        base = {"activations": False, "attention": False, "hidden-states": False, "rankings": False,
                "attribution": ""}
        base.update(settings)
        if len(ids) == n:  # nothing generated: run over the prompt
            base["max-new-tokens"] = "0"
            return self._generate(ids, base, watch=watch, prompt_text=out.prompt_text)
        return self._generate(ids[:n], base, continuation=ids[n:], watch=watch, prompt_text=out.prompt_text)
