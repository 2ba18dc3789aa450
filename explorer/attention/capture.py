"""Capture attention probabilities from any torch model, layer by layer, on any attention path.

Three paths, tried in this order inside one forward:

* ``sdpa-recomputed``: ``torch.nn.functional.scaled_dot_product_attention`` is wrapped for the
  duration of the forward.  The model still gets the original kernel's output (flash / memory
  efficient / math, bf16 or fp32); the wrapper *recomputes* ``softmax(q kᵀ · scale + mask)`` in
  float32 from the same ``q`` and ``k`` and hands it to the sink.  Covers transformers models
  with ``attn_implementation="sdpa"`` (the default), timm blocks with fused attention and
  ``nn.MultiheadAttention`` called with ``need_weights=False``.
* ``mha-weights``: ``nn.MultiheadAttention`` modules are asked for per-head weights
  (``need_weights=True, average_attn_weights=False``) and their output is restored to what the
  caller asked for.  With ``gradients=True`` (and autograd on), modules called with
  ``need_weights=False`` are left alone instead, so they run through SDPA and are recorded on the
  first path with their gradients (returned weights are a view no gradient ever reaches).
* transformers models loaded with ``attn_implementation="eager"`` are switched to ``sdpa`` for
  the capture (and back).

Each call is named by its module path: the innermost module whose class name ends in ``Attention`` (or an
``nn.MultiheadAttention``), else the innermost module of any other class that made the call (e.g. a custom
``MixerBlock`` calling SDPA itself); a call made by the watched model's own ``forward`` takes its class name.

Each captured call becomes an :class:`AttentionCall` passed to ``on_forward`` as soon as it
happens, so a caller can aggregate (rollout) without keeping every layer.  With
``gradients=True`` a hook on each attention output receives ``∂target/∂out`` during backward
and turns it into ``∂target/∂A = (∂target/∂out) vᵀ``, passed to ``on_backward`` — again one
layer at a time, in reverse order (what gradient-weighted relevance needs).
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..models.base import model_lock
from ..models.layout import AttentionError  # noqa: F401 - defined with the token layout, which raises it too


@dataclass
class AttentionCall:
    """One attention call.

    Attributes:
        index: order of the call in the forward (0 = first attention layer).
        name: module path of the attention module (see the module docstring), or the model's class name when
            its own ``forward`` made the call.
        probs: ``(B, H, Tq, Tk)`` float32 attention probabilities (detached).
        path: ``"sdpa-recomputed"`` or ``"mha-weights"``.
        grad: ``(B, H, Tq, Tk)`` ``∂target/∂probs`` (only in ``on_backward``).
    """

    index: int
    name: str
    probs: torch.Tensor
    path: str
    grad: torch.Tensor | None = None


def attention_probs(q: torch.Tensor, k: torch.Tensor, attn_mask=None, is_causal: bool = False,
                    scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """``softmax(q kᵀ · scale + mask)`` in float32, with SDPA's argument semantics.

    Args:
        q: ``(..., Hq, Tq, d)``; k: ``(..., Hk, Tk, d)`` (``Hq`` a multiple of ``Hk`` with GQA).
        attn_mask: bool (True = may attend) or additive float, broadcastable to ``(..., Hq, Tq, Tk)``.
    Returns:
        ``(..., Hq, Tq, Tk)`` float32.
    """
    qf, kf = q.float(), k.float()
    if enable_gqa or (kf.shape[-3] != qf.shape[-3] and qf.shape[-3] % kf.shape[-3] == 0):
        kf = kf.repeat_interleave(qf.shape[-3] // kf.shape[-3], dim=-3)
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    # One (…, Tq, Tk) buffer, modified in place: on long inputs this buffer is the capture's
    # whole memory cost (bench/attention_memory.py).
    scores = torch.matmul(qf, kf.transpose(-2, -1)).mul_(s)
    if is_causal:
        Tq, Tk = scores.shape[-2:]
        causal = torch.ones(Tq, Tk, dtype=torch.bool, device=scores.device).tril()
        scores.masked_fill_(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores.masked_fill_(~attn_mask, float("-inf"))
        else:
            scores.add_(attn_mask.float())
    scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
    scores.div_(scores.sum(dim=-1, keepdim=True))
    return scores.nan_to_num_(0.0)  # fully masked rows → zeros, not NaN


def _is_attention_module(m: torch.nn.Module) -> bool:
    n = type(m).__name__
    return isinstance(m, torch.nn.MultiheadAttention) or (n.endswith("Attention") and "Output" not in n)


def _is_torch_leaf(m: torch.nn.Module) -> bool:
    """torch's own building blocks (Linear, LayerNorm, Dropout, ...): they never call attention themselves."""
    return type(m).__module__.startswith("torch.nn.") and not isinstance(m, torch.nn.MultiheadAttention)


