"""A tokenizer with the calls Ecco's users make on ``lm.tokenizer`` (a
Hugging Face tokenizer there): ``tokenizer(text)``, ``encode``, ``decode``,
``convert_ids_to_tokens``. The ids are eccolo's GPT-2 byte-level BPE, the
same as Hugging Face's (tests/model/test_tokenizer.c)."""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib


def _bytes_to_unicode():
    """GPT-2's map from bytes to printable characters (the 'Ġ' of ' the')."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_BYTE_CHARS = _bytes_to_unicode()


class BatchEncoding(dict):
    """What ``tokenizer(text)`` returns: a dict with ``input_ids`` and
    ``attention_mask``, also readable as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Tokenizer:
    """The model's tokenizer. Holds the model open (the LM's handle)."""

    def __init__(self, model):
        self._model = model  # _lib.Handle of an ecc_model

    @property
    def vocab_size(self):
        return lib.ecc_model_n_tokens(self._model.ptr)

    def __len__(self):
        return self.vocab_size

    @property
    def eos_token_id(self):
        e = lib.ecc_model_eos_token_id(self._model.ptr)
        return None if e < 0 else int(e)

    @property
    def eos_token(self):
        e = self.eos_token_id
        return None if e is None else self.convert_ids_to_tokens(e)

    def encode(self, text, add_special_tokens=True, **kwargs):
        """Token ids of TEXT (a str), as a list of ints. GPT-2 adds no special
        tokens; <|endoftext|> written in the text is recognised."""
        if not isinstance(text, str):
            raise _lib.InputError("encode takes a str (got %s)" % type(text).__name__)
        b = text.encode("utf-8")
        ids = _lib.I32P()
        n = ctypes.c_int()
        _lib.check(lib.ecc_tokenize(self._model.ptr, b, len(b), ctypes.byref(ids), ctypes.byref(n)))
        try:
            return [int(ids[i]) for i in range(n.value)]
        finally:
            lib.ecc_free(ids)

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False, **kwargs):
        """The text of TOKEN_IDS (an int, a list, a numpy or torch array).
        Bytes that are not valid UTF-8 become U+FFFD, as in Hugging Face.
        clean_up_tokenization_spaces (Hugging Face's option, off here: the
        text is then exactly what the model produced) removes spaces before
        punctuation."""
        ids = _lib.ids_array(_as_list(token_ids))
        if skip_special_tokens and self.eos_token_id is not None:
            ids = ids[ids != self.eos_token_id]
        out = ctypes.c_void_p()
        _lib.check(lib.ecc_detokenize(self._model.ptr, _lib.ids_pointer(ids), int(ids.size), ctypes.byref(out)))
        try:
            s = ctypes.string_at(out.value).decode("utf-8")
        finally:
            lib.ecc_free(out)
        if clean_up_tokenization_spaces:
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                s = s.replace(a, b)
        return s

    def token_bytes(self, token_id):
        """The bytes token TOKEN_ID stands for."""
        n = ctypes.c_size_t()
        p = lib.ecc_token_bytes(self._model.ptr, int(token_id), ctypes.byref(n))
        if not p:
            raise _lib.InputError("token id %d is out of range (the tokenizer has %d)" % (token_id, self.vocab_size))
        return ctypes.string_at(p, n.value)

    def convert_ids_to_tokens(self, ids):
        """Vocabulary entries as Hugging Face spells them ('ĠTensor' for
        ' Tensor'); one str for an int, a list for a list."""
        if isinstance(ids, (int, np.integer)):
            return "".join(_BYTE_CHARS[b] for b in self.token_bytes(ids))
        return [self.convert_ids_to_tokens(int(i)) for i in _as_list(ids)]

    def __call__(self, text, return_tensors=None, **kwargs):
        """Like a Hugging Face tokenizer: input_ids and attention_mask, as
        lists (return_tensors=None), numpy arrays ("np") or, for "pt", torch
        tensors when torch is installed (numpy arrays otherwise), with a batch
        dimension for arrays."""
        batch = not isinstance(text, str)
        ids = [self.encode(t) for t in text] if batch else [self.encode(text)]
        if return_tensors is None:
            masks = [[1] * len(i) for i in ids]
            return BatchEncoding(input_ids=ids if batch else ids[0], attention_mask=masks if batch else masks[0])
        if len({len(i) for i in ids}) > 1:
            raise _lib.InputError("these texts have different numbers of tokens; arrays need equal lengths "
                                  "(use return_tensors=None, or lm.batch for several prompts)")
        a = np.asarray(ids, dtype=np.int64).reshape(len(ids), -1)
        mask = np.ones_like(a)
        if return_tensors == "pt":
            try:
                import torch
                a, mask = torch.from_numpy(a), torch.from_numpy(mask)
            except ImportError:
                pass
        elif return_tensors != "np":
            raise _lib.InputError("return_tensors must be None, 'np' or 'pt' (got %r)" % (return_tensors,))
        return BatchEncoding(input_ids=a, attention_mask=mask)


def _as_list(x):
    """Token ids from an int, a list, or a numpy / torch array, flattened."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    if isinstance(x, (int, np.integer)):
        return [int(x)]
    return [int(i) for i in np.asarray(x).reshape(-1)]
