"""What generate() returns: Ecco's ``OutputSeq`` (its data attributes and
view methods) over a run of the C library, and Ecco's ``NMF``.

The arrays are numpy views of the run's memory (no copy, read-only), kept
alive by the arrays themselves. Explanations the run lacks (an attribution
method not asked for, rankings, attention, activations) are computed when a
method first needs them, by a forced run over the same tokens, whose
results equal those of a run that computed everything at once."""

import numpy as np

from . import _lib
from .run import Factors, Run
from .views import Plot, View

# eccolo's method names as the page shows them
_VIEW_METHODS = ("grad_x_input", "gradient", "integrated_gradients")


class OutputSeq:
    """The result of running a language model: tokens, explanations, and
    views of them. Made by LM.generate, LM.explain, LM.batch, lm(inputs) and
    eccolo.load."""

    def __init__(self, lm, run, attribution_names=None, prompt_text=None, factors=None, settings=None):
        self._lm_obj = lm
        self._run = run
        self._names = dict(attribution_names or {})  # Ecco's key -> eccolo's method
        self.prompt_text = prompt_text
        self._factors = factors
        self._settings = dict(settings or {})
        self._aux = {}
        info = run.info()
        self.n_input_tokens = int(info["n_input"])
        self.token_ids = run.tensor("token_ids")[None, :]  # (batch, position), as Ecco
        self.model_type = "causal"
        self.lm_head = None
        self.config = lm.model_config if lm is not None else None
        self.collect_activations_layer_nums = lm.collect_activations_layer_nums if lm is not None else None
        if not self._names:  # a loaded run: every attribution it holds, by eccolo's names
            for m in info.get("explain", {}).get("attribution", []):
                self._names[m] = m
        self._tokens = None

    # ---- the model, for what is computed later -------------------------------------
    @property
    def _lm(self):
        if self._lm_obj is None:  # a loaded run: its model, from run.json
            from .lm import from_pretrained
            model = self.info.get("model", {})
            where = model.get("dir") or model.get("id")
            try:
                self._lm_obj = from_pretrained(where, verbose=False, device=self.info.get("device") or "auto")
            except _lib.Error as e:
                raise type(e)("this run was loaded from disk and its model (%s) cannot be opened to compute more: %s"
                              % (where, e)) from None
        return self._lm_obj

    # ---- data ----------------------------------------------------------------------
    @property
    def info(self):
        """run.json's content: model, prompt, tokens, parameters, explanations, timings."""
        return self._run.info()

    @property
    def tensors(self):
        """Every tensor of the run by name (tensors.safetensors' names: README)."""
        return {n: self._run.tensor(n) for n in self._run.names()}

    @property
    def tokens(self):
        """Each token as the vocabulary spells it ('ĠTensor'), with a batch
        dimension, as Ecco (Hugging Face's convert_ids_to_tokens)."""
        if self._tokens is None:
            try:
                self._tokens = [self._lm.tokenizer.convert_ids_to_tokens(self.token_ids[0])]
            except _lib.Error:  # a loaded run whose model is not here: the tokens' text
                self._tokens = [list(self.info["tokens"])]
        return self._tokens

    @property
    def token_texts(self):
        """Each token's text as the views show it (' Tensor')."""
        return list(self.info["tokens"])

    @property
    def output_text(self):
        return self.info.get("text")

    @property
    def generated_text(self):
        return self.info.get("generated_text")

    @property
    def logprobs(self):
        """Log-probability of each generated (or forced) token under the model, [G]."""
        return self._run.tensor("token_logprobs")

    @property
    def device(self):
        return self.info.get("device")

    @property
    def n_tokens(self):
        return int(self.token_ids.shape[1])

    def _rows(self, method):
        m = self._run.tensor("attribution." + method)  # [G, T]
        n = self.n_input_tokens
        return [m[g, :n + g] for g in range(m.shape[0])]

    @property
    def attribution(self):
        """{name: [row per generated token]}: row g holds the normalised
        attribution of positions 0 .. n_input+g-1 (views of one [G, T]
        matrix, ``tensors['attribution.<method>']``), under the names given to
        generate(attribution=[...]), as Ecco."""
        return {k: self._rows(m) for k, m in self._names.items() if self._run.has("attribution." + m)}

    @property
    def activations(self):
        """{'decoder': array (batch, layer, neuron, position)}: the MLP neuron
        activations, as Ecco lays them out -- with the last token included
        and the layers in numeric order (a view of ``tensors['activations']``,
        [L', T, F])."""
        a = self._run.tensor("activations")
        if a is None:
            return {}
        v = a.transpose(0, 2, 1)[None]
        nums = self.collect_activations_layer_nums
        lay = self.info.get("explain", {}).get("activation_layers", [0, a.shape[0]])
        if nums is not None and sorted(set(nums)) != list(range(lay[0], lay[1])):
            v = v[:, [int(x) - lay[0] for x in sorted(set(nums))]]
        return {"decoder": v}

    @property
    def hidden_states(self):
        """[L+1, T, C] (Hugging Face's convention: 0 is the embeddings, L has
        the final layer norm), or None when not captured."""
        return self._run.tensor("hidden_states")

    @property
    def embedding_states(self):
        h = self.hidden_states
        return None if h is None else h[0][None]

    @property
    def attention_values(self):
        """[L, batch, NH, T, T] attention probabilities (Ecco's
        attention_values[layer] is (batch, head, query, key)), or None."""
        a = self._run.tensor("attention")
        return None if a is None else a[:, None]

    def __str__(self):
        return "<LMOutput '{}' # of lm outputs: {}>".format(self.output_text, self.n_tokens - self.n_input_tokens)

    __repr__ = __str__

    # ---- computing what is missing -------------------------------------------------
    def _recompute(self, settings, watch=None):
        s = dict(self._settings)
        s.update(settings)
        return self._lm._recompute(self, s, watch=watch)

    def _need(self, name, settings):
        """Make sure the run holds tensor NAME, computing SETTINGS over its tokens if not."""
        if not self._run.has(name):
            aux = self._recompute(settings)
            self._run.merge(aux)
        return self._run.tensor(name)

    def _need_method(self, attr_method):
        from .lm import method_name
        m = method_name(attr_method)
        if self.n_tokens == self.n_input_tokens:
            raise _lib.InputError("this output has no generated tokens, so nothing to attribute: use generate() or "
                                  "explain()")
        self._need("attribution." + m, {"attribution": m})
        self._names.setdefault(attr_method, m)
        return m

    def _need_rankings(self, topk=None):
        """The run's rankings, or a run over the same tokens with top-k >= TOPK."""
        self._need("rankings", {"rankings": True, "top-k-layers": str(max(10, topk or 10))})
        k = self._run.tensor("layer_top_ids").shape[2]
        if topk is None or topk <= k:
            return self._run
        key = ("topk", topk)
        if key not in self._aux:
            self._aux[key] = self._recompute({"rankings": True, "top-k-layers": str(topk)})
        return self._aux[key]

    def _generated_position(self, position, what):
        n, T = self.n_input_tokens, self.n_tokens
        if position == -1 or position is None:
            position = n if what == "layer_predictions" and position is None else T - 1
        if not n <= position < T:
            raise _lib.InputError("'position' should indicate a position of a generated token. Accepted values for "
                                  "this sequence are between {} and {}.".format(n, T - 1))
        return position - n

    # ---- views --------------------------------------------------------------------------
    def _page(self, show, run=None, data=None, height=None):
        run = run or self._run
        return View(run.report_html(self._factors if run is self._run else None, show), show, height, data)

    def html(self, **show):
        """The page of every view of this output (``view=`` chooses the one it opens on)."""
        return self._page(show or None)

    def save_html(self, path, **show):
        return self.html(**show).save_html(path)

    def _repr_html_(self):
        return self.html()._repr_html_()

    def explorable(self, printJson=False):
        """The tokens (and every view), as Ecco's explorable."""
        data = {"tokens": [{"token": t, "token_id": int(i), "type": "input" if k < self.n_input_tokens else "output"}
                           for k, (t, i) in enumerate(zip(self.token_texts, self.token_ids[0]))]}
        if printJson:
            print(data)
            return data
        return self._page({"view": "about"}, data=data)

    def __call__(self, position=None, **kwargs):
        if position is not None:
            return self.position(position, **kwargs)
        return self.primary_attributions(**kwargs)

    def position(self, position, attr_method="grad_x_input"):
        """The attribution of the token at POSITION (a generated one)."""
        g = self._generated_position(position, "position")
        m = self._need_method(attr_method)
        return self._page({"view": "saliency", "method": m, "token": g})

    def primary_attributions(self, attr_method="grad_x_input", style="minimal", ignore_tokens=[], **kwargs):
        """Input saliency: hover (or click, or use the arrow keys on) a
        generated token to shade the tokens before it by their attribution to
        it. ``style="detailed"`` shows the percentages; ``ignore_tokens``
        (positions) are left unshaded. A method not computed by generate()
        is computed now. printJson=True returns Ecco's data instead."""
        m = self._need_method(attr_method)
        rows = self._rows(m)
        ignore = [int(i) for i in ignore_tokens]
        if kwargs.get("printJson"):
            toks = [{"token": t, "token_id": int(i), "is_partial": bool(p),
                     "type": "input" if k < self.n_input_tokens else "output",
                     "value": str(rows[0][k] if k < len(rows[0]) else 0), "position": k}
                    for k, (t, i, p) in enumerate(zip(self.token_texts, self.token_ids[0], self.info["partial"]))]
            atts = []
            for r in rows:
                r = np.array(r)
                r[[i for i in ignore if i < len(r)]] = 0
                atts.append(r.tolist())
            data = {"tokens": toks, "attributions": atts}
            print(data)
            return data
        show = {"view": "saliency", "method": m, "token": 0}
        if style == "detailed":
            show["detailed"] = True
        if ignore:
            show["ignore"] = ignore
        return self._page(show)

    def saliency(self, attr_method="grad_x_input", style="minimal", **kwargs):
        """Ecco 0.0.x's name of primary_attributions (the Ecco article's
        ``output.saliency()``)."""
        return self.primary_attributions(attr_method=attr_method, style=style, **kwargs)

    def layer_predictions(self, position=None, topk=10, layer=None, **kwargs):
        """The tokens each layer ranks highest (logit lens) for the token at
        POSITION (a generated one; default the first), topk of them.
        printJson=True returns Ecco's data."""
        g = self._generated_position(position, "layer_predictions")
        run = self._need_rankings(topk)
        ids, probs = run.tensor("layer_top_ids"), run.tensor("layer_top_probs")  # [L, G, k]
        L = ids.shape[0]
        layers = range(L) if layer is None else [int(layer)]
        if layer is not None and not 0 <= int(layer) < L:
            raise _lib.InputError("layer must be from 0 to %d (got %d)" % (L - 1, layer))
        if kwargs.get("printJson"):
            dec = self._lm.tokenizer.decode
            data = [[{"token": dec(int(ids[l, g, k])), "prob": str(probs[l, g, k]), "ranking": k + 1, "layer": l}
                     for k in range(topk)] for l in layers]
            print(data)
            return data
        return self._page({"view": "rankings", "token": g}, run=run)

    def rankings(self, **kwargs):
        """The rank of each generated token at each layer (logit lens; 1 =
        top). printJson=True returns Ecco's data."""
        self._need_rankings()
        r = self._run.tensor("rankings")  # [L, G]
        if kwargs.get("printJson"):
            n = self.n_input_tokens
            data = {"input_tokens": [repr(t) for t in self.token_texts[n - 1:-1]],
                    "output_tokens": [repr(t) for t in self.token_texts[n:]],
                    "rankings": np.array(r), "predicted_tokens": None, "token_found_mask": (r != 1).astype(np.float64)}
            print(data)
            return data
        return self._page({"view": "rankings"})

    def rankings_watch(self, watch=None, position=-1, **kwargs):
        """The ranks of the tokens in WATCH (ids, or single-token texts) at
        every layer, for the token at POSITION (a generated one; default the
        last). printJson=True returns Ecco's data."""
        if not watch:
            raise _lib.InputError("rankings_watch: give watch=[token ids]")
        ids = []
        for w in watch:
            if isinstance(w, str):
                t = self._lm.tokenizer.encode(w)
                if len(t) != 1:
                    raise _lib.InputError("rankings_watch: '%s' is %d tokens; watch single tokens (or give ids)"
                                          % (w, len(t)))
                ids.append(t[0])
            else:
                ids.append(int(w))
        g = self._generated_position(position, "rankings_watch")
        have = self._run.tensor("watch_ids")
        if have is not None and list(have) == ids:
            run = self._run
        else:
            key = ("watch", tuple(ids))
            if key not in self._aux:
                self._aux[key] = self._recompute({"rankings": True}, watch=ids)
            run = self._aux[key]
            if have is None:  # the first watch list goes into the output itself
                self._run.merge(run)
                run = self._run
        wr = run.tensor("watch_rankings")  # [L, G, W]
        if kwargs.get("printJson"):
            dec = self._lm.tokenizer.decode
            data = {"input_tokens": list(self.token_texts), "output_tokens": [repr(dec(t)) for t in ids],
                    "rankings": np.array(wr[:, g, :])}
            print(data)
            return data
        return self._page({"view": "rankings", "token": g}, run=run)

    def attention(self, attention_values=None, layer=0, **kwargs):
        """Attention probabilities of LAYER: click a token to shade what it
        attends to; a heatmap per head."""
        self._need("attention", {"attention": True})
        if kwargs.get("printJson"):
            a = self._run.tensor("attention")[int(layer)].mean(axis=0)  # heads averaged, as Ecco
            data = {"tokens": list(self.token_texts), "attributions": a.tolist()}
            print(data)
            return data
        return self._page({"view": "attention", "layer": int(layer)})

    def run_nmf(self, n_components=10, from_layer=None, to_layer=None, **kwargs):
        """Factorise the neuron activations (non-negative matrix
        factorisation, as Ecco with scikit-learn's settings: random init, seed
        0, 500 iterations) into N_COMPONENTS groups of neurons that fire
        together, over layers [from_layer, to_layer). Returns an NMF with
        explore() and plot(). More: init ("random", "nndsvd", "nndsvda"),
        solver ("mu", "hals"), max_iter, tol, seed, threads, device."""
        if self._run.tensor("activations") is None:
            layers = None
            if from_layer is not None or to_layer is not None:
                layers = "%d:%d" % (from_layer or 0, self._lm.n_layer if to_layer is None else to_layer)
            s = {"activations": True}
            if layers:
                s["layers"] = layers
            elif self._lm._layers:
                s["layers"] = "%d:%d" % self._lm._layers
            self._need("activations", s)
        a = self._run.tensor("activations")
        lay = self.info.get("explain", {}).get("activation_layers", [0, a.shape[0]])
        lo = lay[0] if from_layer is None else int(from_layer)
        hi = lay[1] if to_layer is None else int(to_layer)
        if from_layer is not None and to_layer is not None and from_layer == to_layer:
            raise _lib.InputError("from_layer ({0}) and to_layer ({0}) cannot be the same value. They must be apart "
                                  "by at least one to allow for a layer of activations.".format(from_layer))
        if lo > hi:
            raise _lib.InputError("from_layer ({}) cannot be larger than to_layer ({}).".format(lo, hi))
        if lo < lay[0] or hi > lay[1]:
            raise _lib.InputError("Not all layers between from_layer ({}) and to_layer ({}) have recorded activations. "
                                  "Layers with recorded activations are: {}".format(lo, hi, list(range(*lay))))
        k = max(1, min(int(n_components), self.n_tokens, (hi - lo) * a.shape[2]))  # Ecco: at most one per token
        opts = {"init": "random", "solver": "mu", "max_iter": 500, "tol": 1e-4, "seed": 0,
                "threads": self._settings.get("threads") or self._lm_threads(), "device": "cpu"
                if self.device == "cpu" else self._settings.get("device", "auto")}
        for key in ("init", "solver", "max_iter", "tol", "seed", "threads", "device"):
            if key in kwargs:
                opts[key] = kwargs.pop(key)
        f = Factors.compute([self._run], n_components=k, from_layer=lo, to_layer=hi, **opts)
        self._factors = f
        return NMF(self, f)

    def _display_text(self):
        """In a notebook, the text (prompt, then the generated tokens in bold),
        as Ecco's verbose generate() shows it; nothing elsewhere."""
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:
            return
        shell = get_ipython()
        if shell is None or not hasattr(shell, "kernel"):
            return
        import html
        n = self.n_input_tokens
        t = self.token_texts
        display(HTML('<div class="eccolo-text" style="white-space:pre-wrap;font-family:monospace">'
                     '<span style="color:#6b7280">%s</span><b>%s</b></div>'
                     % (html.escape("".join(t[:n])), html.escape("".join(t[n:])))))

    def _lm_threads(self):
        return self._lm_obj.threads if self._lm_obj is not None else None

    # ---- files --------------------------------------------------------------------------
    def save(self, path):
        """Write the run as eccolo generate --out does (PATH/run.json,
        PATH/tensors.safetensors; with PATH/nmf.safetensors after run_nmf),
        for eccolo.load, eccolo report, eccolo nmf or numpy."""
        import os
        self._run.save(path)
        if self._factors is not None:
            self._factors.save(os.path.join(path, "nmf.safetensors"))
        return path


