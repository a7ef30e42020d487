"""Jitted batched sampler with a KV cache: prefill once per prompt, `lax.while_loop` decode for n samples.

  sampler = Sampler(graphdef, pad_id=0, stop_ids=(2,), mesh=None)
  out = sampler.sample(state, prompt_PxTp, prompt_mask_PxTp, key, n=4, max_new_tokens=128,
                       temperature=1.0, top_p=1.0, top_k=0, greedy=False)

One compiled XLA program per static signature does everything:
  1. prefill (`models.inference.prefill`): the P prompts (left-padded; Tp bucketed to
     Tb = round_up(Tp, prompt_bucket) by adding more left padding) minus their last column run through
     the model once (no logits) and their keys/values fill slots [0, Tb-1) of the per-layer cache of
     `models.kv_cache` (keys in <= 32 blocks [B, K, Dh, blk] and values in as many [B, K, blk, Dh] per
     layer, B = P*n rows, S = Tb + Rb, Rb = round_up(max_new_tokens, gen_bucket); blocks past the
     current slot are skipped; on GPU one block, computed and masked: `kv_cache.max_key_blocks`).
  2. that cache, the kv mask and the last prompt token are repeated to B = P*n rows (row p*n + j =
     sample j of prompt p, so GRPO groups are contiguous): the prompt is never recomputed n times.
  3. `lax.while_loop` over steps i: feed the previous token (the last prompt token at i = 0) at cache
     slot Tb-1+i, sample token i from its logits, stop a row when it emits a stop id or reaches its
     budget (`max_new_tokens`, or its `max_new_per_sample` entry). The loop ends when every row has
     stopped (early exit; `SampleOutput.num_steps` counts steps). Row p*n + j draws token i with the key
     fold_in(fold_in(fold_in(key, p), j), i): its response does not depend on its batch row.
The cache lives only inside that program: it is a while-loop carry that `inference.decode_step` updates
with one-slot `dynamic_update_slice`s, so XLA keeps it in one buffer for the whole decode (no host
round trip, no per-step copy; nothing to donate between calls, since no buffer outlives the call).
`max_new_tokens`, `max_new_per_sample`, `temperature`, `top_p` and the stop ids (padded to a multiple
of 8) are traced values, so new values inside the same buckets do not recompile; P, Tb, Rb, n, top_k,
greedy and (top_p < 1) are static. `Sampler.num_compilations` counts traces of the program (each trace
is one compilation).

Positions follow the model's convention (cumsum(mask) - 1): response token i of a prompt with L real
tokens has position L + i, so a trainer forward over `tokens` with `attention_mask` reproduces the
sampler's logits. Log-probs are those of the *unfiltered* tempered distribution (see `filtering`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from simko_jax.parallel import logical_to_sharding, logical_to_spec, use_rules
from simko_jax.models.inference import decode_step, lm_head_weight, prefill, rope_table, unstack_layers
from simko_jax.models.kv_cache import LAYER_CACHE_AXES, empty_cache
from simko_jax.sampling.filtering import sample_next

FINISH_STOP = 0    # emitted a stop id (EOS); it is the last token inside response_mask
FINISH_LENGTH = 1  # ran out of max_new_tokens


class SampleOutput(NamedTuple):
  """Result of `Sampler.sample` for P prompts x n samples: B = P*n rows (rows p*n .. p*n+n-1 belong to
  prompt p), Tp prompt columns (as passed), R = max_new_tokens response columns.

  tokens           [B, Tp+R] int32  prompt (as passed, left-padded) followed by the response
  prompt_mask      [B, Tp]   int32  1 = real prompt token
  response_mask    [B, R]    int32  1 = generated token, up to and including the stop token
  response_tokens  [B, R]    int32  generated tokens; pad_id after the stop token / unused steps
  logprobs         [B, R]    f32    log_softmax(logits / temperature)[token] of the unfiltered
                                    distribution; 0 where response_mask == 0
  finish_reason    [B]       int32  FINISH_STOP (0) or FINISH_LENGTH (1)
  response_lengths [B]       int32  response_mask.sum(-1)
  num_steps        []        int32  decoding-loop iterations run (< R when every row stopped early)
  """
  tokens: jax.Array
  prompt_mask: jax.Array
  response_mask: jax.Array
  response_tokens: jax.Array
  logprobs: jax.Array
  finish_reason: jax.Array
  response_lengths: jax.Array
  num_steps: jax.Array

  @property
  def attention_mask(self) -> jax.Array:
    """[B, Tp+R] mask for a trainer forward over `tokens`: prompt_mask ++ response_mask."""
    return jnp.concatenate([self.prompt_mask, self.response_mask], axis=-1)

  @property
  def positions(self) -> jax.Array:
    """[B, Tp+R] RoPE positions the sampler used: cumsum(attention_mask) - 1, clipped at 0."""
    return jnp.maximum(jnp.cumsum(self.attention_mask, axis=-1) - 1, 0)


def round_up(x: int, multiple: int) -> int:
  return max(multiple, int(math.ceil(x / multiple)) * multiple)


class _Loop(NamedTuple):
  """While-loop carry (B = P*n rows, S cache slots, Rb response buffer columns)."""
  step: jax.Array          # [] int32
  cache: dict              # {"k": L lists of key blocks [B, K, Dh, blk], "v": L lists of [B, K, blk, Dh]}
  kv_mask: jax.Array       # [B, S] int32
  token: jax.Array         # [B] int32, the token fed at this step
  done: jax.Array          # [B] bool, row has emitted a stop id
  out_tokens: jax.Array    # [B, Rb] int32
  out_logprobs: jax.Array  # [B, Rb] f32
  out_mask: jax.Array      # [B, Rb] int32


def _sample_program(graphdef, state, prompt_PxTb, prompt_mask_PxTb, key, temperature, top_p, max_new_B,
                    stop_ids, *, n: int, n_buf: int, top_k: int, greedy: bool, use_top_p: bool,
                    pad_id: int, cache_dtype: Any, mesh, rules, counter):
  """The traced body of one compiled sampler program (see module docstring). `stop_ids` is int32,
  padded with -1; `max_new_B` int32 is each row's token budget (<= n_buf).
  Returns (tokens_BxRb, logprobs_BxRb, mask_BxRb, stopped_B, num_steps), B = P*n."""
  counter[0] += 1  # runs once per trace == once per compilation
  model = nnx.merge(graphdef, state)
  b, p = prompt_PxTb.shape  # (P, Tb)
  bn, s = b * n, p + n_buf
  pmask = prompt_mask_PxTb.astype(jnp.int32)
  positions_PxTb = jnp.maximum(jnp.cumsum(pmask, axis=-1) - 1, 0)

  def shard_cache(cache):  # the decoding loop's per-layer layout (`kv_cache.LAYER_CACHE_AXES`)
    if mesh is None:
      return cache
    place = lambda x, axes: jax.lax.with_sharding_constraint(x, logical_to_sharding(axes, mesh, rules, x.shape))
    return {name: jax.tree.map(lambda x: place(x, LAYER_CACHE_AXES[name]), xs) for name, xs in cache.items()}

  def shard_rows(x):  # batch rows over ("data", "fsdp") like the model's activations
    if mesh is None:
      return x
    spec = logical_to_spec(("batch",) + (None,) * (x.ndim - 1), mesh, rules, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

  def rep(x, axis=0):
    return jnp.repeat(x, n, axis=axis, total_repeat_length=x.shape[axis] * n) if n > 1 else x

  # 1-2. Prefill all but the last prompt column on the P prompts (no logits) straight into the decode
  # loop's per-layer cache of B = P*n rows: the prompt is never recomputed n times.
  layer_params = unstack_layers(model)  # sliced once, outside the loop
  rope = rope_table(model.cfg, s)  # cos/sin rows gathered by position: no sin/cos inside any layer
  lm_head_DxV = lm_head_weight(model)  # [D, V] in memory (a transposed copy when tied), once per call
  kv_mask_PxS = jnp.concatenate([pmask, jnp.zeros((b, n_buf), jnp.int32)], axis=-1)
  if p > 1:
    cache = prefill(model, layer_params, prompt_PxTb[:, :-1], positions_PxTb[:, :-1], pmask[:, :-1], rope,
                    cache_len=s, n=n, cache_dtype=cache_dtype)
  else:
    cache = empty_cache(model.cfg, bn, s, cache_dtype)
  cache = shard_cache(cache)
  last_pos_B = rep(positions_PxTb[:, -1])
  # Row p*n + j draws token i with fold_in(fold_in(fold_in(key, p), j), i): a response depends on its
  # (prompt, sample) pair only, not on its batch row (p is the global prompt index, the same sharded,
  # unsharded or multi-process), so a continuous-batching slot can reproduce it exactly.
  pair_keys_B = jax.vmap(lambda p_, j_: jax.random.fold_in(jax.random.fold_in(key, p_), j_))(
      jnp.arange(bn) // n, jnp.arange(bn) % n)

  # 3. Decode loop: step i feeds `token` at slot p-1+i and samples response token i.
  def cond(c: _Loop):
    return ~jnp.all(c.done | (c.step >= max_new_B))

  def body(c: _Loop):
    i = c.step
    logits, cache = decode_step(model, layer_params, c.token, last_pos_B + i, c.cache, p - 1 + i, c.kv_mask,
                                rope, first_slot=p - 1, cache_dtype=cache_dtype, lm_head_DxV=lm_head_DxV)
    row_keys_B = jax.vmap(jax.random.fold_in, (0, None))(pair_keys_B, i)
    tok, logp = sample_next(logits, row_keys_B, temperature, top_p,
                            top_k=top_k, greedy=greedy, use_top_p=use_top_p)
    live = ~c.done & (i < max_new_B)
    tok = jnp.where(live, tok, pad_id)
    logp = jnp.where(live, logp, 0.0)
    col = (jnp.int32(0), i)
    out_tokens = jax.lax.dynamic_update_slice(c.out_tokens, tok[:, None], col)
    out_logprobs = jax.lax.dynamic_update_slice(c.out_logprobs, logp[:, None], col)
    out_mask = jax.lax.dynamic_update_slice(c.out_mask, live.astype(jnp.int32)[:, None], col)
    # The sampled token is written at slot p+i next step; it is a visible key only for live rows.
    kv_mask = jax.lax.dynamic_update_slice(c.kv_mask, live.astype(jnp.int32)[:, None], (jnp.int32(0), p + i))
    done = c.done | (live & jnp.isin(tok, stop_ids))
    cache = shard_cache(cache)
    return _Loop(i + 1, cache, kv_mask, tok, done, out_tokens, out_logprobs, out_mask)

  init = _Loop(
      step=jnp.int32(0), cache=cache, kv_mask=shard_rows(rep(kv_mask_PxS)),
      token=shard_rows(rep(prompt_PxTb[:, -1].astype(jnp.int32))), done=shard_rows(jnp.zeros((bn,), bool)),
      out_tokens=shard_rows(jnp.full((bn, n_buf), pad_id, jnp.int32)),
      out_logprobs=shard_rows(jnp.zeros((bn, n_buf), jnp.float32)),
      out_mask=shard_rows(jnp.zeros((bn, n_buf), jnp.int32)))
  final = jax.lax.while_loop(cond, body, init)
  return final.out_tokens, final.out_logprobs, final.out_mask, final.done, final.step


@functools.partial(jax.jit, static_argnames=("n", "prompt_len", "max_new_tokens", "mesh", "rules"))
def _sample_output(prompt_PxTb, pmask_PxTb, tokens_BxRb, logprobs_BxRb, mask_BxRb, stopped_B, steps, *,
                   n: int, prompt_len: int, max_new_tokens: int, mesh, rules) -> SampleOutput:
  """The program's buffers -> `SampleOutput` on device: the prompts as passed (bucket padding cut off)
  repeated n times, responses cut to max_new_tokens; rows sharded over the batch axes like the
  program's own buffers (so each host's rows are those of its own prompts)."""
  def rows(x):
    if mesh is None:
      return x
    spec = logical_to_spec(("batch",) + (None,) * (x.ndim - 1), mesh, rules, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

  rep = lambda x: jnp.repeat(x[:, x.shape[1] - prompt_len:], n, axis=0)
  response_tokens = tokens_BxRb[:, :max_new_tokens]
  response_mask = mask_BxRb[:, :max_new_tokens]
  out = SampleOutput(
      tokens=jnp.concatenate([rep(prompt_PxTb), response_tokens], axis=-1),
      prompt_mask=rep(pmask_PxTb), response_mask=response_mask, response_tokens=response_tokens,
      logprobs=logprobs_BxRb[:, :max_new_tokens],
      finish_reason=jnp.where(stopped_B, FINISH_STOP, FINISH_LENGTH).astype(jnp.int32),
      response_lengths=response_mask.sum(-1).astype(jnp.int32), num_steps=steps)
  return out._replace(**{k: rows(v) for k, v in out._asdict().items() if k != "num_steps"})


def sample_program(graphdef, state, prompt_BxPb, pmask_BxPb, key, temperature, top_p, max_new, stop_ids_K, *,
                   prompt_len: int, max_new_tokens: int, counter=None, **static) -> SampleOutput:
  """The whole sampler as a pure, jittable function: the traced program body plus the output assembly,
  for callers that compose sampling into a larger compiled program (`train.fused`). Arguments are those
  `Sampler.program_inputs` gives (prompts already bucketed to Pb columns); `max_new` may be a scalar
  (every row's budget) or int32 [B] per row. Returns `SampleOutput`."""
  if jnp.ndim(max_new) == 0:
    max_new = jnp.full((prompt_BxPb.shape[0] * static["n"],), max_new, jnp.int32)
  out = _sample_program(graphdef, state, prompt_BxPb, pmask_BxPb, key, temperature, top_p, max_new,
                        stop_ids_K, counter=[0] if counter is None else counter, **static)
  return _sample_output(prompt_BxPb, pmask_BxPb, *out, n=static["n"], prompt_len=prompt_len,
                        max_new_tokens=max_new_tokens, mesh=static["mesh"], rules=static["rules"])


class Sampler:
  """Holds a model graphdef and the compiled sampler programs (one per static signature).

  graphdef: from `nnx.split(model)`; the param state is an argument of `sample`, so new params (each
  RL step) reuse the compiled program. pad_id: fills prompt bucket padding and post-stop tokens.
  stop_ids: default stop set (e.g. EOS ids), overridable per call. mesh/rules: run under this mesh
  (params must already be placed, e.g. `shard_model`); batch rows are sharded over ("data", "fsdp") and
  the cache by `kv_cache.LAYER_CACHE_AXES`. prompt_bucket/gen_bucket: Tp and max_new_tokens are rounded up
  to these multiples for the static shapes. cache_dtype: default the model's compute dtype.
  """

  def __init__(self, graphdef, *, pad_id: int = 0, stop_ids: Sequence[int] = (), mesh=None, rules=None,
               prompt_bucket: int = 32, gen_bucket: int = 64, cache_dtype: Any = None):
    self.graphdef = graphdef
    self.pad_id = int(pad_id)
    self.stop_ids = tuple(int(t) for t in stop_ids)
    self.mesh, self.rules = mesh, rules
    self.prompt_bucket, self.gen_bucket = int(prompt_bucket), int(gen_bucket)
    self.cache_dtype = cache_dtype
    self._counter = [0]

    def program(*args, **static):  # closes over graphdef/counter so neither is a (hashed) jit arg
      return _sample_program(graphdef, *args, counter=self._counter, **static)

    self._jitted = jax.jit(program, static_argnames=(
        "n", "n_buf", "top_k", "greedy", "use_top_p", "pad_id", "cache_dtype", "mesh",
        "rules"))

  @classmethod
  def from_model(cls, model: nnx.Module, **kw) -> tuple["Sampler", Any]:
    """(Sampler for `model`'s graph, its param state). Stop/pad ids default to the model config's."""
    graphdef, state = nnx.split(model)
    cfg = model.cfg
    eos = cfg.eos_token_id
    kw.setdefault("stop_ids", () if eos is None else tuple(eos) if isinstance(eos, (list, tuple)) else (eos,))
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (kw["stop_ids"] or (0,))[0]
    kw.setdefault("pad_id", pad)
    return cls(graphdef, **kw), state

  @property
  def num_compilations(self) -> int:
    """How many times the sampler program has been traced (= compiled) so far."""
    return self._counter[0]

  def sample(self, params_state, prompt_tokens, prompt_mask, key, *, n: int = 1, max_new_tokens: int,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, greedy: bool = False,
             stop_ids: Sequence[int] | None = None, keep_global: bool = False,
             max_new_per_sample=None) -> SampleOutput:
    """Sample n responses per prompt. See `SampleOutput` for the result.

    prompt_tokens, prompt_mask: [P, Tp] int, left-padded (every row's last column is a real token).
    key: a `jax.random.key`; the same key, inputs and params give the same tokens (sharded or not).
    temperature > 0. top_k: 0 = off. top_p: 1.0 = off. greedy: argmax (temperature only scales the
    returned log-probs). stop_ids: None = the sampler's default set; () = never stop early.
    The result is assembled on device (nothing is read back here). keep_global: in a multi-process run,
    return the global arrays (every host's rows, host-major, sharded over the batch axes) for a device-
    side consumer such as the trainer; False gives each host the rows of its own prompts.
    max_new_per_sample: None, or int [B, n] in [1, max_new_tokens]: sample j of prompt b ends
    (FINISH_LENGTH) after max_new_per_sample[b, j] tokens; a traced value (no recompile), and the loop
    exits once every row has stopped or reached its own budget.
    """
    args, static = self._prepare(params_state, prompt_tokens, prompt_mask, key, n, max_new_tokens,
                                 temperature, top_p, top_k, greedy, stop_ids, max_new_per_sample)
    with self._context():
      out = self._jitted(*args, **static)
      out = _sample_output(args[1], args[2], *out, n=int(n), prompt_len=np.shape(prompt_tokens)[1],
                           max_new_tokens=int(max_new_tokens), mesh=self.mesh, rules=self.rules)
    if jax.process_count() > 1 and not keep_global:  # this host's rows (they follow its own prompts)
      from jax.experimental import multihost_utils
      local = lambda x: multihost_utils.global_array_to_host_local_array(x, x.sharding.mesh, x.sharding.spec)
      out = SampleOutput(*map(local, out[:-1]), num_steps=jnp.asarray(jax.device_get(out.num_steps)))
    return out

  def lower(self, params_state, prompt_tokens, prompt_mask, key, *, n: int = 1, max_new_tokens: int,
            temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, greedy: bool = False,
            stop_ids: Sequence[int] | None = None, max_new_per_sample=None):
    """The `jax.stages.Lowered` program `sample` would run (for `.compile()`, cost analysis, HLO)."""
    args, static = self._prepare(params_state, prompt_tokens, prompt_mask, key, n, max_new_tokens,
                                 temperature, top_p, top_k, greedy, stop_ids, max_new_per_sample)
    with self._context():
      return self._jitted.lower(*args, **static)

  def program_inputs(self, prompt_tokens, prompt_mask, *, n: int = 1, max_new_tokens: int,
                     temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, greedy: bool = False,
                     stop_ids: Sequence[int] | None = None):
    """(bucketed host prompts (prompt_BxPb, pmask_BxPb), traced knobs (temperature, top_p, max_new,
    stop_ids_K), static kwargs) of `sample_program`: exactly what `sample` feeds its program."""
    args, static = self._prepare(None, prompt_tokens, prompt_mask, None, n, max_new_tokens, temperature,
                                 top_p, top_k, greedy, stop_ids, place=False)
    static.update(prompt_len=np.shape(prompt_tokens)[1], max_new_tokens=int(max_new_tokens))
    temperature, top_p, _, stop_arr = args[4:]  # one budget for every row: a scalar the program broadcasts
    return args[1:3], (temperature, top_p, np.int32(max_new_tokens), stop_arr), static

  def _context(self):
    """The mesh (for the model's sharding constraints) and rules this sampler traces and runs under."""
    stack = contextlib.ExitStack()
    if self.mesh is not None:
      stack.enter_context(jax.set_mesh(self.mesh))
    if self.rules is not None:
      stack.enter_context(use_rules(self.rules))
    return stack

  def _prepare(self, params_state, prompt_tokens, prompt_mask, key, n, max_new_tokens, temperature,
               top_p, top_k, greedy, stop_ids, max_new_per_sample=None, place: bool = True):
    """Validate, bucket and place (unless not `place`) the inputs: (positional args, static kwargs) of
    the jitted program."""
    prompt = np.asarray(prompt_tokens, np.int32)
    pmask = np.asarray(prompt_mask, np.int32)
    if prompt.ndim != 2 or prompt.shape != pmask.shape:
      raise ValueError(f"prompt_tokens {prompt.shape} and prompt_mask {pmask.shape} must be equal [P, Tp]")
    if not pmask[:, -1].all():
      raise ValueError("prompts must be left-padded with a real last token in every row "
                       "(prompt_mask[:, -1] == 1)")
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
    if max_new_tokens < 1 or n < 1:
      raise ValueError(f"need max_new_tokens >= 1 and n >= 1, got {max_new_tokens}, {n}")
    b, p = prompt.shape
    budget = np.full((b, n), max_new_tokens, np.int32)
    if max_new_per_sample is not None:
      budget = np.asarray(max_new_per_sample)
      if budget.shape != (b, n) or not np.issubdtype(budget.dtype, np.integer) or not (
          (budget >= 1) & (budget <= max_new_tokens)).all():
        raise ValueError(f"max_new_per_sample must be integers [B, n] = [{b}, {n}] in [1, max_new_tokens = "
                         f"{max_new_tokens}], got {budget.dtype} {budget.shape} (pass None for no per-row limit)")
    budget_B = budget.astype(np.int32).reshape(b * n)  # row p*n + j = sample j of prompt p
    pb, nb = round_up(p, self.prompt_bucket), round_up(max_new_tokens, self.gen_bucket)
    # Extra left padding up to the bucket (mask 0: invisible and position-neutral).
    prompt_b = np.full((b, pb), self.pad_id, np.int32)
    pmask_b = np.zeros((b, pb), np.int32)
    prompt_b[:, pb - p:], pmask_b[:, pb - p:] = prompt, pmask
    stops = self.stop_ids if stop_ids is None else tuple(int(t) for t in stop_ids)
    # Stop ids are a traced array padded with -1 to a multiple of 8: new stop sets do not recompile.
    stop_arr = np.full((round_up(len(stops), 8),), -1, np.int32)
    stop_arr[:len(stops)] = stops
    if not place:
      put = lambda x: x
    elif self.mesh is not None:
      rows = NamedSharding(self.mesh, logical_to_spec(("batch", None), self.mesh, self.rules,
                                                      (b * jax.process_count(), pb)))
      if jax.process_count() > 1:  # every host contributes its own prompts (global B = sum of hosts')
        put = lambda x: jax.make_array_from_process_local_data(rows, x)
      else:
        put = lambda x: jax.device_put(x, rows)
      rows_1d = NamedSharding(self.mesh, logical_to_spec(("batch",), self.mesh, self.rules,
                                                         (b * n * jax.process_count(),)))
      budget_B = (jax.make_array_from_process_local_data(rows_1d, budget_B) if jax.process_count() > 1
                   else jax.device_put(budget_B, rows_1d))
    else:
      put = jax.device_put  # once, explicitly: the program and the output assembly both read them
      budget_B = jax.device_put(budget_B)
    prompt_b, pmask_b = put(prompt_b), put(pmask_b)
    args = (params_state, prompt_b, pmask_b, key, jnp.float32(temperature), jnp.float32(top_p),
            budget_B, stop_arr)
    static = dict(n=int(n), n_buf=nb, top_k=int(top_k), greedy=bool(greedy),
                  use_top_p=bool(top_p < 1.0) and not greedy, pad_id=self.pad_id,
                  cache_dtype=self.cache_dtype, mesh=self.mesh, rules=self.rules)
    return args, static