class AttentionCapture:
    """Context manager capturing every attention call of ``model`` during a forward (and backward).

    Args:
        model: any ``torch.nn.Module``.
        on_forward: ``f(AttentionCall)`` called for every attention call in the forward.
        on_backward: ``f(AttentionCall)`` with ``.grad`` filled, called during backward
            (reverse layer order); needs ``gradients=True``.
        gradients: register the backward hooks.
        keep: also keep every call in :attr:`calls` (the naive capture; memory grows with depth).

    Attributes:
        calls: kept calls (``keep=True``).
        count: number of attention calls seen.
        paths: set of capture paths used.
    """

    def __init__(self, model: torch.nn.Module, *, on_forward: Callable | None = None, on_backward: Callable | None = None,
                 gradients: bool = False, keep: bool = False):
        self.model = model
        self.on_forward = on_forward
        self.on_backward = on_backward
        self.gradients = gradients
        self.keep = keep
        self.calls: list[AttentionCall] = []
        self.count = 0
        self.paths: set[str] = set()
        self._stack: list[str] = []  # attention modules running now (innermost last)
        self._other: list[str] = []  # any other module of the model's own classes running now
        self._handles: list = []
        self._orig_sdpa = None
        self._impl_restore = None
        self._thread = None

    # ------------------------------------------------------------------ recording
    def _name(self) -> str:
        """Module path of the call being made now (see the module docstring)."""
        for stack in (self._stack, self._other):
            if stack:
                return stack[-1] or type(self.model).__name__  # "" is the watched model itself
        return type(self.model).__name__

    def _emit(self, probs: torch.Tensor, path: str, grad_ctx=None) -> int:
        idx = self.count
        self.count += 1
        self.paths.add(path)
        call = AttentionCall(idx, self._name(), probs.detach(), path)
        if self.keep:
            self.calls.append(call)
        if self.on_forward is not None:
            self.on_forward(call)
        return idx

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, **kw):
        out = self._orig_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                              scale=scale, enable_gqa=enable_gqa, **kw)
        if threading.get_ident() != self._thread:  # another thread's model: not ours to record
            return out
        with torch.no_grad():
            probs = attention_probs(query.detach(), key.detach(), attn_mask, is_causal, scale, enable_gqa)
        idx = self._emit(probs, "sdpa-recomputed")
        if self.gradients and out.requires_grad:
            name = self._name()
            v = value.detach()

            def hook(grad_out, idx=idx, name=name, probs=probs, v=v):
                vv = v
                if vv.shape[-3] != grad_out.shape[-3]:
                    vv = vv.repeat_interleave(grad_out.shape[-3] // vv.shape[-3], dim=-3)
                grad_p = torch.matmul(grad_out.float(), vv.float().transpose(-2, -1))  # ∂t/∂A = ∂t/∂out · vᵀ
                if self.on_backward is not None:
                    self.on_backward(AttentionCall(idx, name, probs, "sdpa-recomputed", grad_p))

            out.register_hook(hook)
        return out

    # ------------------------------------------------------------------ nn.MultiheadAttention
    def _mha_pre(self, module, args, kwargs):
        if self.gradients and torch.is_grad_enabled() and kwargs.get("need_weights", True) is False:
            # Returned weights are a view the output does not depend on, so no gradient ever
            # reaches them.  Without weights, MHA runs through SDPA: recorded, with gradients, there.
            module._explorer_wanted = None
            return None
        kwargs = dict(kwargs)
        module._explorer_wanted = (kwargs.get("need_weights", True), kwargs.get("average_attn_weights", True))
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = False
        return args, kwargs

    def _mha_post(self, module, args, kwargs, output):
        out, weights = output
        if threading.get_ident() != self._thread or getattr(module, "_explorer_wanted", ()) is None:
            return output
        need, average = getattr(module, "_explorer_wanted", (True, True))
        if weights is None:
            return output
        w = weights if weights.dim() == 4 else weights.unsqueeze(0)
        idx = self._emit(w.detach().float(), "mha-weights")
        if self.gradients and weights.requires_grad:
            name = self._name()
            probs = w.detach().float()

            def hook(grad_w, idx=idx, name=name, probs=probs):
                g = grad_w if grad_w.dim() == 4 else grad_w.unsqueeze(0)
                if self.on_backward is not None:
                    self.on_backward(AttentionCall(idx, name, probs, "mha-weights", g.float()))

            weights.register_hook(hook)
        if not need:
            return out, None
        return out, (weights.mean(dim=1) if average else weights)

    def _push(self, stack: list, name: str):
        def hook(_m, _a):
            stack.append(name)  # returns None: the input is left alone

        return hook

    def _pop(self, stack: list):
        def hook(_m, _a, _o):
            if stack:
                stack.pop()  # returns None: the output is left alone

        return hook

    # ------------------------------------------------------------------ enter / exit
    def __enter__(self) -> "AttentionCapture":
        m = self.model
        self._lock = model_lock(m)  # no other thread's forward passes through these hooks (see model_lock)
        self._lock.acquire()
        try:
            return self._enter(m)
        except BaseException:
            self._lock.release()
            raise

    def _enter(self, m) -> "AttentionCapture":
        impl = getattr(getattr(m, "config", None), "_attn_implementation", None)
        if impl not in (None, "sdpa") and hasattr(m, "set_attn_implementation"):
            try:
                m.set_attn_implementation("sdpa")
                self._impl_restore = impl
            except Exception as e:  # noqa: BLE001
                raise AttentionError(f"This model uses {impl!r} attention and cannot switch to SDPA for capture: {e}") from e
        for name, mod in m.named_modules():
            if isinstance(mod, torch.nn.MultiheadAttention):  # before push / pop: its record needs the name
                self._handles.append(mod.register_forward_pre_hook(self._mha_pre, with_kwargs=True))
                self._handles.append(mod.register_forward_hook(self._mha_post, with_kwargs=True))
            if _is_attention_module(mod):
                stack = self._stack
            elif _is_torch_leaf(mod):
                continue
            else:
                stack = self._other
            self._handles.append(mod.register_forward_pre_hook(self._push(stack, name)))
            self._handles.append(mod.register_forward_hook(self._pop(stack)))
        self._thread = threading.get_ident()
        self._orig_sdpa = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self._sdpa
        return self

    def __exit__(self, *exc) -> None:
        F.scaled_dot_product_attention = self._orig_sdpa
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.clear()
        self._other.clear()
        if self._impl_restore is not None:
            with contextlib.suppress(Exception):
                self.model.set_attn_implementation(self._impl_restore)
        self._lock.release()