class NMF:
    """Ecco's NMF: the activations factorised into groups of neurons.
    ``components`` [K, T]: each factor's strength at each token (W^T);
    ``loadings`` [K, F']: each factor's weight on each (layer, neuron),
    columns layer-major over layers [from_layer, to_layer)."""

    def __init__(self, output, factors):
        self._output = output
        self._factors = factors
        self.components = factors.tensor("factors")
        self.loadings = factors.tensor("loadings")
        self.n_components = int(self.components.shape[0])
        self.from_layer = int(factors.meta("layer_from"))
        self.to_layer = int(factors.meta("layer_to"))
        self.relative_error = float(factors.meta("relative_error"))
        self.iterations = int(factors.meta("iterations"))
        self.tokens = output.tokens
        self.token_ids = output.token_ids
        self.n_input_tokens = output.n_input_tokens

    @property
    def activations(self):
        """X [T, F'] = max(activations, 0) of the factorised layers, as Ecco's NMF.activations."""
        a = self._output._run.tensor("activations")
        lay = self._output.info["explain"].get("activation_layers", [0, a.shape[0]])
        x = a[self.from_layer - lay[0]:self.to_layer - lay[0]]
        return np.maximum(x.transpose(1, 0, 2).reshape(x.shape[1], -1), 0)

    def explore(self, input_sequence=0, **kwargs):
        """The tokens tinted by their strongest factor, with a sparkline per
        factor; click a factor to isolate it. printJson=True returns Ecco's
        data."""
        if input_sequence != 0:
            raise _lib.InputError("explore: this NMF has one sequence (input_sequence=0)")
        if kwargs.get("printJson"):
            o = self._output
            data = {"tokens": [{"token": t, "token_id": int(i), "type": "input" if k < o.n_input_tokens else "output",
                                "position": k} for k, (t, i) in enumerate(zip(o.token_texts, o.token_ids[0]))],
                    "factors": [self.components.tolist()]}
            print(data)
            return data
        return View(self._output._run.report_html(self._factors, {"view": "nmf"}), {"view": "nmf"})

    def plot(self, n_components=3):
        """The first N_COMPONENTS factors over the tokens, as a small chart."""
        k = min(int(n_components), self.n_components)
        return Plot([self.components[i] for i in range(k)], ["Component %d" % (i + 1) for i in range(k)],
                    self._output.token_texts, "NMF of layers %d-%d" % (self.from_layer, self.to_layer - 1))

    def save(self, path):
        """nmf.safetensors as eccolo nmf writes it."""
        self._factors.save(path)
        return path

    def __repr__(self):
        return "<eccolo NMF: %d factors of layers %d-%d, relative error %.4f>" % (
            self.n_components, self.from_layer, self.to_layer - 1, self.relative_error)


def load(path, lm=None):
    """An output saved by OutputSeq.save, eccolo generate --out or eccolo
    batch (a run directory), with its nmf.safetensors when present. LM (or,
    when first needed, the model run.json names) computes what it lacks."""
    import os
    run = Run.load(path)
    nmf = os.path.join(path, "nmf.safetensors")
    factors = Factors.load(nmf) if os.path.exists(nmf) else None
    info = run.info()
    return OutputSeq(lm, run, None, prompt_text=info.get("prompt"), factors=factors)
